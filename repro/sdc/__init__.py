"""Claim 4 (seed 003): silent data corruption in attention, caught by bound violations.

- attention.py   eager attention with every intermediate exposed (transformers' AttentionInterface)
- injection.py   IEEE-754 bit flips (InjectionConfig, FaultInjector, replayable history)
- bounds.py      the bounds clean attention satisfies and their float tolerances (derivations)
- detection.py   the Detector: every attention call checked against the bounds
- experiments.py WikiText-2 windows, clean baselines, injected runs, harm
- sweeps.py      ExperimentConfig, ParameterSweepConfig, templates, the resumable results log
- run.py         run_sdc: the pipeline; result.py SDCResult; verdict.py the rule; plots.py the figures
- benchmark.py   detector overhead and injection throughput; cli.py `python -m repro sdc`
"""

from repro.sdc.result import SDCResult
from repro.sdc.run import run_sdc

__all__ = ["SDCResult", "run_sdc"]
