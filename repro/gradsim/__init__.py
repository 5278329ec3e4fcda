"""Claim 2 (seed 001): does gradient similarity (GradSim) predict the ripple of a MEMIT edit?

- ``pieces.py``       cloze knowledge pieces from HotpotQA and the known-facts fixture, in 2-hop chains
- ``scoring.py``      log P(a|q) and exact match of pieces, batched
- ``coupling.py``     GradSim: the N x N cosine matrix of per-piece gradients (batched and plain loop)
- ``memit/``          MEMIT, one algorithm step per file, and ``applied(deltas)``
- ``ripple.py``       edits, efficacy, ripple on every other piece, generalisation, specificity
- ``correlation.py``  Spearman/Pearson, within-edit permutation p, cluster bootstrap CI, partial correlation
- ``verdict.py``      the rule and the published numbers
- ``result.py``       ``GradSimResult``: measurement() and snapshot()
- ``run.py``          ``run_gradsim``: the pipeline
- ``plots.py``        the heatmap and the six-panel figure
- ``outputs.py``      the seed's output files
- ``benchmark.py``    GradSim batched vs loop, covariance throughput, one edit's time split
- ``cli.py``          ``python -m repro gradsim``
"""

from repro.gradsim.result import GradSimResult
from repro.gradsim.run import run_gradsim

__all__ = ["GradSimResult", "run_gradsim"]
