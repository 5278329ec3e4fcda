"""Claim 4 (seed 003): silent data corruption in attention, caught by bound violations (and, for
comparison, by checksums).

- injection.py   IEEE-754 bit flips (InjectionConfig, FaultInjector, replayable history)
- strata.py      where faults land: the strata that reach harmful faults, and each fault's cell
- bounds.py      the bounds clean attention satisfies and their float tolerances (derivations)
- checksums.py   the checksums clean attention carries (ABFT, as ATTNChecker) and their tolerances
- detection.py   the detectors: every attention call checked against the bounds, or the checksums
- experiments.py WikiText-2 windows, clean baselines, injected runs, harm
- sweeps.py      ExperimentConfig, ParameterSweepConfig, templates, the resumable results log
- runner.py      a process's model, windows and baselines; distributed.py the same on Dask workers
- bidirectional.py DistilBERT at random init, side by side
- recall.py      recall with intervals, per stratum, re-weighted; which check caught what
- run.py         run_sdc: the pipeline; result.py SDCResult; verdict.py the rule; plots.py the figures
- benchmark.py   both detectors' overhead and the sweep's throughput; cli.py `python -m repro sdc`

The exposed attention itself (every intermediate a hook site) is ``repro.attention``.
"""

from repro.sdc.result import SDCResult
from repro.sdc.run import run_sdc

__all__ = ["SDCResult", "run_sdc"]
