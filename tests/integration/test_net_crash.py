"""Networking under faults and bad input: create killed at each net.* step, errors that
come after part of the wiring was made, and what is left afterwards (links, leases,
firewall elements), observed with ip and nft."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from hutch.faults import STEPS
from helpers.net import Net, nft_table

pytestmark = [pytest.mark.priv]


def _assert_clean(net: Net, network: str, port: str | None = None) -> None:
    assert net.leases(network) == {}
    assert net.links() == []
    table = nft_table()
    if port and table:
        assert port not in table
    bridge = json.loads(net.hutch("network", "inspect", network).stdout)[0]["bridge"]
    assert table is None or f'"{bridge}"' not in table


@pytest.mark.parametrize("step", [s for s in STEPS if s.startswith("net.")])
def test_create_killed_at_each_network_step_is_undone_by_delete_force(net, bundle, step):
    net.network("n1")
    b = bundle(["sleep", "60"], annotations={"org.hutch.networks": "n1", "org.hutch.publish": "18190:80"})
    with open(os.devnull, "w") as null:
        proc = subprocess.run([net.exe, "--root", net.root, "create", "--bundle", str(b), "k1"],
                              stdin=subprocess.DEVNULL, stdout=null, stderr=null,
                              env=dict(os.environ, HUTCH_FAULT=step), timeout=60)
    assert proc.returncode == -9
    net.hutch("delete", "--force", "k1")
    _assert_clean(net, "n1", "18190")


def test_a_later_crash_leaves_other_members_alone(net, bundle):
    """The undo of a crashed join takes only its own lease and veth; the bridge stays for
    the container still on the network."""
    net.network("n1")
    web = net.server("web", "--network", "n1")
    b = bundle(["sleep", "60"], annotations={"org.hutch.networks": "n1"})
    with open(os.devnull, "w") as null:
        subprocess.run([net.exe, "--root", net.root, "create", "--bundle", str(b), "k2"],
                       stdin=subprocess.DEVNULL, stdout=null, stderr=null,
                       env=dict(os.environ, HUTCH_FAULT="net.wired"), timeout=60)
    net.hutch("delete", "--force", "k2")
    assert sorted(net.leases("n1")) == ["web"]
    assert len(net.links()) == 2          # the bridge and web's veth
    assert net.client(["--network", "n1"], "web", 80).startswith("web ")
    net.stop(web)
    _assert_clean(net, "n1")


# -- bad input: one line, exit 125, nothing left ------------------------------------------

def _refused(net: Net, *args) -> str:
    result = net.run(*args, "--", "true", check=False)
    assert result.returncode == 125, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_unknown_network(net):
    assert _refused(net, "--network", "nosuch") == \
        "hutch: --network: network nosuch not found (hutch network ls lists them)"


def test_exhausted_pool_rolls_back(net):
    net.hutch("network", "create", "--subnet", "10.251.7.0/30", "tiny")
    holder = net.server("one", "--network", "tiny")          # .2; .1 is the gateway
    line = _refused(net, "--network", "tiny", "-p", "18191:80")
    assert line == "hutch: --network: network tiny has no free address left in 10.251.7.0/30"
    assert sorted(net.leases("tiny")) == ["one"]
    assert len(net.links()) == 2
    assert nft_table() is None or "18191" not in nft_table()
    net.stop(holder)
    _assert_clean(net, "tiny")


def test_host_port_published_by_another_container(net):
    net.network("n1")
    net.network("n2")
    web = net.server("web", "--network", "n1", "-p", "18192:80")
    line = _refused(net, "--network", "n2", "-p", "127.0.0.1:18192:80")
    assert line == ("hutch: -p: host port 127.0.0.1:18192/tcp is already published by container web "
                    "(network n1)")
    assert net.leases("n2") == {}
    net.stop(web)


def test_host_port_a_host_program_listens_on(net):
    net.network("n1")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        line = _refused(net, "--network", "n1", "-p", f"{port}:80")
    assert line == f"hutch: -p: host port {port}/tcp is in use by a program on the host"
    _assert_clean(net, "n1")


def test_a_host_address_that_is_not_ours(net):
    net.network("n1")
    line = _refused(net, "--network", "n1", "-p", "10.251.9.9:18193:80")
    assert line == "hutch: -p: host address 10.251.9.9 of -p 10.251.9.9:18193/tcp is not an address of this host"
    _assert_clean(net, "n1")


def test_overlapping_subnets_and_bad_network_definitions(net):
    subnet = net.network("n1")
    result = net.hutch("network", "create", "--subnet", subnet, "n2", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == f"hutch: --subnet: subnet {subnet} of network n2 overlaps {subnet}"
    result = net.hutch("network", "create", "--subnet", "10.251.8.0/24", "--gateway", "10.251.9.1", "n3", check=False)
    assert "gateway 10.251.9.1 is not a host address of 10.251.8.0/24" in result.stderr
    result = net.hutch("network", "create", "n1", check=False)
    assert result.stderr.strip() == "hutch: network name: network n1 already exists"
    result = net.hutch("network", "create", "bad/name", check=False)
    assert "invalid network name 'bad/name'" in result.stderr


def test_a_damaged_network_file_is_named(net):
    net.network("n1")
    path = os.path.join(net.root, ".net", "networks", "n1.json")
    with open(path, "w") as f:
        f.write('{"name": "n1", "bridge": ')
    line = _refused(net, "--network", "n1")
    assert line.startswith(f"hutch: {path}: invalid JSON at line 1, column 26")
    os.unlink(path)


def test_a_bridge_name_taken_by_someone_else(net):
    net.hutch("network", "create", "--subnet", "10.251.10.0/24", "--bridge", "hutchtaken0", "n1")
    subprocess.run(["ip", "link", "add", "hutchtaken0", "type", "bridge"], check=True)
    try:
        line = _refused(net, "--network", "n1")
        assert line == "hutch: --network: bridge hutchtaken0 exists and is not network n1's (alias None)"
        assert subprocess.run(["ip", "link", "show", "hutchtaken0"], capture_output=True).returncode == 0
    finally:
        subprocess.run(["ip", "link", "del", "hutchtaken0"], check=True)
    assert net.leases("n1") == {}


def test_rootless_networking_is_refused_with_a_reason(net):
    if not os.path.exists("/usr/bin/setpriv"):
        pytest.skip("setpriv not installed")
    root = f"/tmp/hutch-nobody-{os.getpid()}"
    try:
        result = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                                 net.exe, "--root", root, "run", "--userns",
                                 "--network", "n1", "--", "true"], capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["rm", "-rf", root])
    assert result.returncode == 125
    assert result.stderr.strip() == \
        "hutch: --network: bridge and CNI networks need root (rootless: --net none or host)"


def _remove_cgroup_dirs(cid: str) -> None:
    """The container's cgroup directories (default parent /hutch) and the parent if empty."""
    import time
    from pathlib import Path
    for leaf in Path("/sys/fs/cgroup").glob(f"*/hutch/{cid}"):
        for _ in range(100):               # the killed process leaves the group asynchronously
            try:
                leaf.rmdir()
                break
            except OSError:
                time.sleep(0.02)
        try:
            leaf.parent.rmdir()
        except OSError:
            pass                           # other containers' groups are in it


def test_leases_of_containers_whose_state_is_gone_are_pruned(net, bundle):
    """A state directory removed by hand leaves a lease (and published port) behind; the
    next join on the network releases it instead of keeping the address and port."""
    net.hutch("network", "create", "--subnet", "10.251.11.0/30", "one")
    b = bundle(["sleep", "60"], annotations={"org.hutch.networks": "one", "org.hutch.publish": "18194:80"})
    net.create(b, "lost")
    pid = net.hutch("state", "lost").stdout
    import shutil
    os.kill(json.loads(pid)["pid"], 9)
    shutil.rmtree(os.path.join(net.root, "lost"))
    os.unlink(os.path.join(net.root, ".lost.lock"))
    _remove_cgroup_dirs("lost")            # what the removed state would have undone
    assert "lost" in net.leases("one")
    out = net.run("--network", "one", "-p", "18194:80", "--", "cat", "/etc/hosts").stdout
    assert "10.251.11.2" in out                   # the only address of the /30, free again
    assert net.leases("one") == {}
    _assert_clean(net, "one", "18194")


def test_a_network_removed_while_a_create_waits_for_it(net, bundle):
    """network rm between the plan (network loaded) and the join: the join finds it gone
    and fails cleanly; nothing is made for a network without a definition."""
    net.network("gone")
    b = bundle(["sleep", "60"], annotations={"org.hutch.networks": "gone"})
    lock = os.path.join(net.root, ".net", ".gone.lock")
    import fcntl
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)                  # the join will wait here
    with open(os.devnull, "w") as null:
        err = open(os.path.join(net.root, "err"), "w+")
        proc = subprocess.Popen([net.exe, "--root", net.root, "create", "--bundle", str(b), "late"],
                                stdin=subprocess.DEVNULL, stdout=null, stderr=err)
        import time
        time.sleep(1.0)
        os.unlink(os.path.join(net.root, ".net", "networks", "gone.json"))   # what rm does, lock held
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        assert proc.wait(timeout=30) == 1
        err.seek(0)
        assert "network gone not found" in err.read()
    assert net.leases("gone") == {} and net.links() == []
