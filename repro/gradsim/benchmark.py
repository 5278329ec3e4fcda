"""Benchmark of claim 2 on SmolLM2-135M (rows for ``nox -s bench``):

- GradSim matrix for N = 100 pieces: the plain per-piece loop (N backward passes, N full gradients of the
  down-projection, then their cosines) vs the batched form (one forward/backward per chunk, inner products
  from layer inputs and output gradients); equal results (max |difference|), speed ratio (goal >= 10x),
  peak memory (growth of resident memory, as in the IOI benchmark).
- Covariance of the down-projection inputs: WikiText-2 tokens per second (the edited layers, no cache).
- One MEMIT edit: median seconds over a few edits, split into target optimisation / keys / solve.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from repro.assets import hotpotqa
from repro.gradsim.coupling import gradsim_layer, gradsim_matrix, gradsim_matrix_loop
from repro.gradsim.memit import EditRequest, context_templates, memit_edit
from repro.gradsim.memit.covariance import accumulate_moments, second_moments
from repro.gradsim.pieces import fact_pieces, hotpot_pieces
from repro.gradsim.ripple import counterfactual_plan
from repro.gradsim.run import memit_hparams
from repro.gradsim.scoring import tokenize
from repro.memory import RSSPeak
from repro.models import load_model
from repro.profiles import Profile

MODEL = "smollm2-135m"
N_PIECES = 100
COV_TOKENS = 2_048
N_EDITS = 3


def _timed(fn):
    with RSSPeak() as mem:
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
    return seconds, mem.growth_mb, out


def run_benchmark(profile: Profile) -> list[dict]:
    lm = load_model(MODEL, profile.device, profile.dtype)
    adapter, tok = lm.adapter, lm.tokenizer
    settings = profile.gradsim
    hp = memit_hparams(adapter.n_layers, settings)
    layer = gradsim_layer(list(hp.layers))
    pieces = (hotpot_pieces(hotpotqa()).pieces + fact_pieces().pieces)[:N_PIECES]
    batch = tokenize(tok, [(p.prompt, p.answer) for p in pieces])
    rows = []
    loop_s, loop_mb, slow = _timed(lambda: gradsim_matrix_loop(adapter, batch, layer))
    fast_s, fast_mb, fast = _timed(lambda: gradsim_matrix(adapter, batch, layer))
    diff = float(np.abs(fast - slow).max())
    for name, s, mb in (("GradSim per-piece loop", loop_s, loop_mb), ("GradSim batched (Gram of factors)", fast_s, fast_mb)):
        rows.append({"benchmark": name, "N": len(pieces), "seconds": round(s, 2), "peak_mem_mb": round(mb, 1),
                     "speedup_vs_loop": round(loop_s / s, 1), "max_abs_diff": diff, "goal": ">= 10x, |diff| <= 1e-5"})
    cov_s, cov_mb, _ = _timed(lambda: accumulate_moments(lm, list(hp.layers), COV_TOKENS, progress=False))
    rows.append({"benchmark": f"covariance, layers {list(hp.layers)}", "N": COV_TOKENS, "seconds": round(cov_s, 2),
                 "peak_mem_mb": round(cov_mb, 1), "tokens_per_s": round(COV_TOKENS / cov_s, 1)})
    covs = second_moments(lm, list(hp.layers), hp.mom2_tokens, hp.mom2_dtype, progress=False)
    contexts = context_templates(adapter, tok, hp.n_context_templates, hp.context_length, sample_seed=settings.seed)
    splits = []
    for i, target in counterfactual_plan(pieces, N_EDITS, settings.seed):
        p = pieces[i]
        splits.append(memit_edit(adapter, tok, EditRequest(p.prompt, p.subject, target), hp, contexts, covs).seconds)
    median = {k: statistics.median(s[k] for s in splits) for k in splits[0]}
    rows.append({"benchmark": "one MEMIT edit (median)", "N": len(splits),
                 "seconds": round(sum(median.values()), 2),
                 **{f"{k}_s": round(v, 2) for k, v in median.items()}})
    return rows
