"""``python -m repro split``: seed 002's analysis of one model cut into Bottom and Top.

Prints what the seed's analysis script printed (parameters per component, MACs, median times with their
IQR, the Bottom/Top breakdown, the ratio) and writes into ``--out`` a JSON summary and the figures.
``--pairs`` is checked before anything runs (at least ``MIN_PAIRS``, the verdict's gate), and
``--cut`` and ``--seq-len`` against the model before any counting or timing starts.
"""

from __future__ import annotations

from dataclasses import replace

from repro.cli import UserError, claim_parser, guarded, int_in, prepare
from repro.files import staged_dir, write_json_atomic
from repro.models import MODEL_KEYS, load_model
from repro.split.parts import LM_HEAD
from repro.split.result import SplitResult
from repro.split.run import run_split
from repro.split.timing import MAX_PAIRS
from repro.split.verdict import LM_HEAD_SHARE, MIN_PAIRS, PUBLISHED, RATIO, RATIO_THRESHOLD

COMMAND = "split"


def parser():
    p = claim_parser(
        COMMAND, __doc__.splitlines()[0], models=MODEL_KEYS, default_model="gpt2-random", default_out="out/split"
    )
    p.add_argument("--cut", type=int_in(1), default=None,
                   help="blocks in Bottom and in Top, 1..n_layers/2 (default: the profile's, 2)")
    p.add_argument("--seq-len", type=int_in(1), default=None,
                   help="tokens per call, batch 1, 1..the model's positions (default: the profile's, 6)")
    p.add_argument("--pairs", type=int_in(MIN_PAIRS, MAX_PAIRS, note="fewer cannot pass the verdict's gate"),
                   default=None, help=f"interleaved timing pairs, {MIN_PAIRS}..{MAX_PAIRS} (default: the profile's)")
    return p


def check_against_model(cut: int, seq_len: int, n_layers: int, positions: int, model: str) -> None:
    """Bottom takes the first ``cut`` blocks and Top the last ``cut``, so they must not overlap; the input
    must fit the model's positions."""
    if not 1 <= cut <= n_layers // 2:
        raise UserError(
            f"--cut {cut} does not fit {model} ({n_layers} blocks): Bottom and Top each take --cut blocks, "
            f"so it must be in 1..{n_layers // 2}."
        )
    if not 1 <= seq_len <= positions:
        raise UserError(f"--seq-len {seq_len} does not fit {model}: it must be in 1..{positions} (its positions).")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        profile = prepare(args)
        overrides = {"cut": args.cut, "seq_len": args.seq_len, "pairs": args.pairs}
        settings = replace(profile.split, **{k: v for k, v in overrides.items() if v is not None})
        lm = load_model(args.model, profile.device, profile.dtype)
        positions = lm.model.config.max_position_embeddings
        check_against_model(settings.cut, settings.seq_len, lm.adapter.n_layers, positions, args.model)
        with staged_dir(args.out) as staging:
            result = run_split(lm, replace(profile, split=settings), staging, progress=not args.quiet)
            summary = {
                "model": args.model,
                "profile": profile.name,
                "settings": settings,
                "verdict": result.verdict,
                "criteria": result.criteria(),
                "ruling": result.ruling,
                "counts": result.snapshot(),
                "numbers": result.numbers(),
                "published": PUBLISHED,
                "figures": sorted(p.name for p in result.figures.values()),
            }
            write_json_atomic(staging / f"{args.model}-split-summary.json", summary)
        print(analysis(result))
        print(f"\nwrote {args.model}-split-summary.json and {len(result.figures)} figures to {args.out}")
        return 0

    return guarded(COMMAND, body)


def analysis(result: SplitResult) -> str:
    """The seed's analysis as text: per-component table, compute, times, ratio, verdict."""
    s = result.timing.summary()
    ratio, share = result.estimates[RATIO], result.estimates[LM_HEAD_SHARE]
    macs, weight_macs = result.macs(), result.weight_macs()
    lines = [
        f"{result.model_key} cut at {result.cut} blocks, input [1, {result.seq_len}, {result.d_model}], "
        f"{s['threads']} thread(s), {s['pairs']} interleaved timing pairs",
    ]
    for part in ("bottom", "top"):
        ms, total_ms = result.component_ms(part), result.total_ms(part)
        lines += ["", f"{part.capitalize():<20} {'params (M)':>10} {'G MACs':>8} {'median ms':>10} {'share':>6}"]
        for name, n in result.params[part].items():
            lines.append(
                f"  {name:<18} {n / 1e6:>10.2f} {macs[part][name] / 1e9:>8.4f} {ms[name]:>10.3f} "
                f"{ms[name] / total_ms:>6.0%}"
            )
        lines.append(
            f"  {'total':<18} {sum(result.params[part].values()) / 1e6:>10.2f} "
            f"{sum(macs[part].values()) / 1e9:>8.4f} {total_ms:>10.3f} {1:>6.0%}"
        )
    lines += [
        "",
        "Compute, G MACs (the seed's 'GFLOPS'): weight matmuls only / with attention's QK^T and AV",
        f"  Bottom {sum(weight_macs['bottom'].values()) / 1e9:.4f} / {sum(macs['bottom'].values()) / 1e9:.4f}"
        f"   (seed {PUBLISHED['gmacs']['bottom']})",
        f"  Top    {sum(weight_macs['top'].values()) / 1e9:.4f} / {sum(macs['top'].values()) / 1e9:.4f}"
        f"   (seed {PUBLISHED['gmacs']['top']}; LM head {macs['top'][LM_HEAD] / 1e9:.4f}, "
        f"seed {PUBLISHED['gmacs']['lm head']})",
        "",
        "Time per call, median (IQR)",
        f"  Bottom {s['bottom_ms']:8.3f} ms ({s['bottom_ms_iqr'][0]:.3f}-{s['bottom_ms_iqr'][1]:.3f})"
        f"   seed {PUBLISHED['ms']['bottom']} ms",
        f"  Top    {s['top_ms']:8.3f} ms ({s['top_ms_iqr'][0]:.3f}-{s['top_ms_iqr'][1]:.3f})"
        f"   seed {PUBLISHED['ms']['top']} ms",
        f"Ratio Top/Bottom {s['ratio']:.2f}x (IQR {s['ratio_iqr'][0]:.2f}-{s['ratio_iqr'][1]:.2f}, "
        f"95% CI {ratio.interval.low:.2f}-{ratio.interval.high:.2f} over {ratio.interval.n} pairs); seed {PUBLISHED['ratio']}x",
        f"LM head share of Top's time {share.value:.0%} (95% CI {share.interval.low:.0%}-{share.interval.high:.0%}; "
        f"seed {PUBLISHED['lm_head_share_of_top']:.0%})",
        f"Verdict at this cut and length: {result.verdict.value}, decided by {result.ruling.decided_by} (the rule: the "
        f"ratio's interval above {RATIO_THRESHOLD:g} and the LM head's lead over Top's other components above 0)",
    ]
    if result.ruling.to_decide:
        lines.append(f"What would decide: {result.ruling.to_decide}")
    return "\n".join(lines)
