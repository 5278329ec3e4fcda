"""Claim 6 end to end: the IOI pipeline in every named mode over the link, the cost model, the optimiser.

``run_hybrid`` is what the claim module calls:

1. generate and tokenize the IOI pairs (the workstation's data);
2. open the link (two namespaces joined by a tbf-shaped veth pair, or the labelled loopback fallback) and
   start the cluster (scheduler and local worker on one side, remote worker on the other); warm both up;
3. run Local, Remote and Hybrid ``repeats`` times each, interleaved (the order rotates every round, so a
   slow spell on a shared machine does not land on one mode);
4. calibrate the cost model from those runs, predict all 16 placements, run the best ``validate_top`` for
   real and report the prediction error;
5. scenario 2: the seed's own numbers through the same cost model;
6. judge both scenarios, check that every run gave the same effects, write the timing files and figures.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np
from dask.sizeof import sizeof
from tqdm.auto import tqdm

from repro.files import figure_path
from repro.ioi.dataset import generate_pairs, tokenize_pairs
from repro.placement import plots
from repro.placement.costmodel import crossings, predict
from repro.placement.engine import Cluster, WorkerSpec
from repro.placement.link import LOOPBACK, LinkSpec, open_link
from repro.placement.optimiser import calibrate, prediction_error, rank
from repro.placement.pipeline import PipelineRun, run_pipeline
from repro.placement.placement import MODES
from repro.placement.result import HybridResult, write_timings
from repro.placement.scenarios import seed_costs
from repro.placement.stages import Pairs, Site, warm_up
from repro.placement.verdict import mode_verdict, seed_arithmetic
from repro.profiles import HybridSettings


def run_hybrid(lm, settings: HybridSettings, out_dir: str | Path, *, scheduler: str | None = None,
               shaped: bool = True, progress: bool = True) -> HybridResult:
    """Claim 6 on one model (see the module docstring); figures and timing files go to ``out_dir``."""
    pairs = generate_pairs(lm.tokenizer, settings.n_pairs, settings.pair_seed)
    data = Pairs(pairs, tokenize_pairs(lm.tokenizer, pairs))
    spec = LinkSpec(settings.rate_mbit, settings.latency_ms)
    sites = {"local": Site(lm.key, settings.local_device, "float32", settings.local_threads),
             "remote": Site(lm.key, settings.remote_device, "float32", settings.remote_threads)}
    bar = tqdm(total=settings.repeats * len(MODES) + settings.validate_top + 1, desc="hybrid", disable=not progress)
    with ExitStack() as stack:
        if scheduler:
            link_kind = f"external cluster at {scheduler} (link as found)"
            cluster = stack.enter_context(Cluster.connect(scheduler))
        else:
            link = stack.enter_context(open_link(spec, shaped=shaped))
            link_kind = link.kind
            cluster = stack.enter_context(Cluster(link, WorkerSpec(settings.local_threads),
                                                  WorkerSpec(settings.remote_threads)))
        warmed = {s: cluster.client.submit(warm_up, sites[s], resources={s: 1}, pure=False).result() for s in sites}
        bar.update()
        runs: dict[str, list[PipelineRun]] = {m: [] for m in MODES}
        names = list(MODES)
        for r in range(settings.repeats):
            for mode in names[r % len(names):] + names[: r % len(names)]:
                bar.set_postfix_str(mode)
                runs[mode].append(run_pipeline(cluster, MODES[mode], data, sites, settings.site_lost_s))
                bar.update()
        costs, link_model = calibrate([r for rs in runs.values() for r in rs], sizeof(data), spec)
        ranking = rank(costs, link_model)
        validation = []
        for prediction in ranking[: settings.validate_top]:
            bar.set_postfix_str(prediction.placement.label)
            run = run_pipeline(cluster, prediction.placement, data, sites, settings.site_lost_s)
            validation.append((prediction, run))
            bar.update()
    bar.close()

    loopback = link_kind.startswith(LOOPBACK)
    def wall(run: PipelineRun) -> float:  # on loopback, the analytic link stands in for the measured one
        if not loopback:
            return run.wall_s
        modelled = sum(link_model.transfer_s(b) for _, _, b in crossings(run.placement, costs))
        return run.wall_s - run.upload_s - run.download_s + modelled

    walls = {m: [wall(r) for r in rs] for m, rs in runs.items()}
    seed_model, seed_link = seed_costs(costs.output_bytes, costs.input_bytes)
    seed_predictions = {m: predict(p, seed_model, seed_link) for m, p in MODES.items()}
    all_runs = [r for rs in runs.values() for r in rs] + [r for _, r in validation]
    reference = runs["local"][0].effects
    result = HybridResult(
        model=lm.key,
        settings=settings,
        link_kind=link_kind,
        warmed=warmed,
        n_pairs=len(pairs),
        n_kept=reference.n_kept,
        clean_ld_mean=float(reference.clean_ld.mean()),
        corrupted_ld_mean=float(reference.corrupted_ld.mean()),
        input_bytes=int(costs.input_bytes),
        output_bytes={s: int(b) for s, b in costs.output_bytes.items()},
        runs=runs,
        walls=walls,
        measured=mode_verdict(walls),
        costs=costs,
        link_model=link_model,
        ranking=ranking,
        validation=[{"placement": p.placement.label, "name": p.placement.name, "predicted_s": p.wall_s,
                     "measured_s": wall(r), "error": prediction_error(p.wall_s, wall(r))} for p, r in validation],
        seed_link_bytes_per_s=seed_link.bytes_per_s,
        seed_predictions=seed_predictions,
        seed=mode_verdict({m: [p.wall_s] for m, p in seed_predictions.items()}),
        seed_ranking=rank(seed_model, seed_link),
        seed_arithmetic=seed_arithmetic(),
        max_effect_diff=max(float(np.abs(r.effects.heads - reference.heads).max()) for r in all_runs),
        max_logit_diff_diff=max(float(np.abs(r.effects.clean_ld - reference.clean_ld).max()) for r in all_runs),
        retried=sum(r.retried for r in all_runs),
    )
    out_dir = Path(out_dir)
    key = lm.key
    result.figures = {
        "stage_times": plots.plot_mode_bars(result.stage_table(), result.model, figure_path(out_dir, key, "hybrid", "stage-times")),
        "optimiser": plots.plot_optimiser(result.prediction_rows(), figure_path(out_dir, key, "hybrid", "optimiser")),
        "heatmap": plots.save_png(runs["hybrid"][0].figure, figure_path(out_dir, key, "hybrid", "heatmap")),
    }
    result.timing_files = write_timings(result, out_dir / f"{key}-hybrid-timing")
    return result

