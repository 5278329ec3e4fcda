"""The cost model: a placement's time from per-site compute times, the bytes each stage hands on, and the link.

In the spirit of Neurosurgeon (Kang et al., ASPLOS 2017), which partitions DNN work between a mobile device
and the cloud from measured per-layer costs and the link's bandwidth. For a placement, stage by stage:

    wall(stage) = overhead + compute[stage][site] + transfer(bytes in)   if its input crosses the link
    transfer(b) = latency + per_transfer + b / bandwidth

A stage's input crosses when the previous stage (for Filter: the pairs, which start on the workstation) ran
on the other site; the figure's trip back to the workstation belongs to Plot when Plot ran remote. An input
moving to the remote site is an upload, one moving to the local site a download. The pipeline is a chain, so
the placement's wall time is the sum of its stages'.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from repro.placement.placement import LOCAL, REMOTE, STAGES, Placement


@dataclass(frozen=True)
class LinkModel:
    bytes_per_s: float
    latency_s: float = 0.0  # per transfer (this kernel has no netem: latency lives here only)
    per_transfer_s: float = 0.0  # Dask's fixed cost of one worker-to-worker transfer

    def transfer_s(self, nbytes: float) -> float:
        return self.latency_s + self.per_transfer_s + nbytes / self.bytes_per_s


@dataclass(frozen=True)
class StageCosts:
    """What the model needs: compute seconds per stage and site, and the bytes flowing between stages."""

    compute_s: dict[str, dict[str, float]]  # stage -> site -> seconds
    output_bytes: dict[str, float]  # stage -> bytes of its result
    input_bytes: float  # the pairs, Filter's input
    overhead_s: float = 0.0  # Dask's scheduling overhead per stage


@dataclass
class Prediction:
    placement: Placement
    stages: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> upload/download/compute/wall

    @property
    def wall_s(self) -> float:
        return sum(s["wall_s"] for s in self.stages.values())

    @property
    def network_s(self) -> float:
        return sum(s["upload_s"] + s["download_s"] for s in self.stages.values())


def crossings(placement: Placement, costs: StageCosts) -> list[tuple[str, str, float]]:
    """Every transfer over the link: (stage it belongs to, "upload" | "download", bytes)."""
    out, previous_site, previous_bytes = [], LOCAL, costs.input_bytes
    for stage in STAGES:
        site = placement.site(stage)
        if site != previous_site:
            out.append((stage, "upload" if site == REMOTE else "download", previous_bytes))
        previous_site, previous_bytes = site, costs.output_bytes[stage]
    if previous_site == REMOTE:  # the figure goes home
        out.append((STAGES[-1], "download", previous_bytes))
    return out


def predict(placement: Placement, costs: StageCosts, link: LinkModel) -> Prediction:
    prediction = Prediction(placement)
    for stage in STAGES:
        compute = costs.compute_s[stage][placement.site(stage)]
        prediction.stages[stage] = {"upload_s": 0.0, "download_s": 0.0, "compute_s": compute,
                                    "wall_s": costs.overhead_s + compute}
    for stage, direction, nbytes in crossings(placement, costs):
        seconds = link.transfer_s(nbytes)
        prediction.stages[stage][f"{direction}_s"] += seconds
        prediction.stages[stage]["wall_s"] += seconds
    return prediction


def with_slowdown(costs: StageCosts, slowdown: float, stages: tuple[str, ...]) -> StageCosts:
    """The same costs with the workstation ``slowdown`` times slower than the remote site on ``stages`` (the
    map's other axis); the other stages keep their measured local times."""
    compute = {s: dict(sites) for s, sites in costs.compute_s.items()}
    for stage in stages:
        compute[stage][LOCAL] = compute[stage][REMOTE] * slowdown
    return StageCosts(compute, costs.output_bytes, costs.input_bytes, costs.overhead_s)
