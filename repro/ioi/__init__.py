"""Claim 1 (seed 000): IOI activation patching.

- ``run``: ``run_ioi``, the pipeline stage by stage (Filter -> Collect -> Patch -> Judge -> Plot), and
  ``head_effect_matrix``, the same patching on pairs you give.
- ``result``: ``IOIResult``, with ``measurement()`` for the report and ``snapshot()``; ``write_results``.
- ``verdict``: the rule (``ioi_criteria`` on all pairs, ``ioi_ruling`` from bootstrap intervals over them,
  the relative-depth bands) and ``PUBLISHED``, the seed's numbers.
- ``plots``: the figures, from plain data. ``benchmark``: exact and attribution patching against the
  naive per-head baseline. ``cli``: ``python -m repro ioi``.
- ``dataset``: IOI prompt pairs (generator, tokenised batches); ``vocabulary``: the templates and the
  single-token words; ``pairs_file``: pairs in the seed's JSON format. ``filtering``: keep the pairs the model gets
  right. ``collect``: cache every activation. ``patching``: exact patching at every granularity.
  ``attribution``: attribution patching. ``metric``: the logit difference and its normalisation.
"""

from repro.ioi.dataset import IOIPair, generate_pairs
from repro.ioi.pairs_file import load_pairs
from repro.ioi.result import IOIResult, write_results
from repro.ioi.run import head_effect_matrix, run_ioi
from repro.ioi.verdict import PUBLISHED, IOICriteria, ioi_criteria, ioi_ruling

__all__ = [
    "PUBLISHED",
    "IOIPair",
    "IOIResult",
    "IOICriteria",
    "generate_pairs",
    "head_effect_matrix",
    "ioi_criteria",
    "ioi_ruling",
    "load_pairs",
    "run_ioi",
    "write_results",
]
