#!/usr/bin/env python3
"""bench/net/netlink.py: hutch's rtnetlink codec vs pyroute2 vs `ip`, in one run.

The measured unit is what a container's network setup does, start to finish:

  1. create a named network namespace C (/run/netns/C, bind-mounted);
  2. make a veth pair: host side in namespace H, peer `eth0` made directly inside C;
  3. inside C: add 10.241.0.2/24 to eth0, set eth0 up; in H: set the host side up;
  4. inside C: add a default route via 10.241.0.1;
  5. delete the host side (its peer goes with it) and delete C.

H is a scratch namespace the bench makes first, so the host's own interfaces are never
touched.  Each peer does the unit its idiomatic way, opening its sockets afresh each
time (as a runtime that sets up one container per process would):

  hutch     hutch.tools.netns.add/delete + hutch.net.netlink.Netlink(netns=path), one
            socket per namespace (setns in and out around socket())
  pyroute2  pyroute2.netns.create/remove + IPRoute(netns=name) (0.9.x forks a helper
            child to open a socket in another netns)
  ip        8 `ip` commands (ip netns add, ip -n H link add ... netns C, ...)

Each peer runs in its own fresh interpreter (a worker: this file with --worker), which
does W warm-up units then N timed ones and reports the times, its import time and
peak RSS (the worker's own ru_maxrss; for `ip`, the largest child's).  Import time is
also measured alone: `import X` timed with perf_counter in each of R fresh
interpreters.  Prints medians and ratios peer / hutch (> 1: hutch is faster).

usage: bench/net/netlink.py [-n N] [--imports R] [--peers hutch,pyroute2,ip]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PHASES = ("netns", "links", "inside", "dellink", "delns")
HOST_ADDR, PEER_CIDR = "10.241.0.1", "10.241.0.2/24"
IMPORTS = {"hutch": "import hutch.net.netlink", "pyroute2": "from pyroute2 import IPRoute, netns"}


# --- the unit of work, three ways (run inside a worker) --------------------------------------

def unit_hutch(outer: str, name: str, marks: list[float]) -> None:
    from hutch.net.netlink import Netlink
    from hutch.tools import netns
    netns.add(name)
    marks.append(time.perf_counter())
    path = f"/run/netns/{name}"
    with Netlink(netns=f"/run/netns/{outer}") as host:
        index = host.add_veth("vb0", "eth0", peer_netns=path)
        host.set_link(index, up=True)
        marks.append(time.perf_counter())
        with Netlink(netns=path) as inside:
            inside.add_address("eth0", PEER_CIDR)
            inside.set_link("eth0", up=True)
            inside.add_route(gateway=HOST_ADDR)
        marks.append(time.perf_counter())
        host.delete_link(index)
    marks.append(time.perf_counter())
    netns.delete(name)


def unit_pyroute2(outer: str, name: str, marks: list[float]) -> None:
    from pyroute2 import IPRoute, netns
    netns.create(name)
    marks.append(time.perf_counter())
    with IPRoute(netns=outer) as host:
        host.link("add", ifname="vb0", kind="veth", peer={"ifname": "eth0", "net_ns_fd": name})
        index = host.link_lookup(ifname="vb0")[0]
        host.link("set", index=index, state="up")
        marks.append(time.perf_counter())
        with IPRoute(netns=name) as inside:
            eth0 = inside.link_lookup(ifname="eth0")[0]
            inside.addr("add", index=eth0, address=PEER_CIDR.split("/")[0], prefixlen=24)
            inside.link("set", index=eth0, state="up")
            inside.route("add", dst="default", gateway=HOST_ADDR)
        marks.append(time.perf_counter())
        host.link("del", index=index)
    marks.append(time.perf_counter())
    netns.remove(name)


def _ip(*args: str) -> None:
    res = subprocess.run(["ip", *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    if res.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.decode().strip()}")


def unit_ip(outer: str, name: str, marks: list[float]) -> None:
    _ip("netns", "add", name)
    marks.append(time.perf_counter())
    _ip("-n", outer, "link", "add", "vb0", "type", "veth", "peer", "name", "eth0", "netns", name)
    _ip("-n", outer, "link", "set", "vb0", "up")
    marks.append(time.perf_counter())
    _ip("-n", name, "addr", "add", PEER_CIDR, "dev", "eth0")
    _ip("-n", name, "link", "set", "eth0", "up")
    _ip("-n", name, "route", "add", "default", "via", HOST_ADDR)
    marks.append(time.perf_counter())
    _ip("-n", outer, "link", "del", "vb0")
    marks.append(time.perf_counter())
    _ip("netns", "del", name)


UNITS = {"hutch": unit_hutch, "pyroute2": unit_pyroute2, "ip": unit_ip}


def worker(peer: str, outer: str, n: int, warmup: int) -> dict:
    """Import the peer's library (timed), run warm-up + n units; report as JSON."""
    t0 = time.perf_counter()
    if peer in IMPORTS:
        exec(IMPORTS[peer], {})
    import_s = time.perf_counter() - t0
    unit = UNITS[peer]
    totals, phases = [], {p: [] for p in PHASES}
    for i in range(warmup + n):
        name = f"hutch-bench-c{uuid.uuid4().hex[:8]}"
        marks = [time.perf_counter()]
        try:
            unit(outer, name, marks)
        finally:
            if os.path.lexists(f"/run/netns/{name}"):      # a failed unit leaves no netns
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
        marks.append(time.perf_counter())
        if i >= warmup:
            totals.append(marks[-1] - marks[0])
            for phase, a, b in zip(PHASES, marks, marks[1:]):
                phases[phase].append(b - a)
    return {"totals": totals, "phases": phases, "import_s": import_s,
            "rss_self_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "rss_children_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}


# --- the driver --------------------------------------------------------------------------------

def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    # byte-code caches as an installed package has them; without, every import compiles
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_worker(peer: str, outer: str, n: int, warmup: int) -> dict:
    res = subprocess.run([sys.executable, __file__, "--worker", peer, "--outer", outer, "-n", str(n),
                          "--warmup", str(warmup)], capture_output=True, text=True, timeout=120, env=_env())
    if res.returncode:
        raise RuntimeError(f"{peer} worker failed: {res.stderr.strip().splitlines()[-1:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def import_times(statement: str, runs: int) -> list[float]:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    subprocess.run([sys.executable, "-c", statement], check=True, env=_env())   # writes the .pyc files
    return [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 env=_env()).stdout) for _ in range(runs)]


def own_time(res: dict) -> list[float]:
    """Per-unit time minus its veth deletion (the same kernel wait for every peer)."""
    return [t - d for t, d in zip(res["totals"], res["phases"]["dellink"])]


def ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> int:
    if "--worker" in sys.argv:
        ap = argparse.ArgumentParser()
        ap.add_argument("--worker")
        ap.add_argument("--outer")
        ap.add_argument("-n", type=int)
        ap.add_argument("--warmup", type=int)
        o = ap.parse_args()
        print(json.dumps(worker(o.worker, o.outer, o.n, o.warmup)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=30, help="timed units per peer (default 30)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--imports", type=int, default=10, help="fresh interpreters per import timing")
    ap.add_argument("--peers", default="hutch,pyroute2,ip")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/net/netlink.py: needs root", file=sys.stderr)
        return 1
    peers = opts.peers.split(",")
    outer = f"hutch-bench-h{uuid.uuid4().hex[:8]}"
    results, notes = {}, []
    for statement in IMPORTS.values():            # .pyc files in place before any worker runs
        subprocess.run([sys.executable, "-c", statement], capture_output=True, env=_env())
    subprocess.run(["ip", "netns", "add", outer], check=True)
    try:
        for peer in peers:
            try:
                results[peer] = run_worker(peer, outer, opts.n, opts.warmup)
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as err:
                notes.append(f"{peer}: skipped ({err})")
    finally:
        subprocess.run(["ip", "netns", "del", outer], capture_output=True)
    imports = {peer: import_times(IMPORTS[peer], opts.imports) for peer in peers if peer in IMPORTS}

    print(f"bench/net/netlink.py: n={opts.n} units per peer (after {opts.warmup} warm-up), median ms")
    print("unit = netns add + veth (peer into the netns) + address + up x2 + default route + delete x2")
    print(f"{'peer':<9} {'unit':>8} {'ratio':>7} {'-dellink':>9} {'ratio':>7}   "
          + "".join(f"{p:>8}" for p in PHASES) + f"   {'RSS MiB':>8} {'child MiB':>9}")
    base = ms(results["hutch"]["totals"]) if "hutch" in results else None
    base_own = ms(own_time(results["hutch"])) if "hutch" in results else None
    for peer, res in results.items():
        total, own = ms(res["totals"]), ms(own_time(res))
        ratio = f"{total / base:6.2f}x" if base else ""
        own_ratio = f"{own / base_own:6.2f}x" if base_own else ""
        cells = "".join(f"{ms(res['phases'][p]):8.2f}" for p in PHASES)
        print(f"{peer:<9} {total:8.2f} {ratio:>7} {own:9.2f} {own_ratio:>7}   {cells}"
              f"   {res['rss_self_kib'] / 1024:8.1f} {res['rss_children_kib'] / 1024:9.1f}")
    print("phases: netns = create C; links = veth + host side up; inside = addr + up + route in C;"
          " dellink = delete the veth; delns = delete C")
    print("-dellink: the unit without deleting the veth, which blocks in the kernel (~30 ms here,"
          " an RCU grace period) whoever asks")
    print(f"\nimport time, median of {opts.imports} fresh interpreters (ms):")
    for peer, times in imports.items():
        ratio = f"  ({ms(times) / ms(imports['hutch']):.1f}x hutch)" if peer != "hutch" and "hutch" in imports else ""
        print(f"{peer:<9} {IMPORTS[peer]:<40} {ms(times):8.2f}{ratio}")
    if "hutch" in results:
        for peer in results:
            if peer != "hutch":
                print(f"{peer}/hutch per unit: {ms(results[peer]['totals']) / base:.1f}x,"
                      f" without the veth deletion: {ms(own_time(results[peer])) / base_own:.1f}x")
    for note in notes:
        print(f"note: {note}")
    print("note: RSS is the worker's peak (interpreter + library + its work); child = largest child "
          "process (the ip commands; pyroute2's netns helpers), counted from before its exec, so a "
          "forked interpreter's pages show up (`ip` alone peaks near 3 MiB under /usr/bin/time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
