"""Claim 2 (seed 001): does gradient similarity (GradSim) predict the ripple of a MEMIT edit?

- ``pieces.py``       cloze knowledge pieces: typed facts of the fixture, HotpotQA (descriptive)
- ``scoring.py``      log P(a|q) and exact match of pieces, in length-sorted batches
- ``coupling.py``     GradSim and the first-order prediction from one batched pass (and the plain loop)
- ``memit/``          MEMIT, one algorithm step per file, batched over edits, and ``applied(deltas)``
- ``ripple.py``       edits, efficacy, ripple on every piece, first-order prediction, specificity
- ``correlation.py``  mean per-edit Spearman, two-way bootstrap, joint permutation, exclusions
- ``verdict.py``      the rule and the published numbers
- ``result.py``       ``GradSimResult``: measurement() and snapshot()
- ``run.py``          ``run_gradsim``: the pipeline
- ``plots.py``        the heatmap and the six-panel figure
- ``outputs.py``      the seed's output files
- ``benchmark.py``    GradSim batched vs loop, covariance cold build, one edit amortised over a batch
- ``cli.py``          ``python -m repro gradsim``
"""

from repro.gradsim.result import GradSimResult
from repro.gradsim.run import run_gradsim

__all__ = ["GradSimResult", "run_gradsim"]
