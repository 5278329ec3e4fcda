"""Claim 3 (seed 002), split learning: GPT-2 cut into Bottom and Top, counted, timed and explained.

- ``parts``: the cut, as ordered lists of named components (Bottom: ids -> hidden; Top: hidden -> logits).
- ``counting``: MACs/FLOPs per component (torch's FlopCounterMode).
- ``timing``: interleaved Bottom/Top timing with component times inside each call.
- ``roofline``: measured memory bandwidth and matmul peak; the LM head's predicted time.
- ``plots``: the figures. ``experiment``: ``run_split``, ``SplitResult``, the verdict rule, ``run_benchmark``.
"""

from repro.split.experiment import RATIO_THRESHOLD, SEED, SplitResult, run_benchmark, run_split, split_verdict
from repro.split.parts import Component, Part, param_counts, split_parts

__all__ = [
    "RATIO_THRESHOLD",
    "SEED",
    "Component",
    "Part",
    "SplitResult",
    "param_counts",
    "run_benchmark",
    "run_split",
    "split_parts",
    "split_verdict",
]
