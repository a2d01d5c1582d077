"""Networking logic without root: -p parsing, IPAM, subnets, hosts and resolv.conf,
the annotations a run asks with, and the firewall map elements."""

from __future__ import annotations

import pytest

from hutch.engine.runspec import RunOptions, build_spec
from hutch.errors import ConfigError, HutchError
from hutch.net import attach, hosts, ipam, nft


# -- -p ----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("8080:80", [("", 8080, 80, "tcp")]),
    ("127.0.0.1:53:5353/udp", [("127.0.0.1", 53, 5353, "udp")]),
    ("[::1]:8080:80", [("::1", 8080, 80, "tcp")]),
    ("9000-9002:90-92", [("", 9000, 90, "tcp"), ("", 9001, 91, "tcp"), ("", 9002, 92, "tcp")]),
])
def test_port_mappings_parse(spec, expected):
    got = [(p["host_ip"], p["host_port"], p["container_port"], p["protocol"]) for p in attach.parse_port(spec)]
    assert got == expected


@pytest.mark.parametrize("spec, message", [
    ("80", "expected [HOSTIP:]HOSTPORT:CONTAINERPORT"),
    ("0:80", "use 1-65535"),
    ("70000:80", "use 1-65535"),
    ("a:80", "invalid port 'a'"),
    ("8080:80/sctp", "invalid protocol 'sctp'"),
    ("1-3:1-2", "different lengths"),
    ("300.1.1.1:80:80", "invalid IP address"),
    ("[::1:80:80", "invalid port mapping"),
])
def test_bad_port_mappings_name_the_mapping(spec, message):
    with pytest.raises(ConfigError) as err:
        attach.parse_port(spec)
    assert message in err.value.message and err.value.where == "-p"


def test_the_same_host_port_twice_is_refused():
    with pytest.raises(ConfigError, match="published twice"):
        attach.parse_ports(["8080:80", "8080:81"])
    assert len(attach.parse_ports(["8080:80", "8080:80/udp"])) == 2


# -- IPAM --------------------------------------------------------------------------------

def _leases(**held):
    return {"next": {}, "leases": {cid: {"ips": ips} for cid, ips in held.items()}}


def test_allocation_skips_gateway_and_taken_and_goes_round():
    data = _leases(a=["10.9.0.2/24"])
    assert ipam.allocate(data, "10.9.0.0/24", "10.9.0.1", None, "n") == "10.9.0.3/24"
    data["leases"]["b"] = {"ips": ["10.9.0.3/24"]}
    assert ipam.allocate(data, "10.9.0.0/24", "10.9.0.1", None, "n") == "10.9.0.4/24"
    # freed addresses are not reused at once: the search goes on from the last one
    del data["leases"]["a"]
    assert ipam.allocate(data, "10.9.0.0/24", "10.9.0.1", None, "n") == "10.9.0.5/24"


def test_a_full_pool_is_a_clear_error():
    data = _leases(a=["10.9.0.2/30"])
    with pytest.raises(HutchError, match="network n has no free address left in 10.9.0.0/30"):
        ipam.allocate(data, "10.9.0.0/30", "10.9.0.1", None, "n")


def test_requested_addresses_are_checked():
    data = _leases(a=["10.9.0.2/24"])
    assert ipam.allocate(data, "10.9.0.0/24", "10.9.0.1", "10.9.0.50", "n") == "10.9.0.50/24"
    for bad, message in (("10.9.0.2", "already in use"), ("10.8.0.5", "not in network n's subnet"),
                         ("10.9.0.255", "not in network n's subnet"), ("10.9.0.1", "gateway"),
                         ("nope", "invalid IP address")):
        with pytest.raises(ConfigError, match=message):
            ipam.allocate(data, "10.9.0.0/24", "10.9.0.1", bad, "n")


def test_ipv6_allocation():
    data = _leases()
    assert ipam.allocate(data, "fd42::/64", "fd42::1", None, "n") == "fd42::2/64"
    assert ipam.allocate(data, "fd42::/64", "fd42::1", None, "n") == "fd42::3/64"


def test_subnets_overlap_check_and_automatic_choice():
    assert ipam.pick_subnet("10.9.0.0/24", None, [], "n", None, "--subnet") == ("10.9.0.0/24", "10.9.0.1")
    with pytest.raises(ConfigError, match="overlaps 10.9.0.0/16"):
        ipam.pick_subnet("10.9.3.0/24", None, ["10.9.0.0/16"], "n", None, "--subnet")
    picked = ipam.pick_subnet(None, None, ["10.67.0.0/24", "10.67.1.0/24"], "n", ("10.67.{}.0/24", 256), "--subnet")
    assert picked == ("10.67.2.0/24", "10.67.2.1")
    for bad, message in (("10.9.0.1/24", "host bits set"), ("10.9.0.0/31", "too small"),
                         ("127.0.0.0/8", "not usable"), ("x", "invalid subnet")):
        with pytest.raises(ConfigError, match=message):
            ipam.pick_subnet(bad, None, [], "n", None, "--subnet")
    with pytest.raises(ConfigError, match="not a host address"):
        ipam.pick_subnet("10.9.0.0/24", "10.9.1.1", [], "n", None, "--subnet")


def test_port_conflicts_across_networks():
    everyone = {"a": {"leases": {"web": {"ports": [{"host_ip": "", "host_port": 80, "protocol": "tcp"}]}}}}
    want = [{"host_ip": "127.0.0.1", "host_port": 80, "protocol": "tcp"}]
    assert ipam.port_conflicts(everyone, want, "me") == \
        "host port 127.0.0.1:80/tcp is already published by container web (network a)"
    assert ipam.port_conflicts(everyone, [{"host_ip": "", "host_port": 80, "protocol": "udp"}], "me") is None
    assert ipam.port_conflicts(everyone, want, "web") is None


# -- names ---------------------------------------------------------------------------------

def test_hosts_file_lists_own_names_first_then_peers_in_order():
    text = hosts.render([("10.9.0.5", ["box", "c1"])], [("10.9.0.10", ["b"]), ("10.9.0.9", ["a"])])
    lines = text.splitlines()
    assert lines[:2] == ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    assert lines[2:] == ["10.9.0.5\tbox c1", "10.9.0.9\ta", "10.9.0.10\tb"]


def test_resolv_conf_drops_loopback_nameservers(tmp_path):
    source = tmp_path / "resolv.conf"
    source.write_text("search lab\nnameserver 127.0.0.53\nnameserver 10.1.2.3\noptions edns0")
    assert hosts.resolv_conf(str(source)) == "search lab\nnameserver 10.1.2.3\noptions edns0\n"


# -- what a run asks for -----------------------------------------------------------------

def test_run_options_become_annotations():
    spec = build_spec(RunOptions(args=["true"], net="web", networks=["db"], publish=["8080:80"],
                                 ip="10.9.0.9"), "c1")
    a = spec["annotations"]
    assert a["org.hutch.networks"] == "web,db" and a["org.hutch.publish"] == "8080:80"
    assert a["org.hutch.ip"] == "10.9.0.9"
    assert {"type": "network"} in spec["linux"]["namespaces"]
    request = attach.request_from(a)
    assert request.networks == ["web", "db"] and request.ports[0]["host_port"] == 8080


@pytest.mark.parametrize("options, message", [
    (dict(publish=["80:80"]), "publishing ports needs a network"),
    (dict(net="host", networks=["web"]), "cannot be combined"),
    (dict(net="web", networks=["none"]), "cannot be combined"),
    (dict(net="container:x", publish=["1:1"]), "cannot join networks or publish"),
    (dict(ip="10.0.0.1"), "--ip needs a network"),
    (dict(net="web", publish=["bad"]), "invalid port mapping"),
])
def test_bad_network_options(options, message):
    with pytest.raises(ConfigError, match=message):
        build_spec(RunOptions(args=["true"], **options), "c1")


def test_a_network_named_twice_is_refused():
    with pytest.raises(ConfigError, match="named twice"):
        attach.request_from({"org.hutch.networks": "a,a"})


# -- firewall elements ---------------------------------------------------------------------

def test_port_elements_per_family_and_host_address():
    ports = [{"host_ip": "", "host_port": 80, "container_port": 8080, "protocol": "tcp"},
             {"host_ip": "127.0.0.1", "host_port": 53, "container_port": 53, "protocol": "udp"},
             {"host_ip": "::1", "host_port": 99, "container_port": 99, "protocol": "tcp"}]
    assert nft.port_elements(ports, "10.9.0.2", "fd42::2") == [
        ("dnat4any", "tcp . 80 : 10.9.0.2 . 8080"), ("dnat6any", "tcp . 80 : fd42::2 . 8080"),
        ("dnat4", "127.0.0.1 . udp . 53 : 10.9.0.2 . 53"), ("dnat6", "::1 . tcp . 99 : fd42::2 . 99")]
    assert nft.port_elements(ports[:1], "10.9.0.2", None) == [("dnat4any", "tcp . 80 : 10.9.0.2 . 8080")]
