"""Claim 6 (seed 000's pipeline): is the hybrid placement of the IOI pipeline the fastest?

- ``placement``: which site runs each module; placement files; the three named modes; all 16 placements.
- ``teardown``: signals that unwind, children that die with their parent, leftovers found through /proc.
- ``link``: two network namespaces joined by a tbf-shaped veth pair (or the labelled loopback fallback).
- ``sites``: how the sites differ (pinned cores, the workstation's CFS quota) and how busy the machine was.
- ``engine``: the Dask cluster (a suite-free scheduler, a ``local`` and a ``remote`` worker) across the link.
- ``stages``: Filter, Collect, Patch, Plot (the IOI claim's code) as Dask tasks; the model's WorkerPlugin.
- ``pipeline``: one run of a placement, timed from Dask's task stream and transfer logs (scheduler clock).
- ``rounds``: the paired design at one link rate, and the link measured between the site workers.
- ``costmodel``: a placement's predicted time from compute, bytes and the link.
- ``optimiser``: calibrate the cost model from measured runs, rank all placements.
- ``sweep``: all 16 placements over link rates x workstation slowdowns (the map).
- ``scenarios``: the seed's own means re-computed through the cost model (a consistency check).
- ``run``: ``run_hybrid``; ``result``: ``HybridResult``; ``verdict``: the rule and PUBLISHED;
  ``plots``, ``benchmark``, ``cli``.
"""

__all__ = ["HybridResult", "run_hybrid"]


def __getattr__(name: str):
    """Lazy: the link, the cgroups and the engine import without torch (a teardown probe starts in a second)."""
    if name == "run_hybrid":
        from repro.placement.run import run_hybrid

        return run_hybrid
    if name == "HybridResult":
        from repro.placement.result import HybridResult

        return HybridResult
    raise AttributeError(f"module 'repro.placement' has no attribute {name!r}")
