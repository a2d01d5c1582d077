"""`hutch run --network cni:NAME`: Debian's CNI plugins (bridge + host-local + portmap)
wiring hutch's containers, compared with hutch's own bridge network for what the
container sees.

The plugins run through wrappers that `ip netns exec` them in a namespace the test
makes (standing in for the host, as tests/priv/test_cni_plugins.py does), so their
bridge, iptables chains and sysctls never touch the real host."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from helpers.net import Net

pytestmark = [pytest.mark.priv,
              pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"), reason="no CNI plugins")]

PLUGINS = "/usr/lib/cni"
VIEW = ("ip -j addr show eth0; echo ===; ip -j route; echo ===; cat /sys/class/net/eth0/mtu; echo ===;"
        "cat /etc/resolv.conf; echo ===; cat /etc/hosts")


@pytest.fixture
def cni(tmp_path):
    """(annotations for hutch run, fake host netns name, subnet): a conflist in a private
    dir, plugins that run in a private "host" namespace, IPAM data in tmp."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    host = f"hcni-run-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", host], check=True)
    subprocess.run(["ip", "-n", host, "link", "set", "lo", "up"], check=True)
    wrappers, confs = tmp_path / "plugins", tmp_path / "net.d"
    wrappers.mkdir()
    confs.mkdir()
    for plugin in ("bridge", "host-local", "portmap", "loopback"):
        path = wrappers / plugin
        path.write_text(f"#!/bin/sh\nexec ip netns exec {host} {PLUGINS}/{plugin}\n")
        path.chmod(0o755)
    subnet = "10.252.33.0/24"
    (confs / "10-lab.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "lab", "plugins": [
            {"type": "bridge", "bridge": "cnibr0", "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                      "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}))
    (confs / "20-broken.conflist").write_text('{"cniVersion": "1.0.0", "name": "broken", "plugins": [')
    annotations = ["--annotation", f"org.hutch.cni-config-dir={confs}",
                   "--annotation", f"org.hutch.cni-path={wrappers}"]
    try:
        yield annotations, host, subnet, tmp_path / "ipam" / "lab"
    finally:
        subprocess.run(["ip", "netns", "del", host])


def _view(out: str) -> dict:
    """What the container sees, without what legitimately differs (addresses' last
    byte, MACs, indices, the host-side names)."""
    addr, routes, mtu, resolv, hosts = out.split("===\n")
    info = json.loads(addr)[0]
    v4 = [a for a in info["addr_info"] if a["family"] == "inet"]
    return {
        "v4": [(a["local"].rpartition(".")[0], a["prefixlen"]) for a in v4],
        "up": info["operstate"],
        "routes": sorted((r["dst"], r.get("gateway", "").rpartition(".")[0] + ".x" if r.get("gateway") else "",
                          r["dev"]) for r in json.loads(routes)),
        "mtu": mtu.strip(),
        "resolv": resolv,
        "own_name": any(line.split()[1:2] == ["box"] for line in hosts.splitlines() if line.strip()),
    }


def test_cni_network_and_hutch_network_look_the_same_from_inside(net, cni):
    annotations, host, subnet, ipam = cni
    through_cni = _view(net.run("--name", "box", "--network", "cni:lab", *annotations, "--", "sh", "-c", VIEW).stdout)
    net.hutch("network", "create", "--subnet", subnet.replace(".33.", ".34."), "mine")
    through_hutch = _view(net.run("--name", "box", "--network", "mine", "--", "sh", "-c", VIEW).stdout)
    # same shape, different /24: compare with the third byte taken out
    for view in (through_cni, through_hutch):
        view["v4"] = [(p.rpartition(".")[0], n) for p, n in view["v4"]]
        view["routes"] = [(d.replace(".33.", ".N.").replace(".34.", ".N."), g.replace(".33.", ".N.").replace(".34.", ".N."), dev)
                          for d, g, dev in view["routes"]]
    assert through_cni == through_hutch
    assert through_cni["routes"] == [("10.252.N.0/24", "", "eth0"), ("default", "10.252.N.x", "eth0")]
    assert not [p for p in ipam.iterdir() if p.name[0].isdigit()], "the lease outlived the container"


def test_containers_on_a_cni_network_talk_and_delete_runs_del(net, cni, bundle):
    annotations, host, subnet, ipam = cni
    server = net.server("web", "--network", "cni:lab", *annotations, port=8080)
    leases = [p.name for p in ipam.iterdir() if p.name[0].isdigit()]
    assert len(leases) == 1
    web_ip = leases[0]
    assert net.client(["--network", "cni:lab", *annotations], web_ip, 8080).startswith("web ")
    veths = json.loads(subprocess.run(["ip", "-n", host, "-j", "link", "show", "master", "cnibr0"],
                                      capture_output=True, text=True, check=True).stdout)
    assert len(veths) == 1
    net.stop(server)
    assert not [p for p in ipam.iterdir() if p.name[0].isdigit()]
    veths = json.loads(subprocess.run(["ip", "-n", host, "-j", "link", "show", "master", "cnibr0"],
                                      capture_output=True, text=True, check=True).stdout)
    assert veths == []


def test_cni_published_port_goes_to_portmap(net, cni):
    annotations, host, subnet, ipam = cni
    server = net.server("web", "--network", "cni:lab", *annotations, "-p", "18290:8080", port=8080)
    rules = subprocess.run(["ip", "netns", "exec", host, "iptables-save", "-t", "nat"],
                           capture_output=True, text=True, check=True).stdout
    assert "--dport 18290" in rules and "CNI-DN-" in rules
    net.stop(server)
    rules = subprocess.run(["ip", "netns", "exec", host, "iptables-save", "-t", "nat"],
                           capture_output=True, text=True, check=True).stdout
    assert "--dport 18290" not in rules


def test_bad_cni_networks_are_one_line_and_exit_125(net, cni):
    annotations, host, subnet, ipam = cni
    # a malformed file is an error whichever network is asked for (as libcni: the search
    # reads every file until the name is found)
    result = net.run("--network", "cni:broken", *annotations, "--", "true", check=False)
    assert result.returncode == 125 and "20-broken.conflist: invalid JSON at line 1" in result.stderr
    assert "Traceback" not in result.stderr
    confs = annotations[1].partition("=")[2]
    os.unlink(os.path.join(confs, "20-broken.conflist"))
    result = net.run("--network", "cni:nosuch", *annotations, "--", "true", check=False)
    assert result.returncode == 125 and len(result.stderr.strip().splitlines()) == 1
    assert "nosuch" in result.stderr and "Traceback" not in result.stderr
    # a plugin missing from the plugin path: ADD fails, rolled back, no lease
    empty = str(ipam.parent.parent / "empty")
    os.makedirs(empty, exist_ok=True)
    result = net.run("--network", "cni:lab", annotations[0], annotations[1], "--annotation",
                     f"org.hutch.cni-path={empty}", "--", "true", check=False)
    assert result.returncode == 125 and "not found" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
