"""Bridge networks through the binary: real traffic between containers and from the host
(127.0.0.1 and the network's gateway only), names, published ports, isolation, and
what is left afterwards -- checked with ip, nft and /proc, not through hutch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading

import pytest

from helpers.net import (Net, host_links, link_info, nft_table, random_subnet, tcp_from_host,
                         udp_from_host)

pytestmark = [pytest.mark.priv]


def _veths(before: set[str]) -> set[str]:
    return {link for link in host_links() - before if link.startswith("vh")}


# -- what the container gets -------------------------------------------------------------------

def test_container_gets_eth0_address_route_hosts_and_resolv(net):
    subnet = net.network("n1")
    prefix = subnet.rpartition(".")[0]
    out = net.run("--name", "box", "--network", "n1", "--", "sh", "-c",
                  "ip -j addr show eth0; echo ===; ip -j route; echo ===; cat /etc/hosts; echo ===;"
                  "cat /etc/resolv.conf; echo ===; cat /sys/class/net/eth0/mtu").stdout
    addr, routes, hosts, resolv, mtu = out.split("===\n")
    info = json.loads(addr)[0]
    v4 = [a for a in info["addr_info"] if a["family"] == "inet"]
    assert len(v4) == 1 and v4[0]["local"].startswith(prefix + ".") and v4[0]["prefixlen"] == 24
    assert info["operstate"] == "UP"
    default = [r for r in json.loads(routes) if r["dst"] == "default"]
    assert default == [{"dst": "default", "gateway": prefix + ".1", "dev": "eth0", "protocol": "static",
                        "metric": 100, "flags": []}]
    assert v4[0]["broadcast"] == prefix + ".255"
    assert f"{v4[0]['local']}\tbox" in hosts
    assert "127.0.0.1\tlocalhost" in hosts
    host_ns = [line for line in open("/etc/resolv.conf").read().splitlines()
               if line.startswith("nameserver") and not line.split()[1].startswith("127.")]
    assert [line for line in resolv.splitlines() if line.startswith("nameserver")] == host_ns
    assert mtu.strip() == "1500"


def test_host_side_is_a_veth_on_the_bridge_and_goes_with_the_container(net):
    net.network("n1")
    before = host_links()
    web = net.server("web", "--network", "n1")
    veths = _veths(before)
    assert len(veths) == 1
    veth = link_info(veths.pop())
    bridge = json.loads(net.hutch("network", "inspect", "n1").stdout)[0]["bridge"]
    assert veth["linkinfo"]["info_kind"] == "veth"
    assert veth["master"] == bridge
    assert veth["ifalias"] == f"hutch container web {net.root}"
    assert link_info(bridge)["linkinfo"]["info_kind"] == "bridge"
    net.stop(web)
    assert not _veths(before)
    assert link_info(bridge) is None, "the last container's exit leaves the bridge"
    assert nft_table() is None or bridge not in nft_table()
    assert net.leases("n1") == {}


# -- traffic ------------------------------------------------------------------------------

def test_containers_reach_each_other_by_address_and_by_name_both_ways(net):
    net.network("n1")
    net.server("first", "--network", "n1")
    second = net.server("second", "--network", "n1")     # started later
    first_ip = net.ip_of("first", "n1")
    assert net.client(["--network", "n1"], first_ip, 80).startswith("first ")
    assert net.client(["--network", "n1"], "second", 80).startswith("second ")
    # the earlier container knows the later one's name: its hosts file was rewritten
    hosts = open(os.path.join(net.root, "first", "hosts")).read()
    assert f"{net.ip_of('second', 'n1')}\tsecond" in hosts
    net.stop(second)
    hosts = open(os.path.join(net.root, "first", "hosts")).read()
    assert "second" not in hosts, "a container that left is still named"


def test_udp_between_containers(net):
    net.network("n1")
    net.server("echo", "--network", "n1", port=5353)
    assert net.client(["--network", "n1"], "echo", 5353, "udp") == "echo:hi"


def test_published_ports_from_the_host_tcp_and_udp(net):
    net.network("n1")
    net.server("web", "--network", "n1", "-p", "18080:80", "-p", "18080:80/udp")
    assert tcp_from_host("127.0.0.1", 18080).startswith("web ")
    assert udp_from_host("127.0.0.1", 18080) == "web:hi"
    gateway = json.loads(net.hutch("network", "inspect", "n1").stdout)[0]["subnets"][0]["gateway"]
    assert tcp_from_host(gateway, 18080).startswith("web ")


def test_two_servers_on_port_80_published_on_two_host_ports(net):
    net.network("n1")
    net.server("a", "--network", "n1", "-p", "18081:80")
    net.server("b", "--network", "n1", "-p", "18082:80")
    assert tcp_from_host("127.0.0.1", 18081).startswith("a ")
    assert tcp_from_host("127.0.0.1", 18082).startswith("b ")


def test_published_port_bound_to_one_host_address_only(net):
    net.network("n1")
    net.server("web", "--network", "n1", "-p", "127.0.0.1:18083:80")
    assert tcp_from_host("127.0.0.1", 18083).startswith("web ")
    gateway = json.loads(net.hutch("network", "inspect", "n1").stdout)[0]["subnets"][0]["gateway"]
    assert tcp_from_host(gateway, 18083).startswith("error")


def test_hairpin_a_container_reaches_published_ports_through_the_gateway(net):
    net.network("n1")
    net.server("web", "--network", "n1", "-p", "18084:80")
    gateway = json.loads(net.hutch("network", "inspect", "n1").stdout)[0]["subnets"][0]["gateway"]
    # from another container and from the server container itself
    # (The source the server sees depends on br_netfilter: loaded, the DNAT'ed packet stays
    # bridged and conntrack un-DNATs the reply; not loaded, it is routed and masqueraded.)
    answer = net.client(["--network", "n1"], gateway, 18084)
    assert answer.startswith("web "), answer
    out = net.hutch("exec", "web", "python3", "-c", _CLIENT_ONE_LINE, gateway, "18084").stdout
    assert out.startswith("web "), out


_CLIENT_ONE_LINE = ("import socket,sys; s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=2);"
                    "print(s.recv(100).decode())")


def test_networks_are_isolated_from_each_other_and_none_has_no_eth0(net):
    net.network("n1")
    net.network("n2")
    net.server("web", "--network", "n1", "-p", "18085:80")
    web_ip = net.ip_of("web", "n1")
    assert net.client(["--network", "n2"], web_ip, 80).startswith("error")
    assert net.client(["--network", "n1"], web_ip, 80).startswith("web ")
    # published ports are public: reachable from the other network through its gateway
    gw2 = json.loads(net.hutch("network", "inspect", "n2").stdout)[0]["subnets"][0]["gateway"]
    assert net.client(["--network", "n2"], gw2, 18085).startswith("web ")
    devices = net.run("--net", "none", "--", "ls", "/sys/class/net").stdout.split()
    assert devices == ["lo"]
    assert net.client(["--net", "none"], web_ip, 80).startswith("error")


def test_internal_network_reaches_its_members_is_not_masqueraded_and_drops_the_rest(net):
    net.network("in", "--internal")
    net.server("db", "--network", "in")
    assert net.client(["--network", "in"], "db", 80).startswith("db ")
    nft = nft_table()
    bridge = json.loads(net.hutch("network", "inspect", "in").stdout)[0]["bridge"]
    chain = nft.split(f"chain net-{bridge} {{")[1].split("}")[0]
    assert "drop" in chain.split()[-1], chain
    subnet = json.loads(net.hutch("network", "inspect", "in").stdout)[0]["subnets"][0]["subnet"]
    masq = nft.split("set masq4 {")[1].split("}")[0]
    assert subnet not in masq, "an internal network is not masqueraded"


def test_container_on_two_networks_gets_eth0_and_eth1(net):
    s1 = net.network("n1")
    s2 = net.network("n2")
    out = net.run("--network", "n1", "--network", "n2", "--", "sh", "-c",
                  "ip -j addr; echo ===; ip -j route").stdout
    addrs, routes = out.split("===\n")
    by_name = {i["ifname"]: [a["local"] for a in i["addr_info"] if a["family"] == "inet"]
               for i in json.loads(addrs)}
    assert by_name["eth0"][0].startswith(s1.rpartition(".")[0])
    assert by_name["eth1"][0].startswith(s2.rpartition(".")[0])
    defaults = [r for r in json.loads(routes) if r["dst"] == "default"]
    assert len(defaults) == 1 and defaults[0]["dev"] == "eth0"


def test_ipv6_subnet_address_and_route(net):
    net.network("six", "--ipv6", "--subnet6", "fd42:2f1::/64")
    out = net.run("--network", "six", "--ip6", "fd42:2f1::99", "--", "sh", "-c",
                  "ip -j -6 addr show eth0; echo ===; ip -j -6 route").stdout
    addrs, routes = out.split("===\n")
    six = [a for a in json.loads(addrs)[0]["addr_info"] if a["scope"] == "global"]
    assert [(a["local"], a["prefixlen"]) for a in six] == [("fd42:2f1::99", 64)]
    assert "tentative" not in json.dumps(six), "DAD would delay the address"
    assert any(r["dst"] == "default" and r.get("gateway") == "fd42:2f1::1" for r in json.loads(routes))


def test_fixed_address_and_container_network_sharing(net):
    subnet = net.network("n1")
    fixed = subnet.rpartition(".")[0] + ".77"
    net.server("web", "--network", "n1", "--ip", fixed)
    assert net.ip_of("web", "n1") == fixed
    # another container in web's network namespace sees web's server on localhost
    assert net.client(["--network", "container:web"], "127.0.0.1", 80).startswith("web ")


# -- addresses under concurrency ----------------------------------------------------------

def test_concurrent_creates_never_share_an_address(net, bundle):
    net.network("n1")
    ids = [f"c{i}" for i in range(8)]
    b = bundle(["sleep", "60"], annotations={"org.hutch.networks": "n1"})
    errors = []

    def create(cid):
        result = net.create(b, cid, check=False)
        if result.returncode:
            errors.append(result.stderr)

    threads = [threading.Thread(target=create, args=(cid,)) for cid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    leases = net.leases("n1")
    ips = [lease["ips"][0] for lease in leases.values()]
    assert sorted(leases) == ids and len(set(ips)) == len(ips)
    for cid in ids:
        net.hutch("delete", "--force", cid)
    assert net.leases("n1") == {}


# -- the OCI path ----------------------------------------------------------------------------

def test_oci_bundle_asks_through_annotations(net, bundle):
    net.network("n1")
    b = bundle(["sleep", "60"],
               annotations={"org.hutch.networks": "n1", "org.hutch.publish": "18086:80"})
    before = host_links()
    net.create(b, "oci1")
    net.hutch("start", "oci1")
    leases = net.leases("n1")
    assert leases["oci1"]["ports"] == [{"host_ip": "", "host_port": 18086, "container_port": 80,
                                        "protocol": "tcp"}]
    assert "18086" in nft_table()
    assert len(_veths(before)) == 1
    net.hutch("delete", "--force", "oci1")
    assert not _veths(before) and net.leases("n1") == {}
    assert nft_table() is None or "18086" not in nft_table()


# -- the network commands --------------------------------------------------------------------

def test_network_create_ls_inspect_rm(net):
    subnet, gateway = random_subnet()
    net.hutch("network", "create", "--subnet", subnet, "--gateway", gateway.rpartition(".")[0] + ".254", "--mtu", "1400", "lab")
    table = net.hutch("network", "ls").stdout.splitlines()
    assert table[0].split() == ["NAME", "BRIDGE", "SUBNETS", "CONTAINERS"]
    assert table[1].split()[0] == "lab" and table[1].split()[2] == subnet
    info = json.loads(net.hutch("network", "inspect", "lab").stdout)[0]
    assert info["subnets"] == [{"subnet": subnet, "gateway": gateway.rpartition(".")[0] + ".254"}]
    assert info["mtu"] == 1400 and info["live"] is False and info["containers"] == {}
    out = net.run("--network", "lab", "--", "cat", "/sys/class/net/eth0/mtu").stdout
    assert out.strip() == "1400"
    net.hutch("network", "rm", "lab")
    assert net.hutch("network", "ls").stdout.splitlines()[1:] == []
    missing = net.hutch("network", "inspect", "lab", check=False)
    assert missing.returncode == 1 and "network lab not found" in missing.stderr


def test_network_rm_refuses_a_network_in_use(net):
    net.network("n1")
    net.server("web", "--network", "n1")
    result = net.hutch("network", "rm", "n1", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "hutch: network rm: network n1 is in use by container(s) web"


def test_networks_persist_as_files_under_the_root(net):
    subnet = net.network("keep")
    path = os.path.join(net.root, ".net", "networks", "keep.json")
    data = json.load(open(path))
    assert data["subnets"][0]["subnet"] == subnet
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


# -- outbound: masquerade towards an "outside" the test makes -------------------------------

@pytest.fixture
def outside():
    """A namespace standing in for the world beyond the host: a veth pair (ours), the
    host end 10.250.77.1/24 with forwarding on that interface only (for the replies),
    a server at 10.250.77.2:7000 that answers with the address it sees."""
    import uuid
    name, host_if = f"hout-{uuid.uuid4().hex[:6]}", f"hout{uuid.uuid4().hex[:6]}"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("ip", "netns", "add", name)
    server = None
    try:
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", "o0", "netns", name)
        run("ip", "addr", "add", "10.250.77.1/24", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        with open(f"/proc/sys/net/ipv4/conf/{host_if}/forwarding", "w") as f:
            f.write("1")
        for cmd in (("addr", "add", "10.250.77.2/24", "dev", "o0"), ("link", "set", "o0", "up"),
                    ("link", "set", "lo", "up")):
            run("ip", "-n", name, *cmd)
        from helpers.net import SERVER
        server = subprocess.Popen(["ip", "netns", "exec", name, "python3", "-u", "-c", SERVER, "outside", "7000"],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "ready"
        yield "10.250.77.2"
    finally:
        if server is not None:
            server.kill()
            server.wait()
            server.stdout.close()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_outbound_traffic_is_masqueraded_and_internal_networks_stay_in(net, outside):
    net.network("n1")
    answer = net.client(["--network", "n1"], outside, 7000)
    assert answer == "outside 10.250.77.1", "the outside sees the host's address, not the container's"
    net.network("in", "--internal")
    assert net.client(["--network", "in"], outside, 7000).startswith("error")
