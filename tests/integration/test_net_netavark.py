"""Differential: a container on a bridge network, as podman/netavark sets it up and as
hutch does (`hutch network create` + `hutch run --network`).

The same container both times: the busybox rootfs with the host's /usr bound read-only
(so the host's iproute2 and dash run inside), the same script printing what the container
sees -- eth0's addresses, the routes, /etc/resolv.conf, /etc/hosts, its hostname.  What
legitimately differs (MACs, interface indices, the exact address within the subnet, the
subnet itself: each network has its own) is normalised away and the rest must be equal.
Then a published port: a server on port 80 in the container is reached from the host at
127.0.0.1:HOSTPORT through each engine's DNAT.

podman is the session's private one (tests/helpers/engines.py) driving the runtime under
test; the network is netavark's, which is what is compared.  Both halves check that the
host's firewall is as before once the network is gone (netavark 1.4 writes iptables
rules, hutch its own nft table).  """

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from helpers.engines import IMAGE, explain
from helpers.netpeers import (HOST_PATH, HOST_SHELL, HOST_USR, INDEX, Subnet, hutch_networking,
                              iptables_rules, nft_ruleset, podman_network, subnet)
from helpers.run import hutch_executable, kill_tree

pytestmark = [pytest.mark.priv, pytest.mark.peer]

PODMAN_NET, HUTCH_NET = subnet(232), subnet(233)
NAME = f"hbdiff{INDEX}"          # both engines' network (and podman's bridge) name
SEP = "@@@"
VIEW = (f"ip -j addr show eth0; echo {SEP}; ip -j route; echo {SEP}; cat /etc/resolv.conf;"
        f" echo {SEP}; cat /etc/hosts; echo {SEP}; hostname")


# ---------------------------------------------------------------- what a container sees

def normalise(raw: str, net: Subnet) -> dict:
    """The container's view with what may differ replaced by what it must be: its address
    becomes SELF (after checking it is one host address in the subnet), the gateway GW,
    the subnet SUBNET; MACs, indices and counters are dropped."""
    addr_json, route_json, resolv, hosts, hostname = (p.strip() for p in raw.split(SEP))
    (link,) = json.loads(addr_json)
    self_ip = own_address(link, net)

    def symbol(value: str) -> str:
        return {self_ip: "SELF", net.gateway: "GW", net.cidr: "SUBNET",
                str(net.network.broadcast_address): "BROADCAST"}.get(value, value)

    return {
        "link": {k: link.get(k) for k in ("ifname", "mtu", "operstate", "link_type", "qdisc")}
        | {"flags": sorted(link.get("flags", []))},
        "addresses": sorted(
            (a["family"], symbol(a["local"]) if a["family"] == "inet" else a["scope"],
             a["prefixlen"], a.get("scope"), symbol(a.get("broadcast", "")))
            for a in link["addr_info"]),
        "routes": sorted(tuple(sorted((k, symbol(v) if isinstance(v, str) else v)
                                      for k, v in r.items() if v != []))
                         for r in json.loads(route_json)),
        "resolv.conf": [line for line in resolv.splitlines()
                        if line.strip() and not line.lstrip().startswith("#")],
        "hosts names self": hosts_names(hosts, self_ip, hostname),
        "hosts localhost": "localhost" in hosts_entries(hosts).get("127.0.0.1", []),
    }


def own_address(link: dict, net: Subnet) -> str:
    """eth0's one IPv4 address: in the subnet, with its prefix, not the gateway."""
    inet = [a for a in link["addr_info"] if a["family"] == "inet"]
    assert len(inet) == 1, f"eth0 has {len(inet)} IPv4 addresses: {inet}"
    (a,) = inet
    address = ipaddress.ip_address(a["local"])
    assert address in net.network, f"{address} is not in {net.cidr}"
    assert a["prefixlen"] == net.prefixlen, a
    assert a["local"] != net.gateway and address not in (net.network.network_address,
                                                        net.network.broadcast_address), a
    return a["local"]


def hosts_entries(hosts: str) -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    for line in hosts.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2:
            entries.setdefault(words[0], []).extend(words[1:])
    return entries


def hosts_names(hosts: str, self_ip: str, hostname: str) -> bool:
    """/etc/hosts maps the container's own address to its hostname."""
    return hostname in hosts_entries(hosts).get(self_ip, [])


def expected_shape(view: dict) -> None:
    """What either engine must show, whatever the other does: a default route via the
    gateway and the subnet's route on eth0, a nameserver, its own name in /etc/hosts."""
    routes = [dict(r) for r in view["routes"]]
    assert {"dst": "default", "gateway": "GW", "dev": "eth0"}.items() <= \
        next((r for r in routes if r.get("dst") == "default"), {}).items(), routes
    subnet_route = next((r for r in routes if r.get("dst") == "SUBNET"), {})
    assert subnet_route.get("dev") == "eth0" and subnet_route.get("prefsrc") == "SELF", routes
    assert any(line.split()[0] == "nameserver" for line in view["resolv.conf"]), view
    assert view["hosts names self"] and view["hosts localhost"], view
    assert view["link"]["ifname"] == "eth0" and "UP" in view["link"]["flags"], view


# ---------------------------------------------------------------- host firewall

def port_rules(port: int) -> list[str]:
    """Firewall lines naming a published host port: netavark's iptables `--dport N`, hutch's
    nft map element `127.0.0.1 . tcp . N : ADDR . 80`."""
    return firewall_mentions(f"dport {port} ", f". {port} :")


def firewall_mentions(*needles: str) -> list[str]:
    """iptables/ip6tables and nft lines naming any of needles (subnets, ports, bridges)."""
    lines = [line for rules in iptables_rules().values() for line in rules]
    lines += nft_ruleset().splitlines()
    return [line for line in lines if any(n in line for n in needles)]


def netavark_scaffolding_only(before: dict, after: dict) -> list[str]:
    """iptables lines new since before that are more than netavark 1.4's generic chains and
    the jumps into them (left once its last container is gone; the session-end cleanup
    drops those tables)."""
    extra = []
    for tool, lines in after.items():
        for line in set(lines) - set(before.get(tool, [])):
            generic = (line.startswith("*") or line == "COMMIT" or "NETAVARK" in line
                       or re.fullmatch(r":[A-Z]+ ACCEPT", line))
            if not generic or re.search(r"\d+\.\d+\.\d+\.\d+", line):
                extra.append(f"{tool}: {line}")
    return extra


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, timeout: float = 15) -> str:
    """GET / on 127.0.0.1:port, retried until the server in the container listens."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as r:
                return r.read().decode()
        except OSError as err:
            if time.monotonic() > deadline:
                return f"unreachable: {err}"
            time.sleep(0.1)


def web_script(token: str) -> str:
    return f"mkdir -p /tmp/www && echo {token} > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www"


# ---------------------------------------------------------------- podman / netavark

@pytest.fixture(scope="module")
def podman_net(podman_engine):
    """A netavark bridge network on PODMAN_NET; removed after the module, and then nothing
    naming it may be left in the host's firewall or links."""
    before = iptables_rules()
    name = podman_network(podman_engine, NAME, NAME, PODMAN_NET)
    try:
        yield name
    finally:
        podman_engine.remove_containers()
        podman_engine("network", "rm", "--force", name, cleanup=True)
    assert not Path(f"/sys/class/net/{NAME}").exists(), "netavark left its bridge"
    assert not firewall_mentions(PODMAN_NET.cidr, PODMAN_NET.gateway), \
        firewall_mentions(PODMAN_NET.cidr, PODMAN_NET.gateway)
    assert not netavark_scaffolding_only(before, iptables_rules())


@pytest.fixture(scope="module")
def podman_view(podman_engine, podman_net) -> dict:
    r = podman_engine("run", "--rm", "--network", podman_net, *HOST_USR, *HOST_PATH, IMAGE,
                      *HOST_SHELL, VIEW)
    assert r.returncode == 0, explain(podman_engine, extra=r.stderr)
    return normalise(r.stdout, PODMAN_NET)


def test_podman_view_has_the_bridge_network_shape(podman_view):
    """The podman half alone: this is what the hutch half is compared with, so it must
    itself show what a bridge network means (and the normalisation must work on it)."""
    expected_shape(podman_view)
    assert any(a[:4] == ("inet", "SELF", 24, "global") for a in podman_view["addresses"]), \
        podman_view


def test_podman_published_port_reaches_the_container(podman, podman_net):
    port, token = free_port(), f"podman-{INDEX}"
    r = podman("run", "-d", "--name", "hbdiff-web", "--network", podman_net,
               "-p", f"127.0.0.1:{port}:80", IMAGE, "sh", "-c", web_script(token))
    assert r.returncode == 0, explain(podman, extra=r.stderr)
    try:
        assert http_get(port).strip() == token
        assert port_rules(port), "netavark made no DNAT rule (iptables)"
    finally:
        podman("rm", "--force", "--time", "0", "hbdiff-web")
    assert not port_rules(port), "the port's DNAT rules outlived the container"


# ---------------------------------------------------------------- hutch

@pytest.fixture(scope="module")
def hutch_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hutch-net-root")


def hutch(root: Path, *args, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([hutch_executable(), "--root", str(root), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def hutch_net(hutch_root):
    why = hutch_networking(hutch_executable(), "--root", str(hutch_root))
    if why:
        pytest.skip(why)
    # --bridge: hutch's own pick (the first hutchN not in this root's store and not on the
    # host) could be another session's, made in another root and not up yet.
    r = hutch(hutch_root, "network", "create", NAME, "--subnet", HUTCH_NET.cidr, "--bridge", NAME)
    assert r.returncode == 0, r.stderr
    try:
        yield NAME
    finally:
        r = hutch(hutch_root, "network", "rm", NAME)
        assert r.returncode == 0, r.stderr
    assert not firewall_mentions(HUTCH_NET.cidr, HUTCH_NET.gateway), \
        firewall_mentions(HUTCH_NET.cidr, HUTCH_NET.gateway)


@pytest.fixture(scope="module")
def hutch_view(hutch_root, hutch_net, busybox_rootfs, tmp_path_factory) -> dict:
    rootfs = tmp_path_factory.mktemp("hutch-net-rootfs") / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)   # the binds make mount points
    r = hutch(hutch_root, "run", "--network", hutch_net, "--rootfs", rootfs, *HOST_USR,
              *HOST_PATH, "--", *HOST_SHELL, VIEW)
    assert r.returncode == 0, r.stderr
    return normalise(r.stdout, HUTCH_NET)


def test_hutch_view_equals_netavarks(hutch_view, podman_view):
    """Everything compared: eth0 (flags, MTU, qdisc; its IPv4 address with prefix, scope
    and broadcast; the link-local IPv6 one), the routes (the default one's metric 100 and
    proto static included, as netavark sets them), resolv.conf, the hosts entries."""
    expected_shape(hutch_view)
    assert hutch_view == podman_view


def test_hutch_published_port_reaches_the_container(hutch_root, hutch_net, rootfs):
    port, token = free_port(), f"hutch-{INDEX}"
    argv = [hutch_executable(), "--root", str(hutch_root), "run", "--network", hutch_net,
            "-p", f"127.0.0.1:{port}:80", "--rootfs", str(rootfs), "--",
            "sh", "-c", web_script(token)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        body = http_get(port)
        assert body.strip() == token, body + ("" if proc.poll() is None
                                              else f"\nhutch exited: {proc.stderr.read()}")
        assert port_rules(port), "hutch made no DNAT rule (nft)"
    finally:
        kill_tree(proc, ["httpd", "-f", "-p", "80", "-h", "/tmp/www"])
    assert not port_rules(port), "the port's DNAT rule outlived the container"
