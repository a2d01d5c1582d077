"""hutch's CNI runtime (net/cni.py) driving Debian's real plugins (/usr/lib/cni).

Most tests run the plugins with a test-created network namespace standing in for the
host ("hostns"): each plugin is started through a one-line wrapper that `ip netns exec`s
it there, so the bridge, the veth host ends, portmap's and firewall's iptables chains,
bandwidth's ifb device and the sysctls the bridge plugin sets (ip_forward) all live in a
namespace the test deletes, and the real host is never touched.  One test runs plugins
straight from /usr/lib/cni in the real host namespace (bridge without gateway, host-local,
tuning: a uniquely named bridge, no firewall rule, no sysctl) to prove direct execution.
host-local's dataDir and the result cache are in the test's tmp dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from hutch.errors import HutchError
from hutch.net import cni

pytestmark = [pytest.mark.priv,
              pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"), reason="no CNI plugins in /usr/lib/cni")]

PLUGINS = "/usr/lib/cni"
CONTAINER_PORT = 8080
HOST_PORT = 18081


def run(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {res.stderr.strip()}")
    return res


def ip_json(ns: str, *args: str):
    return json.loads(run("ip", "-n", ns, "-j", *args).stdout or "[]")


def suffix() -> str:
    return uuid.uuid4().hex[:6]


class Netns:
    """Named network namespaces made by a test, deleted at its end."""

    def __init__(self):
        self.names: list[str] = []

    def add(self, name: str) -> str:
        run("ip", "netns", "add", name)
        self.names.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def remove_all(self) -> None:
        for name in reversed(self.names):
            run("ip", "netns", "del", name, check=False)


@pytest.fixture
def netns():
    made = Netns()
    yield made
    made.remove_all()


@pytest.fixture
def hostns(netns, tmp_path):
    """(namespace name, plugin dir of wrappers that run each real plugin in it)."""
    name = netns.add(f"hcni-host-{suffix()}")
    wrappers = tmp_path / "plugins"
    wrappers.mkdir()
    for plugin in os.listdir(PLUGINS):
        path = wrappers / plugin
        path.write_text(f"#!/bin/sh\nexec ip netns exec {name} {PLUGINS}/{plugin}\n")
        path.chmod(0o755)
    return name, str(wrappers)


def conflist(tmp_path, name: str, bridge: str, subnet: str, *extra: dict, version: str = "1.0.0",
             gateway: bool = True) -> cni.NetworkList:
    doc = {"cniVersion": version, "name": name, "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": gateway, "ipMasq": False,
         "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                  "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}] if gateway else []}},
        *extra]}
    return cni.parse_conflist(json.dumps(doc), where=name)


FULL_CHAIN = (
    {"type": "portmap", "capabilities": {"portMappings": True}},
    {"type": "firewall", "backend": "iptables"},
    {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.log_martians": "1"}},
    {"type": "bandwidth", "capabilities": {"bandwidth": True}},
)
PORTS = {"portMappings": [{"hostPort": HOST_PORT, "containerPort": CONTAINER_PORT, "protocol": "tcp"}]}
BANDWIDTH = {"bandwidth": {"ingressRate": 100_000_000, "ingressBurst": 10_000_000,
                           "egressRate": 100_000_000, "egressBurst": 10_000_000}}


def address_of(result: dict) -> str:
    return result["ips"][0]["address"].split("/")[0]


def lease_files(tmp_path, network: str) -> set[str]:
    d = tmp_path / "ipam" / network
    return {p.name for p in d.iterdir() if p.name[0].isdigit()} if d.exists() else set()


def iptables(ns: str | None) -> str:
    argv = ["iptables-save"] if ns is None else ["ip", "netns", "exec", ns, "iptables-save"]
    return "\n".join(l for l in run(*argv).stdout.splitlines() if not l.startswith("#"))


# --- traffic between the test's namespaces (nothing else is ever addressed) -------------

SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(4); print("ready", flush=True)
for _ in range(int(sys.argv[2])):
    c, peer = s.accept(); c.sendall(("hello from " + sys.argv[3]).encode()); c.close()
"""
CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5); print(c.recv(100).decode())
"""


class Server:
    def __init__(self, ns: str, port: int, answers: int, name: str):
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, str(port),
                                      str(answers), name], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def servers():
    made: list[Server] = []
    yield lambda *a: made.append(Server(*a)) or made[-1]
    for s in made:
        s.stop()


def fetch(ns: str, address: str, port: int) -> str:
    return run("ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, address, str(port)).stdout.strip()


# --- the tests ---------------------------------------------------------------------------

def test_full_chain_add_check_traffic_and_delete(hostns, netns, tmp_path, servers):
    host, plugins = hostns
    rt = cni.CniRuntime(plugin_dirs=[plugins], cache_dir=str(tmp_path / "cache"))
    nl = conflist(tmp_path, "hcninet", "hcnibr0", "10.231.0.0/24", *FULL_CHAIN)
    c1, c2 = netns.add(f"hcni-c1-{suffix()}"), netns.add(f"hcni-c2-{suffix()}")
    firewall_before = iptables(host)

    r1 = rt.add(nl, "c1", f"/run/netns/{c1}", "eth0", capability_args=BANDWIDTH)
    r2 = rt.add(nl, "c2", f"/run/netns/{c2}", "eth0", capability_args={**PORTS, **BANDWIDTH})
    a1, a2 = address_of(r1), address_of(r2)
    assert a1.startswith("10.231.0.") and a2.startswith("10.231.0.") and a1 != a2
    assert {a["local"] for i in ip_json(c1, "addr", "show", "eth0") for a in i["addr_info"]} >= {a1}
    assert lease_files(tmp_path, "hcninet") == {a1, a2}
    veths = [l["ifname"] for l in ip_json(host, "link", "show", "type", "veth")]
    assert len(veths) == 2
    assert "CNI-DN-" in iptables(host) and f"-d {a2}/32" in iptables(host)   # portmap, firewall
    assert any(l["ifname"].startswith("bwp") for l in ip_json(host, "link"))  # bandwidth's ifb

    # container to container on the bridge, and through the port mapping via the gateway
    servers(c2, CONTAINER_PORT, 2, "c2")
    assert fetch(c1, a2, CONTAINER_PORT) == "hello from c2"
    gateway = r2["ips"][0]["gateway"]
    assert fetch(c1, gateway, HOST_PORT) == "hello from c2"

    # CHECK of the attachment without port mappings.  (portmap 1.1.1's CHECK of an
    # IPv4-only container *with* mappings looks for an IPv6 chain its ADD never made,
    # and fails: an upstream bug, see test_portmap_check_with_mappings below.)
    rt.check(nl, "c1", f"/run/netns/{c1}", "eth0")

    rt.delete(nl, "c1", f"/run/netns/{c1}", "eth0")
    rt.delete(nl, "c2", f"/run/netns/{c2}", "eth0")
    assert ip_json(host, "link", "show", "type", "veth") == []
    assert not any(l["ifname"].startswith("bwp") for l in ip_json(host, "link"))
    assert ip_json(c1, "link", "show", "eth0") == [] if run("ip", "-n", c1, "link", "show", "eth0",
                                                            check=False).returncode == 0 else True
    assert lease_files(tmp_path, "hcninet") == set()
    after = iptables(host)
    assert "CNI-DN-" not in after and a1 not in after and a2 not in after
    # what stays is portmap's and firewall's shared chains, empty (the plugins keep them)
    assert set(after.splitlines()) - set(firewall_before.splitlines()) <= {
        l for l in after.splitlines() if "CNI-HOSTPORT" in l or "CNI-FORWARD" in l or "CNI-ADMIN" in l
        or l.startswith(("*", ":", "COMMIT"))}
    assert os.listdir(tmp_path / "cache" / "results") == []


def test_portmap_check_with_mappings(hostns, netns, tmp_path):
    """Pins what Debian's portmap does on CHECK with mappings for an IPv4-only container,
    so a plugin update that fixes it shows up here (then CHECK belongs in the test above)."""
    host, plugins = hostns
    rt = cni.CniRuntime(plugin_dirs=[plugins], cache_dir=str(tmp_path / "cache"))
    nl = conflist(tmp_path, "hcnipm", "hcnibr1", "10.232.0.0/24", FULL_CHAIN[0])
    c1 = netns.add(f"hcni-c1-{suffix()}")
    rt.add(nl, "c1", f"/run/netns/{c1}", "eth0", capability_args=PORTS)
    try:
        try:
            rt.check(nl, "c1", f"/run/netns/{c1}", "eth0")
        except cni.CniPluginError as err:
            assert err.plugin == "portmap" and "could not check ipv6 dnat" in err.msg
    finally:
        rt.delete(nl, "c1", f"/run/netns/{c1}", "eth0")


def test_result_matches_what_the_namespace_shows(hostns, netns, tmp_path):
    """Differential: the plugins' result JSON against `ip -j addr/route/link` in the
    container's namespace and in the host's."""
    host, plugins = hostns
    rt = cni.CniRuntime(plugin_dirs=[plugins], cache_dir=str(tmp_path / "cache"))
    nl = conflist(tmp_path, "hcnidiff", "hcnibr2", "10.233.0.0/24")
    c1 = netns.add(f"hcni-c1-{suffix()}")
    result = rt.add(nl, "c1", f"/run/netns/{c1}", "eth1")
    try:
        [ip] = result["ips"]
        iface = result["interfaces"][ip["interface"]]
        assert iface["name"] == "eth1" and iface["sandbox"] == f"/run/netns/{c1}"
        [link] = ip_json(c1, "addr", "show", "eth1")
        assert link["address"] == iface["mac"]
        addr, plen = ip["address"].split("/")
        assert [(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"] == [(addr, int(plen))]
        routes = ip_json(c1, "route", "show")
        assert {"dst": "default", "gateway": ip["gateway"], "dev": "eth1"}.items() <= routes[0].items() or \
            any(r.get("dst") == "default" and r.get("gateway") == ip["gateway"] for r in routes)
        # the host side: the bridge with the gateway address, and the veth named in the result
        host_links = {l["ifname"]: l for l in ip_json(host, "addr")}
        bridge = result["interfaces"][0]
        assert bridge["name"] == "hcnibr2" and host_links["hcnibr2"]["address"] == bridge["mac"]
        assert ip["gateway"] in [a["local"] for a in host_links["hcnibr2"]["addr_info"]]
        veth = result["interfaces"][1]
        assert host_links[veth["name"]]["master"] == "hcnibr2"
    finally:
        rt.delete(nl, "c1", f"/run/netns/{c1}", "eth1")


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_spec_versions(hostns, netns, tmp_path, version):
    host, plugins = hostns
    rt = cni.CniRuntime(plugin_dirs=[plugins], cache_dir=str(tmp_path / "cache"))
    nl = conflist(tmp_path, "hcniver", "hcnibr3", "10.234.0.0/24", FULL_CHAIN[2], version=version)
    c1 = netns.add(f"hcni-c1-{suffix()}")
    result = rt.add(nl, "c1", f"/run/netns/{c1}", "eth0")
    assert result["cniVersion"] == version
    assert ("version" in result["ips"][0]) == (version != "1.0.0")
    if version != "0.3.1":
        rt.check(nl, "c1", f"/run/netns/{c1}", "eth0")
    rt.delete(nl, "c1", f"/run/netns/{c1}", "eth0")
    assert lease_files(tmp_path, "hcniver") == set() and ip_json(host, "link", "show", "type", "veth") == []


def test_a_failing_plugin_is_one_clear_line_and_rollback_leaves_nothing(hostns, netns, tmp_path):
    host, plugins = hostns
    rt = cni.CniRuntime(plugin_dirs=[plugins], cache_dir=str(tmp_path / "cache"))
    c1 = netns.add(f"hcni-c1-{suffix()}")
    bad = conflist(tmp_path, "hcnibad", "hcnibr4", "10.299.0.0/24", FULL_CHAIN[0])
    with pytest.raises(cni.CniPluginError) as info:
        rt.add(bad, "c1", f"/run/netns/{c1}", "eth0", capability_args=PORTS)
    err = info.value
    assert err.plugin == "bridge" and err.network == "hcnibad" and "10.299.0.0/24" in str(err)
    assert "\n" not in str(err)
    assert ip_json(host, "link", "show", "type", "veth") == []
    assert run("ip", "-n", c1, "link", "show", "eth0", check=False).returncode != 0
    assert not (tmp_path / "cache" / "results" / "hcnibad-c1-eth0").exists()

    # a failure late in the chain: the bridge's veth and lease are rolled back by DEL
    late = conflist(tmp_path, "hcnilate", "hcnibr8", "10.235.0.0/24",
                    {"type": "tuning", "sysctl": {"net.ipv4.no.such.sysctl": "1"}})
    with pytest.raises(cni.CniPluginError) as info:
        rt.add(late, "c1", f"/run/netns/{c1}", "eth0")
    assert info.value.plugin == "tuning" and "no/such/sysctl" in str(info.value), str(info.value)
    assert ip_json(host, "link", "show", "type", "veth") == []
    assert lease_files(tmp_path, "hcnilate") == set()
    assert not (tmp_path / "cache" / "results" / "hcnilate-c1-eth0").exists()


def test_a_missing_plugin_names_the_dirs_searched(tmp_path):
    rt = cni.CniRuntime(plugin_dirs=[PLUGINS, str(tmp_path / "opt")], cache_dir=str(tmp_path / "cache"))
    nl = cni.parse_conflist('{"cniVersion":"1.0.0","name":"hcnimiss","plugins":[{"type":"hcni-nosuch"}]}')
    with pytest.raises(HutchError) as info:
        rt.add(nl, "c1", "/run/netns/none", "eth0")
    assert str(info.value).startswith(
        f"network hcnimiss: plugin hcni-nosuch: CNI plugin 'hcni-nosuch' not found in {PLUGINS}:{tmp_path / 'opt'}")


def test_gc_removes_stale_attachments_only(hostns, netns, tmp_path):
    host, plugins = hostns
    rt = cni.CniRuntime(plugin_dirs=[plugins], cache_dir=str(tmp_path / "cache"))
    nl = conflist(tmp_path, "hcnigc", "hcnibr5", "10.236.0.0/24", FULL_CHAIN[0])
    keep, stale = netns.add(f"hcni-c1-{suffix()}"), netns.add(f"hcni-c2-{suffix()}")
    r_keep = rt.add(nl, "keep", f"/run/netns/{keep}", "eth0")
    r_stale = rt.add(nl, "stale", f"/run/netns/{stale}", "eth0", capability_args=PORTS)
    run("ip", "netns", "del", stale)            # the container died without a DEL
    assert rt.gc(nl, [("keep", "eth0")]) == [("stale", "eth0")]
    assert lease_files(tmp_path, "hcnigc") == {address_of(r_keep)}
    assert address_of(r_stale) not in iptables(host) and "CNI-DN-" not in iptables(host)
    assert os.listdir(tmp_path / "cache" / "results") == ["hcnigc-keep-eth0"]
    rt.delete(nl, "keep", f"/run/netns/{keep}", "eth0")
    assert lease_files(tmp_path, "hcnigc") == set()


def test_version_query_of_every_plugin_used():
    rt = cni.CniRuntime()
    for plugin in ("bridge", "host-local", "portmap", "firewall", "tuning", "bandwidth", "loopback"):
        info = rt.version(plugin)
        assert "1.0.0" in info["supportedVersions"] and "0.4.0" in info["supportedVersions"], info


def test_loopback_plugin_brings_lo_up(netns, tmp_path):
    c1 = netns.add(f"hcni-c1-{suffix()}")
    run("ip", "-n", c1, "link", "set", "lo", "down")
    rt = cni.CniRuntime(cache_dir=str(tmp_path / "cache"))
    nl = cni.parse_conflist('{"cniVersion":"1.0.0","name":"hcnilo","plugins":[{"type":"loopback"}]}')
    rt.add(nl, "c1", f"/run/netns/{c1}", "lo")
    assert "UP" in ip_json(c1, "link", "show", "lo")[0]["flags"]
    rt.delete(nl, "c1", f"/run/netns/{c1}", "lo")


@pytest.fixture
def host_bridge():
    """A uniquely named bridge the bridge plugin makes in the real host namespace."""
    name = f"hcni{suffix()}"
    yield name
    run("ip", "link", "del", name, check=False)


def test_plugins_run_directly_in_the_host_namespace(host_bridge, netns, tmp_path, servers):
    """No wrapper: /usr/lib/cni's plugins exec'd as they are.  No gateway (so the bridge
    plugin leaves the host's ip_forward alone), no masquerade, no firewall plugin: the
    host's interfaces other than our bridge, its firewall and /var/lib/cni stay as they are."""
    links_before = {l["ifname"] for l in json.loads(run("ip", "-j", "link").stdout)}
    firewall_before = iptables(None)
    rt = cni.CniRuntime(cache_dir=str(tmp_path / "cache"))
    nl = conflist(tmp_path, "hcnihost", host_bridge, "10.237.0.0/24",
                  {"type": "tuning", "mtu": 1400}, gateway=False)
    c1, c2 = netns.add(f"hcni-c1-{suffix()}"), netns.add(f"hcni-c2-{suffix()}")
    r1 = rt.add(nl, "c1", f"/run/netns/{c1}", "eth0")
    # CHECK before a second port joins: a bridge without a gateway address takes the lowest
    # MAC of its ports, and the bridge plugin's CHECK compares the MAC it reported at ADD
    rt.check(nl, "c1", f"/run/netns/{c1}", "eth0")
    r2 = rt.add(nl, "c2", f"/run/netns/{c2}", "eth0")
    assert ip_json(c1, "link", "show", "eth0")[0]["mtu"] == 1400
    servers(c2, CONTAINER_PORT, 1, "c2")
    assert fetch(c1, address_of(r2), CONTAINER_PORT) == "hello from c2"
    rt.delete(nl, "c1", f"/run/netns/{c1}", "eth0")
    rt.delete(nl, "c2", f"/run/netns/{c2}", "eth0")
    links_after = {l["ifname"] for l in json.loads(run("ip", "-j", "link").stdout)}
    assert links_after - links_before == {host_bridge}        # the plugin keeps its bridge
    assert iptables(None) == firewall_before
    assert lease_files(tmp_path, "hcnihost") == set() and address_of(r1) != address_of(r2)
    assert not os.path.exists("/var/lib/cni/results/hcnihost-c1-eth0")


# --- attach/undo, the setup step for hutch's containers ------------------------------------

class _State:
    def __init__(self, cid):
        self.id = cid


class FakeCtx:
    """What the setup stage hands a step: root, state.id, pid, own()."""

    def __init__(self, root: str, cid: str, pid: int):
        self.root, self.state, self.pid, self.entries = root, _State(cid), pid, []

    def own(self, entry: dict) -> dict:
        self.entries.append(json.loads(json.dumps(entry)))
        return entry


@pytest.fixture
def container_process():
    """A process in a new network namespace of its own, as a container's init is."""
    procs = []

    def start():
        p = subprocess.Popen(["unshare", "-n", "sleep", "60"])
        for _ in range(100):
            if os.readlink(f"/proc/{p.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.01)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait(timeout=10)


def test_attach_and_undo_of_a_live_container(hostns, tmp_path, container_process):
    host, plugins = hostns
    confdir = tmp_path / "net.d"
    confdir.mkdir()
    (confdir / "10-hcniattach.conflist").write_text(json.dumps(
        conflist(tmp_path, "hcniattach", "hcnibr6", "10.238.0.0/24", FULL_CHAIN[0]).raw))
    proc = container_process()
    ctx = FakeCtx(str(tmp_path / "root"), "ctr-live", proc.pid)
    result = cni.attach(ctx, "hcniattach", "eth0", [str(confdir)], PORTS, plugin_dirs=[plugins])
    [entry] = ctx.entries
    assert entry["key"] == "cni:hcniattach:eth0" and entry["netns"] == f"/proc/{proc.pid}/ns/net"
    shown = run("nsenter", f"--net=/proc/{proc.pid}/ns/net", "ip", "-j", "addr", "show", "eth0").stdout
    assert address_of(result) in shown
    assert "CNI-DN-" in iptables(host)
    cni.undo(entry)
    assert run("nsenter", f"--net=/proc/{proc.pid}/ns/net", "ip", "link", "show", "eth0",
               check=False).returncode != 0
    assert lease_files(tmp_path, "hcniattach") == set() and "CNI-DN-" not in iptables(host)
    cni.undo(entry)                                     # idempotent


def test_undo_after_the_container_died(hostns, tmp_path, container_process):
    """A crash: the process and its netns are gone, the cache is there; undo releases the
    lease and the port mapping without a netns; a second undo has no cache and is fine."""
    host, plugins = hostns
    confdir = tmp_path / "net.d"
    confdir.mkdir()
    (confdir / "10-hcnicrash.conflist").write_text(json.dumps(
        conflist(tmp_path, "hcnicrash", "hcnibr7", "10.239.0.0/24", *FULL_CHAIN[:2]).raw))
    proc = container_process()
    ctx = FakeCtx(str(tmp_path / "root"), "ctr-dead", proc.pid)
    result = cni.attach(ctx, "hcnicrash", "eth0", [str(confdir)], PORTS, plugin_dirs=[plugins])
    proc.kill()
    proc.wait(timeout=10)
    shutil.rmtree(confdir)                              # and the configuration is gone too
    cni.undo(ctx.entries[0])
    assert lease_files(tmp_path, "hcnicrash") == set()
    firewall = iptables(host)
    assert "CNI-DN-" not in firewall and address_of(result) not in firewall
    assert os.listdir(tmp_path / "root" / ".net" / "cni" / "results") == []
    cni.undo(ctx.entries[0])
