"""hutch.net.netlink on the real kernel, differential against iproute2.

Everything happens inside network namespaces the tests make (`ip netns add
hutch-nltest-XXXX`, deleted by the fixture even when a test fails): the codec opens its
socket there with Netlink(netns=path), and `ip -n NS -j ...` reads the kernel's view
back.  The host's own interfaces are never touched."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import uuid

import pytest

from hutch.errors import ConfigError, NotFoundError
from hutch.net.netlink import Netlink, NetlinkError, in_netns

pytestmark = pytest.mark.priv


def ip(ns: str, *args: str):
    """`ip -n NS -j ARGS` parsed; iproute2 is the peer the codec is checked against."""
    out = subprocess.run(["ip", "-n", ns, "-j", *args], capture_output=True, text=True, check=True,
                         timeout=20).stdout
    return json.loads(out) if out.strip() else []


def _make_netns() -> str:
    name = f"hutch-nltest-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=20)
    return name


def _remove_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)


@pytest.fixture
def netns():
    name = _make_netns()
    yield name
    _remove_netns(name)


@pytest.fixture
def netns2():
    name = _make_netns()
    yield name
    _remove_netns(name)


@pytest.fixture
def nl(netns):
    with Netlink(netns=f"/run/netns/{netns}") as link:
        yield link


def _ino(path: str) -> int:
    return os.stat(path).st_ino


def _ip_link(ns: str, name: str) -> dict:
    return ip(ns, "-d", "link", "show", "dev", name)[0]


# --- links ---------------------------------------------------------------------------------

def test_the_socket_lives_in_the_netns_and_the_thread_comes_back(netns, nl):
    home = _ino("/proc/thread-self/ns/net")
    assert [link["name"] for link in nl.links()] == ["lo"]            # a fresh netns has only lo
    assert _ino("/proc/thread-self/ns/net") == home
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        with Netlink(netns=fd) as by_fd:
            assert [link["index"] for link in by_fd.links()] == [1]
        os.fstat(fd)                                                    # a caller's fd stays open
    finally:
        os.close(fd)
    assert _ino("/proc/thread-self/ns/net") == home


def test_bridge_and_veth_match_what_ip_reports(netns, nl):
    br = nl.add_bridge("hbr0", mtu=1400, alias="hutch test bridge")
    assert (nl.link("hbr0")["kind"], nl.link("hbr0")["mtu"]) == ("bridge", 1400)
    veth = nl.add_veth("hv0", "hv1", mtu=1300, master="hbr0", alias="host side")
    nl.set_link("hv0", up=True)
    nl.set_link(br, up=True)
    for name, index in (("hbr0", br), ("hv0", veth)):
        ours, theirs = nl.link(name), _ip_link(netns, name)
        assert ours["index"] == index == theirs["ifindex"]
        assert ours["name"] == theirs["ifname"]
        assert ours["kind"] == theirs["linkinfo"]["info_kind"]
        assert ours["mtu"] == theirs["mtu"]
        assert ours["address"] == theirs["address"]
        assert ours["alias"] == theirs.get("ifalias")
        assert ours["operstate"] == theirs["operstate"]
        assert ours["up"] == ("UP" in theirs["flags"]) is True
    assert nl.link("hbr0")["mtu"] == 1300               # a bridge takes its smallest port's mtu
    assert nl.link("hv0")["master"] == br and _ip_link(netns, "hv0")["master"] == "hbr0"
    peer = nl.link("hv1")
    assert (peer["kind"], peer["mtu"], peer["up"], peer["master"]) == ("veth", 1300, False, None)
    assert _ip_link(netns, "hv1")["operstate"] == "DOWN"


def test_a_dump_lists_the_same_links_as_ip(netns, nl):
    nl.add_bridge("hbr0")
    nl.add_veth("hv0", "hv1")
    ours = {(link["index"], link["name"], link["kind"]) for link in nl.links()}
    theirs = {(row["ifindex"], row["ifname"], row.get("linkinfo", {}).get("info_kind"))
              for row in ip(netns, "-d", "link", "show")}
    assert ours == theirs and len(ours) == 4


def test_the_veth_peer_is_made_straight_in_the_other_netns(netns, netns2, nl):
    fd = os.open(f"/run/netns/{netns2}", os.O_RDONLY)
    try:
        index = nl.add_veth("hv0", "eth0", peer_netns=fd, mtu=1420)
    finally:
        os.close(fd)
    assert nl.link("eth0") is None
    assert [row["ifname"] for row in ip(netns, "link", "show")] == ["lo", "hv0"]
    inside = _ip_link(netns2, "eth0")
    assert inside["mtu"] == 1420 and inside["linkinfo"]["info_kind"] == "veth"
    assert nl.link("hv0")["index"] == index
    with Netlink(netns=f"/run/netns/{netns2}") as other:
        assert other.link("eth0")["link"] == index       # the peer points back across netns
    # a path works as well as an fd, and the peer of a deleted veth goes with it
    assert nl.delete_link("hv0") is True
    assert [row["ifname"] for row in ip(netns2, "link", "show")] == ["lo"]
    nl.add_veth("hv2", "eth1", peer_netns=f"/run/netns/{netns2}")
    assert [row["ifname"] for row in ip(netns2, "link", "show")] == ["lo", "eth1"]


def test_set_link_renames_moves_releases_and_downs(netns, netns2, nl):
    br = nl.add_bridge("hbr0")
    nl.add_veth("hv0", "hv1", master=br)
    nl.set_link("hv0", up=True, mtu=1280, alias="renamed soon")
    nl.set_link("hv0", new_name="hv9")
    assert nl.link("hv0") is None
    link = _ip_link(netns, "hv9")
    assert (link["mtu"], link["ifalias"], link["master"], "UP" in link["flags"]) == (1280, "renamed soon", "hbr0", True)
    nl.set_link("hv9", master=0, up=False)
    link = _ip_link(netns, "hv9")
    assert "master" not in link and "UP" not in link["flags"]
    nl.set_link("hv9", netns_fd=f"/run/netns/{netns2}")
    assert nl.link("hv9") is None and _ip_link(netns2, "hv9")["ifname"] == "hv9"


def test_delete_link_of_a_missing_link_is_false_not_an_error(netns, nl):
    nl.add_bridge("hbr0")
    assert nl.delete_link("hbr0") is True
    assert nl.delete_link("hbr0") is False
    assert nl.delete_link(4242) is False
    assert [row["ifname"] for row in ip(netns, "link", "show")] == ["lo"]


# --- addresses and routes ----------------------------------------------------------------------

def test_addresses_match_ip_addr_and_ipv6_skips_dad(netns, nl):
    nl.add_veth("hv0", "hv1")
    nl.set_link("hv0", up=True)
    nl.set_link("hv1", up=True)
    nl.add_address("hv0", "10.231.0.1/24")
    nl.add_address("hv0", "fd42::1/64")
    nl.add_address("hv1", "fd42::2/64", nodad=False)
    nl.add_address(nl.index("hv1"), "10.231.0.2/24")
    ours = {(a["index"], a["family"], a["address"], a["prefixlen"]) for a in nl.addresses()}
    theirs = {(row["ifindex"], 6 if info["family"] == "inet6" else 4, info["local"], info["prefixlen"])
              for row in ip(netns, "addr", "show") for info in row["addr_info"]}
    assert ours == theirs
    assert ("10.231.0.1", 24) in {(a["address"], a["prefixlen"]) for a in nl.addresses("hv0")}
    assert all(a["index"] == nl.index("hv0") for a in nl.addresses("hv0"))
    info = {i["local"]: i for row in ip(netns, "addr", "show") for i in row["addr_info"]}
    assert info["fd42::1"].get("nodad") is True and not info["fd42::1"].get("tentative")
    assert not info["fd42::2"].get("nodad")


def test_routes_match_ip_route_for_both_families(netns, nl):
    br = nl.add_bridge("hbr0")
    nl.set_link(br, up=True)
    nl.add_address(br, "10.232.0.1/24")
    nl.add_address(br, "fd43::1/64")
    nl.add_route(gateway="10.232.0.254")
    nl.add_route("10.233.0.0/16", dev="hbr0", metric=20)
    nl.add_route(gateway="fd43::fe", family=6, metric=300)
    nl.add_route("fd44::/64", gateway="fd43::fd")
    names = {row["ifindex"]: row["ifname"] for row in ip(netns, "link", "show")}
    for family in (4, 6):
        ours = {(r["dst"], r["gateway"], names[r["oif"]], r["metric"] or 0) for r in nl.routes(family)}
        theirs = {(row["dst"], row.get("gateway"), row["dev"], row.get("metric", 0))
                  for row in ip(netns, f"-{family}", "route", "show")}
        assert ours == theirs
    assert ("default", "10.232.0.254") in {(r["dst"], r["gateway"]) for r in nl.routes()}
    assert ("10.233.0.0/16", 20) in {(r["dst"], r["metric"]) for r in nl.routes()}


# --- bad input: one clear line -------------------------------------------------------------------

def test_bad_input_gives_one_line_each(netns, nl):
    nl.add_bridge("hbr0")
    cases = [
        (lambda: nl.add_bridge("x" * 16), ConfigError, "invalid link name 'xxxxxxxxxxxxxxxx'"),
        (lambda: nl.add_bridge("hbr0"), NetlinkError, "cannot add link hbr0: File exists"),
        (lambda: nl.add_veth("hv0", "hv1", master="nosuch0"), NetlinkError,
         "cannot add link hv0 with master nosuch0: No such device"),
        (lambda: nl.add_address("nosuch0", "10.234.0.1/24"), NetlinkError,
         "cannot add address 10.234.0.1/24 to link nosuch0: No such device"),
        (lambda: nl.add_address("hbr0", "10.234.0.1/40"), ConfigError, "prefix length"),
        (lambda: nl.set_link("nosuch0", up=True), NetlinkError, "cannot set link nosuch0: No such device"),
        (lambda: nl.add_route(gateway="10.235.0.1"), NetlinkError,
         "cannot add route default via 10.235.0.1: Network is unreachable"),
    ]
    for call, kind, text in cases:
        with pytest.raises(kind) as info:
            call()
        assert text in str(info.value) and "\n" not in str(info.value)
        assert info.value.where == "netlink"
    assert nl.link("hv0") is None                      # the failed veth left nothing behind
    nl.add_address("hbr0", "10.234.0.1/24")
    with pytest.raises(NetlinkError) as info:
        nl.add_address("hbr0", "10.234.0.1/24")
    assert info.value.errno == errno.EEXIST
    assert str(info.value).startswith("netlink: cannot add address 10.234.0.1/24 to link hbr0: File exists")


def test_a_missing_netns_is_not_found_and_the_thread_stays_home():
    home = _ino("/proc/thread-self/ns/net")
    with pytest.raises(NotFoundError, match="hutch-nltest-absent"):
        Netlink(netns="/run/netns/hutch-nltest-absent")
    with pytest.raises(Exception, match="setns"):
        Netlink(netns="/proc/self/ns/mnt")             # not a network namespace
    assert _ino("/proc/thread-self/ns/net") == home


def test_in_netns_restores_the_netns_even_when_the_block_raises(netns):
    home = _ino("/proc/thread-self/ns/net")
    target = _ino(f"/run/netns/{netns}")
    assert home != target
    with in_netns(f"/run/netns/{netns}"):
        assert _ino("/proc/thread-self/ns/net") == target
        # what the block is for: /proc/sys/net follows the thread's netns (only lo here)
        assert sorted(os.listdir("/proc/sys/net/ipv4/conf")) == ["all", "default", "lo"]
    assert _ino("/proc/thread-self/ns/net") == home
    with pytest.raises(RuntimeError, match="boom"):
        with in_netns(f"/run/netns/{netns}"):
            assert _ino("/proc/thread-self/ns/net") == target
            raise RuntimeError("boom")
    assert _ino("/proc/thread-self/ns/net") == home
