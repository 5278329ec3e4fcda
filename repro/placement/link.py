"""The link between the two sites: a real network path shaped to a stated bandwidth, or a labelled fallback.

A shaped link is two network namespaces created by the run (``<prefix>l<pid>`` for the local site,
``<prefix>r<pid>`` for the remote one), joined by one veth pair whose two ends carry the only addresses the
run uses (10.251.0.1/30 local, 10.251.0.2/30 remote: private to these namespaces, so parallel runs and the
host's own network never see them). Each end's egress is shaped with ``tc tbf`` to the stated rate, so both
directions are, and ``set_rate`` changes it between measurements (a rate sweep needs no new cluster). This
kernel has no ``netem``: the link adds no latency of its own, and latency enters the cost model only. The
veth's own byte counters (``counters``) stand beside Dask's size estimates: they see heartbeats, pickling
headers and TCP too.

Everything is torn down on the way out (``with ShapedLink(...)``), on error, Ctrl-C, SIGTERM or SIGHUP
included (the caller installs ``repro.cli.stop_on_signals`` before the link exists): the processes inside the
namespaces first (by the caller), then the namespaces, which take the veth pair with them. ``leftovers``
checks all three: names, links and any process still inside (``/proc/*/ns/net``). Where namespaces cannot
be created (no privileges, no ``ip``), ``open_link`` falls back to loopback plus the analytic link model,
and says so in ``Link.kind``.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from repro.placement.teardown import CLONE_NEWNET, netns_inode, processes_in_netns, signals_held

SHAPED = "shaped veth (tc tbf)"
LOOPBACK = "loopback + analytic link model"
LOCAL_ADDR, REMOTE_ADDR = "10.251.0.1", "10.251.0.2"


class LinkError(RuntimeError):
    """The shaped link could not be set up; the message says which command failed and why."""


@dataclass(frozen=True)
class LinkSpec:
    """The link as stated: tbf's rate, and the latency the cost model adds per transfer (no netem here)."""

    rate_mbit: float = 20.0
    latency_ms: float = 0.0  # cost model only

    @property
    def bytes_per_s(self) -> float:
        return self.rate_mbit * 1e6 / 8

    def burst_bytes(self) -> int:
        """tbf's bucket: 2 ms at the rate, at least two full-size frames, so transfers see the rate, not the burst."""
        return max(3200, int(self.bytes_per_s * 0.002))


@dataclass
class Link:
    """Where each site listens and how to start a process there; ``kind`` is SHAPED or LOOPBACK."""

    kind: str
    spec: LinkSpec
    local_host: str
    remote_host: str
    local_ns: str | None = None
    remote_ns: str | None = None
    inodes: tuple[int, ...] = ()  # of the namespaces: how a process left inside is found
    rates: list[float] = field(default_factory=list)  # every rate set, in order

    @property
    def shaped(self) -> bool:
        return self.local_ns is not None

    def command_in(self, site_ns: str | None, argv: list[str]) -> list[str]:
        """``argv`` run inside a namespace (or as is on loopback)."""
        return ["ip", "netns", "exec", site_ns, *argv] if site_ns else argv

    def set_rate(self, rate_mbit: float) -> None:
        """Reshape both directions to ``rate_mbit`` (on loopback only the analytic model changes)."""
        self.spec = LinkSpec(rate_mbit, self.spec.latency_ms)
        self.rates.append(rate_mbit)
        if self.shaped:
            for ns in (self.local_ns, self.remote_ns):
                _shape(ns, ns, self.spec, "replace")

    def counters(self) -> dict[str, int] | None:
        """Bytes the local end of the veth has sent (towards the remote site) and received, from the kernel;
        None on loopback."""
        if not self.shaped:
            return None
        out = subprocess.run(["ip", "-n", self.local_ns, "-s", "-j", "link", "show", "dev", self.local_ns],
                             capture_output=True, text=True)
        if out.returncode:
            raise LinkError(f"cannot read the veth's counters: {out.stderr.strip()}")
        stats = json.loads(out.stdout)[0]["stats64"]
        return {"upload": int(stats["tx"]["bytes"]), "download": int(stats["rx"]["bytes"])}

    @contextmanager
    def in_local_namespace(self) -> Iterator[None]:
        """Run the block with this thread in the local namespace (threads it starts inherit it); a Dask client
        made here talks to the scheduler over the local site's side of the link."""
        if not self.local_ns:
            yield
            return
        with _thread_in_netns(self.local_ns):
            yield


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise LinkError(f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")


def _shape(ns: str, dev: str, spec: LinkSpec, how: str) -> None:
    _run(["tc", "-n", ns, "qdisc", how, "dev", dev, "root", "tbf", "rate", f"{spec.rate_mbit}mbit",
          "burst", str(spec.burst_bytes()), "latency", "200ms"])


def namespace_names(prefix: str = "hyb", pid: int | None = None) -> tuple[str, str]:
    """Unique per process, so parallel runs never collide (interface names share them; <= 15 characters)."""
    pid = os.getpid() if pid is None else pid
    return f"{prefix}l{pid}", f"{prefix}r{pid}"


class ShapedLink:
    """``with ShapedLink(spec) as link:`` two namespaces and a tbf-shaped veth pair, removed on exit."""

    def __init__(self, spec: LinkSpec, prefix: str = "hyb"):
        self.spec = spec
        self.local_ns, self.remote_ns = namespace_names(prefix)
        self.inodes: list[int] = []

    def __enter__(self) -> Link:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return Link(SHAPED, self.spec, LOCAL_ADDR, REMOTE_ADDR, self.local_ns, self.remote_ns, tuple(self.inodes),
                    [self.spec.rate_mbit])

    def _create(self) -> None:
        lns, rns = self.local_ns, self.remote_ns
        for ns in (lns, rns):
            _run(["ip", "netns", "add", ns])
            self.inodes.append(netns_inode(f"/run/netns/{ns}"))
        # The veth pair is made with its ends already in the namespaces: nothing appears in the host's.
        _run(["ip", "link", "add", lns, "netns", lns, "type", "veth", "peer", "name", rns, "netns", rns])
        for ns, addr in ((lns, LOCAL_ADDR), (rns, REMOTE_ADDR)):
            _run(["ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", ns])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", ns, "link", "set", ns, "up"])
            _shape(ns, ns, self.spec, "add")

    def close(self) -> None:
        """Delete both namespaces (the veth pair goes with them); safe to call twice or after a failed start."""
        with signals_held():
            for ns in (self.local_ns, self.remote_ns):
                subprocess.run(["ip", "netns", "delete", ns], capture_output=True)

    def __exit__(self, *exc) -> None:
        self.close()


def leftovers(prefix: str = "hyb", pid: int | None = None, inodes: tuple[int, ...] = ()) -> list[str]:
    """What a run of process ``pid`` left: named namespaces, veth ends in the host's namespace, and processes
    still inside its namespaces (found by inode, named or not). Empty after a clean teardown."""
    names = namespace_names(prefix, pid)
    found = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    left = [f"namespace {n}" for n in names if n in found]
    left += [f"link {n}" for n in names if f" {n}@" in links or f" {n}:" in links]
    left += [f"process {p} inside a run's namespace" for p in processes_in_netns(inodes)]
    return left


def can_shape() -> str | None:
    """None when namespaces can be made here, else why not."""
    if not shutil.which("ip") or not shutil.which("tc"):
        return "the `ip`/`tc` tools (iproute2) are missing"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_NET_ADMIN)"
    return None


@contextmanager
def open_link(spec: LinkSpec, *, shaped: bool = True, prefix: str = "hyb") -> Iterator[Link]:
    """A shaped link where possible, else (or with ``shaped=False``) loopback labelled LOOPBACK."""
    reason = can_shape() if shaped else "not requested"
    if reason is None:
        shaped_link, link = ShapedLink(spec, prefix), None
        try:  # one try from the first command on: a signal at any point still deletes what exists
            try:
                link = shaped_link.__enter__()
            except LinkError as err:  # e.g. a container that refuses namespaces even to root
                reason = str(err)
            if link is not None:
                yield link
        finally:
            shaped_link.close()
        if link is not None:
            return
    yield Link(f"{LOOPBACK} ({reason})", spec, "127.0.0.1", "127.0.0.1", rates=[spec.rate_mbit])


_setns_lock = threading.Lock()


@contextmanager
def _thread_in_netns(name: str) -> Iterator[None]:
    """Move the calling thread into network namespace ``name`` for the block, then back (setns(2))."""
    libc = ctypes.CDLL(None, use_errno=True)
    with _setns_lock, open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{name}") as target:
        if libc.setns(target.fileno(), CLONE_NEWNET):
            raise LinkError(f"setns into {name} failed: {os.strerror(ctypes.get_errno())}")
        try:
            yield
        finally:
            libc.setns(home.fileno(), CLONE_NEWNET)
