#!/usr/bin/env python3
"""bench/net/start.py: what a bridge network adds to a container start, hutch vs
podman/netavark, in one run.

For each peer, the same busybox `/bin/true` is started N times with no network and N
times on a bridge network (alternating, after one warm-up of each):

- hutch:   `hutch run --rootfs BUSYBOX --net none -- /bin/true`
           `hutch run --rootfs BUSYBOX --network NET -- /bin/true`
           (private --root; NET made by `hutch network create --subnet 10.247.x.0/24`)
- podman:  `podman run --rm --network none IMAGE /bin/true`
           `podman run --rm --network NET IMAGE /bin/true`
           (private storage/runroot/network dirs, runc, NET a netavark bridge network on
           10.246.x.0/24 with DNS off: aardvark-dns would add a daemon hutch has no
           counterpart of)

The network's cost is median(network) - median(none) per peer; the goal is hutch's under
a third of netavark's.  Two situations, measured one after the other: the container is
the network's only one (its start makes the bridge and the firewall entries, its end
removes them: both engines keep a bridge only while a container uses it), and the
bridge is up already (a `sleep` container on the network meanwhile).  Peak RSS (/usr/bin/time -v: the largest process of the command)
is measured once per command.  Everything made is removed at the end.

Usage: bench/net/start.py [-n N] [--hutch PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from common import (HUTCH, Hutch, busybox, hutch_network, hutch_networking, median_ms,
                    peak_rss_kib, private_podman, require_root, run_timed, workdir)
from helpers.engines import IMAGE
from helpers.netpeers import INDEX, podman_network, subnet
from helpers.run import kill_tree

MODES = ("none", "network")


def measure(commands: dict[str, list[str]], n: int, env: dict | None = None) -> tuple[dict, dict]:
    """Times (s) and peak RSS (KiB) per mode; the modes alternate run by run so that drift
    (page cache, other load) falls on both alike."""
    for argv in commands.values():
        run_timed(argv, env=env)         # warm-up
    times = {mode: [] for mode in commands}
    for _ in range(n):
        for mode, argv in commands.items():
            times[mode].append(run_timed(argv, env=env))
    rss = {mode: peak_rss_kib(argv, env=env) for mode, argv in commands.items()}
    return times, rss


def bench_hutch(work, rootfs, n: int, binary: str) -> tuple[dict, dict]:
    hutch = Hutch(binary, work / "hutch-root")
    why = hutch_networking(*hutch.argv())
    if why:
        raise RuntimeError(why)
    run = ["run", "--rootfs", rootfs]
    with hutch_network(hutch, f"hbstart{INDEX}", subnet(247).cidr) as net:
        commands = {"none": hutch.argv(*run, "--net", "none", "--", "/bin/true"),
                    "network": hutch.argv(*run, "--network", net, "--", "/bin/true")}
        alone = measure(commands, n)
        keeper = subprocess.Popen(hutch.argv(*run, "--network", net, "--", "sleep", "600"),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            wait_for_link(net)
            return alone, measure(commands, n)
        finally:
            kill_tree(keeper, ["sleep", "600"])


def bench_podman(work, rootfs, n: int) -> tuple[dict, dict]:
    with private_podman(work, rootfs) as podman:
        net = podman_network(podman, f"hbstart{INDEX}", f"hbstart{INDEX}", subnet(246))
        try:
            run = ["run", "--rm"]
            commands = {"none": podman.argv(*run, "--network", "none", IMAGE, "/bin/true"),
                        "network": podman.argv(*run, "--network", net, IMAGE, "/bin/true")}
            alone = measure(commands, n, env=podman.env())
            podman("run", "-d", "--name", "hbstart-keeper", "--network", net, IMAGE,
                   "sleep", "600", check=True)
            wait_for_link(net)
            return alone, measure(commands, n, env=podman.env())
        finally:
            podman("rm", "--force", "--time", "0", "hbstart-keeper", cleanup=True)
            podman("network", "rm", "--force", net, cleanup=True)


def wait_for_link(name: str, timeout: float = 20) -> None:
    """Until the keeper container's network has its bridge up."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(f"/sys/class/net/{name}"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"bridge {name} did not appear for the keeper container")
        time.sleep(0.02)


SITUATIONS = ("first container on the network (bridge made and removed by it)",
              "bridge up (another container on the network)")


def report(n: int, results: dict, notes: list[str]) -> None:
    print(f"bench/net/start.py: busybox /bin/true, n={n} per mode, median ms, peak RSS MiB")
    for i, situation in enumerate(SITUATIONS):
        print(f"\n{situation}:")
        print(f"{'peer':<18}{'--net none':>12}{'--network':>12}{'network cost':>14}"
              f"{'RSS none':>10}{'RSS net':>9}")
        cost = {}
        for peer, phases in results.items():
            times, rss = phases[i]
            none, net = median_ms(times["none"]), median_ms(times["network"])
            cost[peer] = net - none
            mem = [f"{rss[m] / 1024:.1f}" if rss.get(m) else "-" for m in MODES]
            print(f"{peer:<18}{none:12.1f}{net:12.1f}{cost[peer]:14.1f}{mem[0]:>10}{mem[1]:>9}")
        if "hutch" in cost and cost.get("podman+netavark", 0) > 0:
            print(f"hutch/netavark network cost: {cost['hutch'] / cost['podman+netavark']:.2f}x"
                  "  (goal: < 0.33)")
    for note in notes:
        print(f"note: {note}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=15, help="runs per mode and peer (default 15)")
    ap.add_argument("--hutch", default=HUTCH)
    opts = ap.parse_args()
    require_root("bench/net/start.py")
    results, notes = {}, []
    with workdir("bench-net-start-") as work:
        rootfs = busybox(work)
        for peer, fn in (("hutch", lambda: bench_hutch(work, rootfs, opts.n, opts.hutch)),
                         ("podman+netavark", lambda: bench_podman(work, rootfs, opts.n))):
            try:
                results[peer] = fn()
            except (RuntimeError, OSError, AssertionError) as err:
                notes.append(f"{peer}: skipped ({str(err).splitlines()[0][:200]})")
    report(opts.n, results, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
