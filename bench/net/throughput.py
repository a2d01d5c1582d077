#!/usr/bin/env python3
"""bench/net/throughput.py: TCP throughput container to container, hutch vs podman/netavark
vs what the kernel does with the same links made by hand, in one run.

iperf3 (the host's binary) serves in one end and sends from the other for T seconds (the
first second omitted: slow start); the figure is the receiver's rate.  Peers:

- veth pair:      two namespaces joined by one veth pair, made with `ip` (the kernel's
                  limit for a veth design; the goal is hutch within 10% of it)
- bridge by hand: two namespaces, each with a veth to a bridge in a third namespace (the
                  topology hutch and netavark build: one more hop than the pair)
- hutch:          two `hutch run --network NET` containers on one hutch network (the host
                  root view: the host's /usr, read-only)
- podman:         two `podman run --network NET` busybox containers on one netavark
                  network, the host's /usr bind-mounted read-only (runc, private podman)

Rounds alternate the peers' order; each peer's median over the rounds is printed with its
ratio to the veth pair.  Namespaces, links, networks and containers are removed at the end.

Usage: bench/net/throughput.py [-r ROUNDS] [-t SECONDS] [--hutch PATH]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys

from common import (HUTCH, Hutch, busybox, hutch_network, hutch_networking, private_podman,
                    require_root, workdir)
from helpers.engines import IMAGE
from helpers.netpeers import INDEX, HOST_USR, podman_network, subnet

SERVER = 10          # the server's host number in each subnet; clients get another


def client_script(server: str, seconds: int, out: str) -> str:
    """A shell loop: retry until the server listens (it starts in parallel), then print
    iperf3's JSON report.  iperf3 3.12 exits 0 on errors with -J: the report says."""
    iperf = f"iperf3 -c {server} -t {seconds + 1} -O 1 -J"
    return (f"i=0; until {iperf} > {out} 2>&1 && ! grep -q '\"error\"' {out}; do i=$((i+1)); "
            f"if [ $i -ge 100 ]; then cat {out}; exit 1; fi; sleep 0.05; done; cat {out}")


def iperf_pair(server_argv: list[str], client_argv: list[str], *, env=None,
               seconds: int) -> float:
    """Run the server and the client (each argv a whole command); bits/s received."""
    server = subprocess.Popen(server_argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        res = subprocess.run(client_argv, capture_output=True, text=True, env=env,
                             timeout=seconds + 60)
        if res.returncode != 0:
            raise RuntimeError(f"iperf3 client: exit {res.returncode}: "
                               f"{(res.stdout + res.stderr).strip()[-400:]}")
        report = json.loads(res.stdout[res.stdout.index("{"):])
        try:
            return report["end"]["sum_received"]["bits_per_second"]
        except KeyError:
            raise RuntimeError(f"iperf3 client: no result: {report.get('error') or res.stdout[-400:]}"
                               ) from None
    finally:
        try:
            server.wait(timeout=20)     # -1: the server exits after one test
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ---------------------------------------------------------------- links made by hand

def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


class HandMade:
    """Namespaces and links made with `ip`; every namespace deleted on close (which
    takes the veths and the bridge inside it along)."""

    def __init__(self, tag: str):
        self.tag, self.namespaces = tag, []

    def netns(self, role: str) -> str:
        name = f"hb{self.tag}{role}{INDEX}"
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def close(self) -> None:
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)


def veth_pair(hand: HandMade, cidr_of) -> tuple[str, str]:
    """Namespaces a and b joined by one veth pair; (server ns, client ns)."""
    a, b = hand.netns("a"), hand.netns("b")
    ip("link", "add", "eth0", "netns", a, "type", "veth", "peer", "eth0", "netns", b)
    for ns, n in ((a, SERVER), (b, 2)):
        ip("-n", ns, "addr", "add", cidr_of(n), "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
    return a, b


def bridged(hand: HandMade, cidr_of) -> tuple[str, str]:
    """Namespaces a and b, each with a veth to a bridge in namespace br."""
    br, a, b = hand.netns("br"), hand.netns("a"), hand.netns("b")
    ip("-n", br, "link", "add", "br0", "type", "bridge")
    ip("-n", br, "link", "set", "br0", "up")
    for ns, n, port in ((a, SERVER, "va"), (b, 2, "vb")):
        ip("-n", br, "link", "add", port, "type", "veth", "peer", "eth0", "netns", ns)
        ip("-n", br, "link", "set", port, "master", "br0", "up")
        ip("-n", ns, "addr", "add", cidr_of(n), "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
    return a, b


def by_hand(work, topology, net, seconds: int) -> float:
    hand = HandMade(topology.__name__[:2])
    try:
        server_ns, client_ns = topology(hand, lambda n: f"{net.host(n)}/{net.prefixlen}")
        out = work / f"iperf-{topology.__name__}.json"
        return iperf_pair(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1"],
                          ["ip", "netns", "exec", client_ns, "sh", "-c",
                           client_script(net.host(SERVER), seconds, shlex.quote(str(out)))],
                          seconds=seconds)
    finally:
        hand.close()


# ---------------------------------------------------------------- engines

class HutchPeer:
    def __init__(self, work, binary: str):
        self.hutch = Hutch(binary, work / "hutch-root")
        self.net = subnet(247)
        why = hutch_networking(*self.hutch.argv())
        if why:
            raise RuntimeError(why)

    def __enter__(self):
        self._network = hutch_network(self.hutch, f"hbtput{INDEX}", self.net.cidr)
        self.name = self._network.__enter__()
        return self

    def __exit__(self, *exc):
        return self._network.__exit__(*exc)

    def run(self, seconds: int) -> float:
        server = self.net.host(SERVER)
        run = ["run", "--network", self.name]
        return iperf_pair(self.hutch.argv(*run, "--ip", server, "--", "iperf3", "-s", "-1"),
                          self.hutch.argv(*run, "--", "sh", "-c",
                                          client_script(server, seconds, "/tmp/iperf.json")),
                          seconds=seconds)


class PodmanPeer:
    def __init__(self, work, rootfs):
        self.work, self.rootfs, self.net = work, rootfs, subnet(246)

    def __enter__(self):
        self._engine = private_podman(self.work, self.rootfs)
        self.podman = self._engine.__enter__()
        self.name = podman_network(self.podman, f"hbtput{INDEX}", f"hbtput{INDEX}", self.net)
        return self

    def __exit__(self, *exc):
        self.podman("network", "rm", "--force", self.name, cleanup=True)
        return self._engine.__exit__(*exc)

    def run(self, seconds: int) -> float:
        server = self.net.host(SERVER)
        run = ["run", "--rm", "--network", self.name, *HOST_USR]
        return iperf_pair(self.podman.argv(*run, "--ip", server, IMAGE, "iperf3", "-s", "-1"),
                          self.podman.argv(*run, IMAGE, "sh", "-c",
                                           client_script(server, seconds, "/tmp/iperf.json")),
                          env=self.podman.env(), seconds=seconds)


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-r", "--rounds", type=int, default=3, help="rounds (default 3)")
    ap.add_argument("-t", "--seconds", type=int, default=3, help="seconds measured per run")
    ap.add_argument("--hutch", default=HUTCH)
    opts = ap.parse_args()
    require_root("bench/net/throughput.py")
    rates: dict[str, list[float]] = {}
    notes: list[str] = []
    with workdir("bench-net-tput-") as work:
        rootfs = busybox(work)
        peers = {"veth pair": lambda s: by_hand(work, veth_pair, subnet(248), s),
                 "bridge by hand": lambda s: by_hand(work, bridged, subnet(249), s)}
        engines = []
        try:
            for label, make in (("hutch", lambda: HutchPeer(work, opts.hutch)),
                                ("podman+netavark", lambda: PodmanPeer(work, rootfs))):
                try:
                    peer = make().__enter__()
                except (RuntimeError, OSError, AssertionError) as err:
                    notes.append(f"{label}: skipped ({str(err).splitlines()[0][:200]})")
                    continue
                engines.append(peer)
                peers[label] = peer.run
            for round_no in range(opts.rounds):
                order = list(peers) if round_no % 2 == 0 else list(reversed(peers))
                for label in order:
                    if label not in peers:
                        continue
                    try:
                        rate = peers[label](opts.seconds)
                    except (RuntimeError, OSError, ValueError, KeyError,
                            subprocess.TimeoutExpired) as err:
                        notes.append(f"{label}: dropped ({str(err).splitlines()[0][:300]})")
                        del peers[label]
                        continue
                    rates.setdefault(label, []).append(rate)
        finally:
            for peer in reversed(engines):
                peer.__exit__(None, None, None)
    report(opts, rates, notes)
    return 0


def report(opts, rates: dict[str, list[float]], notes: list[str]) -> None:
    print(f"bench/net/throughput.py: iperf3 TCP, one stream, {opts.seconds} s x "
          f"{opts.rounds} rounds, median Gbit/s")
    base = statistics.median(rates["veth pair"]) if rates.get("veth pair") else None
    print(f"{'peer':<18}{'median':>9}{'min':>8}{'max':>8}{'vs veth pair':>14}")
    for label, values in rates.items():
        med = statistics.median(values)
        ratio = f"{med / base:.2f}x" if base else "-"
        print(f"{label:<18}{med / 1e9:9.2f}{min(values) / 1e9:8.2f}{max(values) / 1e9:8.2f}"
              f"{ratio:>14}")
    if base and rates.get("hutch"):
        gap = 1 - statistics.median(rates["hutch"]) / base
        print(f"hutch c2c below the veth pair by {gap * 100:.1f}%  (goal: within 10%)")
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    sys.exit(main())
