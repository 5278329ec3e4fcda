"""Claim 3 (seed 002), split learning: GPT-2 cut into Bottom and Top, counted, timed and explained.

- ``run``: ``run_split``, the pipeline stage by stage (cut, count, time, sweep, roofline, plot).
- ``result``: ``SplitResult``, with ``measurement()`` for the report and ``snapshot()`` (counts only).
- ``verdict``: the rule (``split_ruling``: intervals over timing pairs, ``RATIO_THRESHOLD``) and
  ``PUBLISHED``, seed 002's numbers.
- ``plots``: the figures, from plain data. ``benchmark``: ``run_benchmark`` rows for ``nox -s bench``.
- ``cli``: ``python -m repro split``, the seed's analysis printed for one model, cut and length.
- ``parts``: the cut, as ordered lists of named components (Bottom: ids -> hidden; Top: hidden -> logits).
- ``counting``: MACs/FLOPs per component (torch's FlopCounterMode).
- ``timing``: interleaved Bottom/Top timing with component times inside each call.
- ``roofline``: measured memory bandwidth and matmul peak; the LM head's predicted time.
"""

from repro.split.benchmark import run_benchmark
from repro.split.parts import Component, Part, param_counts, split_parts
from repro.split.result import SplitResult
from repro.split.run import run_split
from repro.split.verdict import PUBLISHED, RATIO_THRESHOLD, split_ruling

__all__ = [
    "PUBLISHED",
    "RATIO_THRESHOLD",
    "Component",
    "Part",
    "SplitResult",
    "param_counts",
    "run_benchmark",
    "run_split",
    "split_parts",
    "split_ruling",
]
