"""How the two sites differ, and how busy the machine was: CPU pinning and a CFS quota (cgroup v1), and load
and steal samples.

The seed's sites differed by hardware (an i7 laptop vs an RTX 3080 Ti): its Collect and Patch ran about 3x
faster remote (2.1 / 0.7 s, 3.2 / 1.1 s), Filter and Plot no faster (0.8 / 0.9 s, 0.6 / 0.8 s). On one
machine the run makes the sites differ by a stated factor instead:

- ``cpuset`` pins the remote worker to one core ("away") and the scheduler, the client (this process) and the
  local worker to the other ("home"), so the remote site always has a core of its own;
- the ``cpu`` controller's CFS quota throttles the local worker to ``1 / slowdown`` of a core while it runs a
  throttled stage (the stage sets the quota on entry and lifts it on exit: ``stages.throttled``), so those
  stages take ``slowdown`` times as long at home as away;
- ``cpu.shares`` gives the scheduler and both workers 8x a plain process's weight, so other work on a shared
  machine takes less of their cores (it still takes some: every run records the load and steal it saw).

Everything lives under ``repro-<prefix><pid>`` in each hierarchy and is removed on the way out (this
process moved back first, the processes inside stopped by their owner). Without cgroup v1 ``cpu`` and
``cpuset`` (or root, or two cores) ``can_pin`` says why, and the run falls back to unpinned sites that differ
only by threads, saying so in its results.
"""

from __future__ import annotations

import os
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from repro.placement.teardown import signals_held

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000  # the CFS period; the quota is a fraction of it
HOME, AWAY = "home", "away"
CPU_GROUPS = ("scheduler", "local", "remote")
SHARES = 8192  # 8x a plain process's weight: on a shared machine the sites still get (most of) their core


def can_pin() -> str | None:
    """None when the run can pin and throttle its sites here, else why not."""
    for controller in ("cpu", "cpuset"):
        if not (CGROUP_ROOT / controller / "cgroup.procs").exists():
            return f"no cgroup-v1 `{controller}` hierarchy at {CGROUP_ROOT / controller}"
    if os.geteuid() != 0:
        return "creating cgroups needs root"
    if len(_cpus(CGROUP_ROOT / "cpuset" / "cpuset.effective_cpus")) < 2:
        return "pinning the two sites to their own cores needs at least two CPUs"
    return None


def _cpus(path: Path) -> list[int]:
    cpus = []
    for part in path.read_text().strip().split(","):
        if part:
            low, _, high = part.partition("-")
            cpus += range(int(low), int(high or low) + 1)
    return cpus


@dataclass(frozen=True)
class Throttle:
    """What a local task needs to slow itself down: the quota file, the quota, and which stages it applies to."""

    quota_file: str
    quota_us: int
    stages: tuple[str, ...]

    def applies(self, stage: str) -> bool:
        return stage in self.stages


class SiteCgroups:
    """``with SiteCgroups(slowdown=3.0) as cg:`` the cgroups above; ``cg.join(site)`` lists the files a process
    of ``site`` (one of ``CPU_GROUPS``) writes its pid into."""

    def __init__(self, slowdown: float, prefix: str = "hyb"):
        if slowdown < 1:
            raise ValueError(f"a slowdown below 1 would make the workstation faster; got {slowdown}")
        self.slowdown = slowdown
        self.name = f"repro-{prefix}{os.getpid()}"
        self.cpu = CGROUP_ROOT / "cpu" / self.name
        self.cpuset = CGROUP_ROOT / "cpuset" / self.name
        self.cores: dict[str, int] = {}
        self._home_before: Path | None = None

    def __enter__(self) -> SiteCgroups:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _create(self) -> None:
        cpus = _cpus(CGROUP_ROOT / "cpuset" / "cpuset.effective_cpus")
        mems = (CGROUP_ROOT / "cpuset" / "cpuset.effective_mems").read_text().strip()
        self.cores = {HOME: cpus[0], AWAY: cpus[1]}
        for group in (self.cpuset, self.cpuset / HOME, self.cpuset / AWAY):
            group.mkdir(exist_ok=True)
            (group / "cpuset.mems").write_text(mems)
        (self.cpuset / "cpuset.cpus").write_text(f"{cpus[0]},{cpus[1]}")
        for where, core in self.cores.items():
            (self.cpuset / where / "cpuset.cpus").write_text(str(core))
        self.cpu.mkdir(exist_ok=True)
        # The run's group competes with every other process for both cores; its sites then split its weight.
        (self.cpu / "cpu.shares").write_text(str(SHARES * len(self.cores)))
        for site in CPU_GROUPS:
            (self.cpu / site).mkdir(exist_ok=True)
            (self.cpu / site / "cpu.shares").write_text(str(SHARES))
        (self.cpu / "local" / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        # The client (this process) lives at home with the scheduler; it goes back where it was on exit.
        self._home_before = _own_cgroup("cpuset")
        (self.cpuset / HOME / "cgroup.procs").write_text(str(os.getpid()))

    def join(self, site: str) -> list[Path]:
        where = AWAY if site == "remote" else HOME
        return [self.cpuset / where / "cgroup.procs", self.cpu / site / "cgroup.procs"]

    def throttle(self, stages: tuple[str, ...]) -> Throttle | None:
        """The local site's throttle, or None at slowdown 1."""
        if self.slowdown == 1:
            return None
        return Throttle(str(self.cpu / "local" / "cpu.cfs_quota_us"), round(PERIOD_US / self.slowdown), stages)

    def throttled_stats(self) -> dict[str, int]:
        """The local cgroup's CFS counters: periods, periods throttled, nanoseconds throttled."""
        text = (self.cpu / "local" / "cpu.stat").read_text()
        return {k: int(v) for k, v in (line.split() for line in text.splitlines()) if k != "nr_bursts"}

    def describe(self) -> str:
        pinned = (f"remote worker pinned to core {self.cores.get(AWAY)}; scheduler, client and local worker to core "
                  f"{self.cores.get(HOME)}")
        if self.slowdown == 1:
            return pinned + "; nothing throttled (the sites' hardware makes the difference)"
        return (f"{pinned}; local worker throttled to 1/{self.slowdown:g} of a core (CFS quota "
                f"{round(PERIOD_US / self.slowdown)} us per {PERIOD_US} us) during its throttled stages")

    def close(self) -> None:
        """This process back where it was, then every group removed (children first). A group that still holds
        a process cannot be removed: its owner stops those first (``Cluster.close``)."""
        with signals_held():
            if self._home_before is not None:
                _write_quietly(self._home_before / "cgroup.procs", str(os.getpid()))
                self._home_before = None
            for group in (self.cpuset / HOME, self.cpuset / AWAY, self.cpuset, *(self.cpu / s for s in CPU_GROUPS),
                          self.cpu):
                _rmdir(group)


def _own_cgroup(controller: str) -> Path:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return CGROUP_ROOT / controller / path.lstrip("/")
    return CGROUP_ROOT / controller


def _write_quietly(path: Path, text: str) -> None:
    with suppress(OSError):
        path.write_text(text)


def _rmdir(group: Path) -> None:
    for _ in range(50):  # a process killed a moment ago may take a few ms to leave the group
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)


def leftover_cgroups(prefix: str = "hyb", pid: int | None = None) -> list[str]:
    name = f"repro-{prefix}{os.getpid() if pid is None else pid}"
    return [f"cgroup {CGROUP_ROOT / c / name}" for c in ("cpu", "cpuset") if (CGROUP_ROOT / c / name).exists()]


# ---- how busy the machine was: sampled by each site's worker before and after a run ----


def machine_sample() -> dict:
    """The 1-minute load average and the host's cumulative CPU ticks (``/proc/stat``: busy, idle, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return {"load1": float(Path("/proc/loadavg").read_text().split()[0]), "idle": idle + iowait, "steal": steal,
            "total": user + nice + system + idle + iowait + irq + softirq + steal, "cpus": os.cpu_count()}


def machine_use(before: dict, after: dict) -> dict:
    """Between two samples: the load average at the end, the host's busy share and the steal share."""
    total = max(1, after["total"] - before["total"])
    return {"load1": after["load1"], "busy": round(1 - (after["idle"] - before["idle"]) / total, 3),
            "steal": round((after["steal"] - before["steal"]) / total, 4)}
