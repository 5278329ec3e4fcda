"""Claim 3 end to end: Cut -> Count -> Time -> Sweep -> Roofline -> Plot.

``run_split`` cuts the model into Bottom and Top at the seed's cut, counts parameters and MACs per
component at the seed's shape, times Bottom and Top interleaved with component breakdowns, sweeps
sequence length and thread count, measures the machine's memory bandwidth and matmul peak for a roofline
of the LM head, draws the figures and returns a ``SplitResult``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from repro.files import figure_path
from repro.models import LoadedModel
from repro.profiles import PROFILES, Profile, SplitSettings
from repro.split import plots
from repro.split.counting import component_flops, lm_head_macs
from repro.split.parts import LM_HEAD, Part, lm_head_is_tied, param_counts, split_parts
from repro.split.result import SplitResult
from repro.split.roofline import lm_head_roofline, memory_bandwidth, peak_matmul_flops
from repro.split.timing import time_pairs
from repro.split.verdict import PUBLISHED, RATIO_THRESHOLD, split_ruling
from repro.timing import StageTimer, torch_threads

# Per sweep point: the weights are already hot; a new shape needs a call or two for the allocator.
SWEEP_WARMUP = 2
# Thread counts other than the run's own are swept only up to this length: on 2 CPU cores one 1-thread
# pair at 512 tokens takes ~1.3 s, and the full cross product would triple run_split's ~40 s.
OTHER_THREADS_MAX_SEQ = 64
TOKEN_IDS_SEED = 0  # the random token ids fed to Bottom (timing depends on the shape, not the text)


def token_ids(part: Part, seq_len: int, batch: int = 1) -> torch.Tensor:
    """Seeded random token ids [batch, seq_len] on the model's device."""
    embedding = part.adapter.position_embedding
    if embedding is not None and seq_len > embedding.num_embeddings:
        raise ValueError(
            f"seq_len={seq_len} exceeds the model's {embedding.num_embeddings} learned positions; "
            "drop it from SplitSettings.seq_lens."
        )
    generator = torch.Generator().manual_seed(TOKEN_IDS_SEED)
    ids = torch.randint(0, part.adapter.d_vocab, (batch, seq_len), generator=generator)
    return ids.to(part.adapter.unembed.weight.device)


def sweep_points(settings: SplitSettings, main_threads: int) -> list[tuple[int, int]]:
    """(threads, seq_len) to time: every length at the run's thread count, short ones at the other counts."""
    seq_lens = sorted(set(settings.seq_lens) | {settings.seq_len})
    others = sorted(set(settings.threads) - {main_threads})
    longest_other = max(OTHER_THREADS_MAX_SEQ, settings.seq_len)
    return [(main_threads, s) for s in seq_lens] + [
        (t, s) for t in others for s in seq_lens if s <= longest_other
    ]


def sweep(
    bottom: Part, top: Part, settings: SplitSettings, points: list[tuple[int, int]], *, progress: bool = True
) -> list[dict]:
    """Ratio (and LM head ms) at every (thread count, sequence length), ``sweep_pairs`` pairs each."""
    rows = []
    for n_threads, seq_len in tqdm(points, desc="split sweep (threads, seq_len)", leave=False, disable=not progress):
        timing = time_pairs(
            bottom, top, token_ids(bottom, seq_len), settings.sweep_pairs, SWEEP_WARMUP, n_threads
        )
        rows.append({**timing.summary(), "lm_head_ms": timing.top.component_median_ms(LM_HEAD)})
    return rows


def roofline_rows(sweep_rows: list[dict], adapter, bandwidth: dict, peak_flops: float) -> list[dict]:
    """Per swept sequence length: the LM head's measured time next to its roofline prediction."""
    weight = adapter.unembed.weight
    rows = []
    for row in sweep_rows:
        predicted = lm_head_roofline(
            row["seq_len"], adapter.d_model, adapter.d_vocab, weight.element_size(), bandwidth["read"], peak_flops
        )
        rows.append(
            {
                **predicted,
                "measured_ms": row["lm_head_ms"],
                "measured_over_predicted": row["lm_head_ms"] / predicted["predicted_ms"],
            }
        )
    return rows


def run_split(lm: LoadedModel, profile: Profile, out_dir: Path | str, *, progress: bool = True) -> SplitResult:
    """Claim 3 on ``lm`` at ``profile.split``; figures go to ``out_dir`` as ``<model>-split-<figure>.png``.

    ``settings.timing_threads`` sets the intra-op threads of the headline timing, the full sequence-length
    sweep and the roofline (None: torch's current setting); the other counts in ``settings.threads`` are
    swept at short lengths.
    """
    settings = profile.split
    timer = StageTimer()
    load_before = os.getloadavg()[0]
    adapter = lm.adapter
    bottom, top = split_parts(adapter, settings.cut)
    weight = adapter.unembed.weight
    main_threads = settings.timing_threads or torch.get_num_threads()

    with timer.stage("count"):  # at the seed's shape; Top's input is Bottom's output
        ids = token_ids(bottom, settings.seq_len)
        bottom_flops, bottom_attention, hidden = component_flops(bottom, ids)
        top_flops, top_attention, _ = component_flops(top, hidden)
    timing = timer.call(
        "time", time_pairs, bottom, top, ids, settings.pairs, settings.warmup, main_threads, progress=progress
    )
    points = sweep_points(settings, main_threads)
    sweep_rows = timer.call("sweep", sweep, bottom, top, settings, points, progress=progress)
    with timer.stage("roofline"), torch_threads(main_threads):
        bandwidth = memory_bandwidth(weight.device)
        peak = peak_matmul_flops(weight.device, weight.dtype)
    roofline = roofline_rows([r for r in sweep_rows if r["threads"] == main_threads], adapter, bandwidth, peak)
    ruling, estimates = timer.call("judge", split_ruling, timing, {name: p.split.pairs for name, p in PROFILES.items()})

    result = SplitResult(
        model_key=lm.key,
        family=adapter.family,
        cut=settings.cut,
        seq_len=settings.seq_len,
        d_model=adapter.d_model,
        params={"bottom": param_counts(bottom), "top": param_counts(top)},
        groups={c.name: c.group for c in bottom.components + top.components},
        flops={"bottom": bottom_flops, "top": top_flops},
        attention_flops={"bottom": bottom_attention, "top": top_attention},
        lm_head_macs_analytic=lm_head_macs(1, settings.seq_len, adapter.d_model, adapter.d_vocab),
        lm_head_tied=lm_head_is_tied(adapter),
        timing=timing,
        sweep=sweep_rows,
        bandwidth=bandwidth,
        peak_flops=peak,
        roofline=roofline,
        ruling=ruling,
        estimates=estimates,
    )
    result.figures = timer.call("plot", draw, result, Path(out_dir))
    result.seconds = timer.seconds
    result.elapsed_s = timer.total()
    result.load_average = [load_before, os.getloadavg()[0]]
    return result


def draw(result: SplitResult, out_dir: Path) -> dict[str, Path]:
    """The three figures of the result, as ``<model>-split-<figure>.png`` in ``out_dir``."""
    key, s = result.model_key, result.timing.summary()
    head = f"{key}, cut {result.cut}, batch 1"
    return {
        "components": plots.plot_component_bars(
            {"bottom": result.component_ms("bottom"), "top": result.component_ms("top")},
            result.groups,
            f"{head}, {result.seq_len} tokens, {s['threads']} thread(s)\nTop/Bottom = {s['ratio']:.2f}x "
            f"(IQR {s['ratio_iqr'][0]:.2f}-{s['ratio_iqr'][1]:.2f}; seed {PUBLISHED['ratio']}x)",
            figure_path(out_dir, key, "split", "components"),
        ),
        "ratio_vs_seq_len": plots.plot_ratio_vs_seq_len(
            result.sweep,
            PUBLISHED["ratio"],
            RATIO_THRESHOLD,
            f"{head}: Top/Bottom time vs sequence length",
            figure_path(out_dir, key, "split", "ratio-vs-seqlen"),
        ),
        "lm_head_roofline": plots.plot_lm_head_roofline(
            result.roofline,
            f"{head}, {s['threads']} thread(s): LM head vs roofline\n"
            f"({result.bandwidth['read'] / 1e9:.1f} GB/s read, {result.peak_flops / 1e9:.0f} GFLOP/s matmul)",
            figure_path(out_dir, key, "split", "lm-head-roofline"),
        ),
    }
