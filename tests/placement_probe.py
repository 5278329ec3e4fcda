"""A run of claim 6's testbed that stops at a named phase and waits there for a signal (``test_placement``).

    python tests/placement_probe.py PHASE    # PHASE: namespace | cluster | run | done

It prints ``pid <pid>``, ``inodes <a> <b>`` once the namespaces exist, and ``at <phase>`` when it is waiting:
inside the namespace setup (after the first namespace, before the veth), during the cluster's start (the
scheduler spawned, the workers not yet asked for), or mid-run (a task busy on the remote worker). Nothing
of the model is loaded: only the teardown is under test.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import nullcontext

from repro.cli import stop_on_signals
from repro.placement import engine, link
from repro.placement.engine import Cluster, WorkerSpec
from repro.placement.sites import SiteCgroups, can_pin

PREFIX = "prb"


def say(text: str) -> None:
    print(text, flush=True)


def wait_here(phase: str, seconds: float = 60) -> None:
    say(f"at {phase}")
    time.sleep(seconds)


def main(phase: str) -> int:
    say(f"pid {os.getpid()}")
    real_run = link._run

    def run(argv):  # report the namespaces as they appear; stop after the first if asked
        real_run(argv)
        if argv[:3] == ["ip", "netns", "add"]:
            say(f"netns {argv[3]} {link.netns_inode('/run/netns/' + argv[3])}")
            if phase == "namespace":
                wait_here(phase)

    link._run = run
    real_connect = Cluster._connect

    def connect(self):
        if phase == "cluster":
            wait_here(phase)
        real_connect(self)

    Cluster._connect = connect
    engine.START_TIMEOUT_S = 60
    with stop_on_signals(), link.open_link(link.LinkSpec(5.0), prefix=PREFIX) as shaped:
        cgroups = SiteCgroups(3.0, prefix=PREFIX) if can_pin() is None else None
        with cgroups or nullcontext(), Cluster(shaped, WorkerSpec(1), WorkerSpec(1), cgroups=cgroups) as cluster:
            busy = cluster.client.submit(time.sleep, 60, resources={"remote": 1}, pure=False)
            remote = cluster.site_address("remote")
            while not cluster.client.processing(workers=[remote]).get(remote):
                time.sleep(0.05)
            if phase == "run":
                wait_here(phase)
            busy.cancel()
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
