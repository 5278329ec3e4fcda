"""An outside check of the IOI patching: the same experiments through TransformerLens, number by number.

Real GPT-2 weights cannot be tested here, so the patching code (``repro.ioi.patching``: staircase runs
from cached residual streams, shared prefixes, stacked heads) is compared with the reference library's
plain one-forward-per-patch sweeps on ``gpt2-random`` and the real GPT-2 tokenizer:

| ours (``repro.ioi.patching``)              | TransformerLens (``transformer_lens.patching``)                   |
|--------------------------------------------|-------------------------------------------------------------------|
| ``head_patched_ld``, all positions         | ``get_act_patch_attn_head_out_all_pos``                           |
| ``head_patched_ld(final_only=True)``       | ``get_act_patch_attn_head_out_by_pos``'s setter, final position   |
| ``resid_patched_ld``                       | ``get_act_patch_resid_pre``                                       |

What is compared is the raw patched logit difference logit(IO) - logit(S) at the final position, per
pair, not the normalised effect: at random init clean ≈ corrupted, so the normalised metric divides by
almost zero and would magnify float noise. Pairs come from one template, so they share a token length
and TransformerLens can run them as one batch without padding.

TransformerLens 4 replaced ``HookedTransformer`` with ``TransformerBridge``:
``TransformerBridge.boot_transformers(name, hf_model=..., tokenizer=...)`` wraps a model we already
hold (no hub), and ``enable_compatibility_mode(no_processing=True)`` gives the legacy hook names
(``blocks.L.attn.hook_z``, ``blocks.L.hook_resid_pre``) without folding or centring any weight, so both
sides run the very same weights. The bridge gets its own copy of the model: booting switches the
attention to the eager kernel in place, and ours must run as the suite runs it.

``transformer_lens`` is imported only here, so the main suite never needs it: ``nox -s crosscheck``
installs it in an environment of its own (``locks/crosscheck.txt``). ``python -m repro.crosscheck``
writes ``reports/cpu/crosscheck.md`` and exits 1 when any difference exceeds ``TOLERANCE``.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import importlib.util
import math
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch

from repro import lock
from repro.assets import AssetError
from repro.cli import EXIT_BAD_INPUT, UserError
from repro.files import check_writable, write_text_atomic
from repro.ioi.collect import collect
from repro.ioi.dataset import PairBatch, generate_pairs, tokenize_pairs
from repro.ioi.metric import logit_diff_from_logits
from repro.ioi.patching import head_patched_ld, resid_patched_ld
from repro.ioi.vocabulary import TEMPLATES
from repro.results import _git, profile_dir

TOLERANCE = 1e-5  # on raw logit diffs (a few units at random init); float32 noise between the two is ~1e-6
MODEL = "gpt2-random"
MAX_PAIRS = 16
REPORT_FILE = "crosscheck.md"


@dataclass
class Comparison:
    name: str
    ours: str  # the function on our side
    theirs: str  # the function on TransformerLens's side
    shape: tuple[int, ...]  # [..., pair]
    max_effect: float  # largest |ours - corrupted logit diff|: what a wrong patch would get wrong
    max_diff: float  # largest |ours - theirs|; inf when the shapes differ

    @property
    def passed(self) -> bool:
        return self.max_diff <= TOLERANCE


def compare(name: str, ours: str, theirs: str, a: torch.Tensor, b: torch.Tensor, corrupted: torch.Tensor) -> Comparison:
    """Our values ``a`` [..., pair] against theirs ``b``; ``corrupted`` [pair] (the unpatched run) gives the
    size of the effects, so a reader sees the agreement is far finer than what patching changes."""
    effect = float((a - corrupted).abs().max())
    if a.shape != b.shape:
        return Comparison(name, ours, theirs, tuple(a.shape), effect, float("inf"))
    return Comparison(name, ours, theirs, tuple(a.shape), effect, float((a.double() - b.double()).abs().max()))


def pairs_batch(tokenizer, n_pairs: int, template: int, seed: int = 0) -> PairBatch:
    """``n_pairs`` generated IOI pairs (S2 swap) of one template, both orders: one token length, one batch."""
    # generate_pairs cycles (order, template): pairs 2t and 2t + 1 of every 2 * len(TEMPLATES) use template t
    per_round = 2 * len(TEMPLATES)
    rounds = -(-n_pairs // 2)
    pairs = [p for p in generate_pairs(tokenizer, rounds * per_round, seed=seed) if p.template == template]
    (batch,) = tokenize_pairs(tokenizer, pairs[:n_pairs])  # one template: one length
    return batch


def ours(lm, batch: PairBatch) -> dict[str, torch.Tensor]:
    """This suite's raw patched logit diffs."""
    clean = collect(lm.adapter, batch.clean, batch.io, batch.s)
    corrupted = collect(lm.adapter, batch.corrupted, batch.io, batch.s)
    return {
        "clean": clean.logit_diff,  # [pair]
        "corrupted": corrupted.logit_diff,  # [pair]
        "heads": head_patched_ld(lm.adapter, batch, clean, corrupted, final_only=False),  # [layer, head, pair]
        "heads_final": head_patched_ld(lm.adapter, batch, clean, corrupted, final_only=True),  # [layer, head, pair]
        "resid": resid_patched_ld(lm.adapter, batch, clean, corrupted),  # [layer, pos, pair]
    }


def theirs(lm, batch: PairBatch) -> dict[str, torch.Tensor]:
    """TransformerLens's raw patched logit diffs on its own copy of the same model."""
    import pandas as pd
    from transformer_lens import patching
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(
        "gpt2", hf_model=copy.deepcopy(lm.model), tokenizer=copy.deepcopy(lm.tokenizer), device="cpu"
    )
    bridge.enable_compatibility_mode(no_processing=True, disable_warnings=True)
    bridge.eval()

    def metric(logits):  # [pair, pos, vocab] -> [pair]
        return logit_diff_from_logits(logits, batch.io, batch.s)

    n_layers, n_heads, last = bridge.cfg.n_layers, bridge.cfg.n_heads, batch.n_pos - 1
    with torch.no_grad():
        _, clean_cache = bridge.run_with_cache(batch.clean)
        clean, corrupted = metric(bridge(batch.clean)), metric(bridge(batch.corrupted))
        sweep = {"patching_metric": metric, "reduce": "none"}  # per-pair values: [..., pair]
        heads = patching.get_act_patch_attn_head_out_all_pos(bridge, batch.corrupted, clean_cache, **sweep)
        # get_act_patch_attn_head_out_by_pos at the final position only: its setter and hook, with an index
        # table of (layer, final pos, head) rows instead of every position
        rows = pd.DataFrame([(layer, last, head) for layer in range(n_layers) for head in range(n_heads)],
                            columns=["layer", "pos", "head"])
        final = patching.generic_activation_patch(
            bridge, batch.corrupted, clean_cache, patch_setter=patching.layer_pos_head_vector_patch_setter,
            activation_name="z", index_df=rows, **sweep,
        )
        resid = patching.get_act_patch_resid_pre(bridge, batch.corrupted, clean_cache, **sweep)
    return {
        "clean": clean,
        "corrupted": corrupted,
        "heads": heads.values,  # [layer, head, pair]
        "heads_final": final.values.view(n_layers, n_heads, -1),  # rows were layer-major
        "resid": resid.values,  # [layer, pos, pair]
    }


ROWS = (  # (key, comparison, our function, TransformerLens's)
    ("clean", "unpatched, clean prompts", "collect", "bridge(clean)"),
    ("corrupted", "unpatched, corrupted prompts", "collect", "bridge(corrupted)"),
    ("heads", "each head's z, all positions", "head_patched_ld", "get_act_patch_attn_head_out_all_pos"),
    ("heads_final", "each head's z, final position", "head_patched_ld(final_only=True)",
     "get_act_patch_attn_head_out_by_pos (final pos)"),
    ("resid", "residual stream entering each layer, each position", "resid_patched_ld", "get_act_patch_resid_pre"),
)


def run(n_pairs: int, template: int) -> tuple[list[Comparison], dict]:
    from repro.models import load_model

    lm = load_model(MODEL)
    batch = pairs_batch(lm.tokenizer, n_pairs, template)
    start = time.perf_counter()
    a = ours(lm, batch)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    b = theirs(lm, batch)
    theirs_s = time.perf_counter() - start
    comparisons = [compare(name, f, g, a[key], b[key], a["corrupted"]) for key, name, f, g in ROWS]
    context = {
        "pairs": batch.size,
        "tokens": batch.n_pos,
        "template": template,
        "example": lm.tokenizer.decode(batch.clean[0]),
        "seconds": {"ours": round(ours_s, 1), "TransformerLens": round(theirs_s, 1)},
    }
    return comparisons, context


def _fmt(x: float) -> str:
    return f"{x:.2e}" if math.isfinite(x) else str(x)


def render(comparisons: list[Comparison], context: dict) -> str:
    passed = all(c.passed for c in comparisons)
    worst = max(c.max_diff for c in comparisons)
    verdict = "PASS" if passed else "FAIL"
    lines = [
        "# Cross-check: this suite's IOI patching against TransformerLens",
        "",
        f"**{verdict}**: {sum(c.passed for c in comparisons)} of {len(comparisons)} comparisons agree within "
        f"{TOLERANCE:g}; the largest |difference| is {_fmt(worst)}.",
        "",
        f"`{MODEL}` (GPT-2 small architecture, seeded random init, real GPT-2 tokenizer), "
        f"{context['pairs']} IOI pairs of template {context['template']} ({context['tokens']} tokens, S2 swap; "
        f"e.g. \"{context['example']}\"). Each number is a raw patched logit difference logit(IO) − logit(S) "
        "at the final position, per pair — not the normalised effect, which divides by clean − corrupted ≈ 0 "
        "at random init. Written by `nox -s crosscheck` (`python -m repro.crosscheck`, "
        "see `repro/crosscheck.py`).",
        "",
        "| comparison | ours | TransformerLens | shape | max \\|effect\\| | max \\|difference\\| | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        shape = "×".join(map(str, c.shape))
        result = "pass" if c.passed else "**FAIL**"
        lines.append(
            f"| {c.name} | `{c.ours}` | `{c.theirs}` | {shape} | {_fmt(c.max_effect)} | {_fmt(c.max_diff)} | {result} |"
        )
    versions = {p: _version(p) for p in ("transformer-lens", "torch", "transformers")}
    lines += [
        "",
        "Shapes are [layer, head, pair] for heads, [layer, position, pair] for the residual stream, [pair] "
        "unpatched. Effect: |ours − our corrupted logit diff|, how far patching moves the numbers compared "
        "(a patch in the wrong place would differ by about this much).",
        "",
        "Provenance: " + ", ".join(f"{p} {v}" for p, v in versions.items())
        + f"; lock `locks/crosscheck.txt` sha256 {(lock.sha256(lock.CROSSCHECK_LOCK) or 'missing')[:16]}…"
        + f"; git {_git('rev-parse', '--short', 'HEAD')}; torch threads {torch.get_num_threads()}"
        + f"; wall time ours {context['seconds']['ours']} s, TransformerLens {context['seconds']['TransformerLens']} s"
        + f"; {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}.",
        "",
    ]
    return "\n".join(lines)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m repro.crosscheck", description=__doc__.splitlines()[0])
    p.add_argument("--n-pairs", type=int, default=4, help=f"pairs to compare, 1..{MAX_PAIRS} (default: 4)")
    p.add_argument("--template", type=int, default=0, help=f"IOI template, 0..{len(TEMPLATES) - 1} (default: 0)")
    p.add_argument("--out", type=Path, default=None, help=f"markdown file (default: reports/cpu/{REPORT_FILE})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:  # checks first, then the minute of work
        if not 1 <= args.n_pairs <= MAX_PAIRS:
            raise UserError(f"--n-pairs must be in [1, {MAX_PAIRS}], got {args.n_pairs}.")
        if not 0 <= args.template < len(TEMPLATES):
            raise UserError(f"--template must be in [0, {len(TEMPLATES) - 1}], got {args.template}.")
        if importlib.util.find_spec("transformer_lens") is None:
            raise UserError(
                "transformer_lens is not installed in this environment; run `nox -s crosscheck`, which installs "
                "it from locks/crosscheck.txt in an environment of its own."
            )
        out = args.out or profile_dir("cpu") / REPORT_FILE
        try:
            check_writable(out.expanduser().absolute().parent, "--out's folder")
        except OSError as err:
            raise UserError(str(err)) from None
        comparisons, context = run(args.n_pairs, args.template)
        text = render(comparisons, context)
        write_text_atomic(out, text)
        print(text.split("\n\n")[1])  # the PASS/FAIL line
        print(f"written: {out}")
        return 0 if all(c.passed for c in comparisons) else 1

    try:
        return body()
    except (UserError, AssetError) as err:  # bad input: one line, no traceback
        print(f"python -m repro.crosscheck: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
