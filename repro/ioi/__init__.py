"""Claim 1 (seed 000): IOI activation patching. See ``experiment.run_ioi`` for the pipeline."""

from repro.ioi.dataset import IOIPair, generate_pairs, load_pairs
from repro.ioi.experiment import IOIResult, head_effect_matrix, run_ioi, write_results
from repro.ioi.verdict import IOIVerdict, ioi_verdict

__all__ = [
    "IOIPair",
    "IOIResult",
    "IOIVerdict",
    "generate_pairs",
    "head_effect_matrix",
    "ioi_verdict",
    "load_pairs",
    "run_ioi",
    "write_results",
]
