"""Claim 6 (seed 000's pipeline): is the hybrid placement of the IOI pipeline the fastest?

- ``placement``: which site runs each module; placement files; the three named modes; all 16 placements.
- ``link``: two network namespaces joined by a tbf-shaped veth pair (or the labelled loopback fallback).
- ``engine``: the Dask cluster (scheduler, a ``local`` and a ``remote`` worker) across the link.
- ``stages``: Filter, Collect, Patch, Plot (the IOI claim's code) as Dask tasks.
- ``pipeline``: one run of a placement, timed from Dask's task stream and transfer logs.
- ``costmodel``: a placement's predicted time from compute, bytes and the link.
- ``optimiser``: calibrate the cost model from measured runs, rank all placements.
- ``scenarios``: the seed's numbers through the cost model (scenario 2).
- ``run``: ``run_hybrid``; ``result``: ``HybridResult``; ``verdict``: the rule and PUBLISHED;
  ``plots``, ``benchmark``, ``cli``.
"""

from repro.placement.result import HybridResult
from repro.placement.run import run_hybrid

__all__ = ["HybridResult", "run_hybrid"]
