"""Attacks on bridge networking (review of issue 11): bad input, hand-edited or damaged
state files, races between create and `network rm`, two state roots sharing the host,
and what a container can do through what hutch set up.

Comments marked `# BUG:` name what the review found; each was fixed and its test now
passes, except the one still marked xfail(strict=True) (two state roots with one subnet).  Traffic goes only to 127.0.0.1 on the host, to the test's own bridges'
gateways and to containers' addresses; subnets are 10.2xx.x.x."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from helpers.net import Net, nft_table, random_subnet, wait_until

pytestmark = [pytest.mark.priv]


def _refused(net: Net, *args) -> str:
    """hutch run ARGS -- true must fail with exit 125 and one line, no traceback."""
    result = net.run(*args, "--", "true", check=False)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 125, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _info(net: Net, name: str) -> dict:
    return json.loads(net.hutch("network", "inspect", name).stdout)[0]


def _no_containers_left(net: Net) -> None:
    assert net.hutch("list", "-q").stdout.split() == [], "a container was left half-made"


# -- -p forms -------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["abc", "80", "[::1]:8080", "[::1:8080:80", "[zz]:1:2", "1:2/sctp",
                                  "0:80", "-5:80", "80-70:80-70", "1.2.3.4:5:6:7", "1-3:1-2",
                                  "65536:80", "8080:80,9090:90"])
def test_bad_publish_forms_are_one_line_and_125(net, spec):
    net.network("n1")
    _refused(net, "--network", "n1", "-p", spec)
    _no_containers_left(net)
    assert net.leases("n1") == {}


# BUG: an IPv6 host address on a network without IPv6 is accepted and nothing is published
# (port_elements skips it); podman refuses ("no IPv6 address for [::1]" / netavark error).
def test_ipv6_host_address_on_an_ipv4_only_network_is_refused(net):
    net.network("n1")
    _refused(net, "--network", "n1", "-p", "[::1]:18301:80")


def test_port_conflict_check_is_not_quadratic():
    """Two containers publishing 10000-port ranges: the conflict check must stay fast
    (it compared every pair: 10^8 comparisons, 10+ s, for this)."""
    from hutch.net import ipam
    theirs = [{"host_ip": "", "host_port": p, "container_port": p, "protocol": "tcp"} for p in range(20000, 30000)]
    mine = [{"host_ip": "", "host_port": p, "container_port": p, "protocol": "tcp"} for p in range(30000, 40000)]
    everyone = {"n1": {"leases": {"a": {"ips": [], "ports": theirs}}}}
    started = time.monotonic()
    assert ipam.port_conflicts(everyone, mine, "b") is None
    assert time.monotonic() - started < 1.0
    clash = [{"host_ip": "127.0.0.1", "host_port": 29999, "container_port": 1, "protocol": "tcp"}]
    assert "29999/tcp is already published by container a (network n1)" in ipam.port_conflicts(everyone, clash, "b")
    assert ipam.port_conflicts(everyone, [dict(clash[0], protocol="udp")], "b") is None
    bound = {"n1": {"leases": {"a": {"ips": [], "ports": [dict(clash[0])]}}}}
    assert ipam.port_conflicts(bound, [dict(clash[0], host_ip="10.0.0.1")], "b") is None
    assert ipam.port_conflicts(bound, [dict(clash[0], host_ip="")], "b") is not None


# -- damaged state files --------------------------------------------------------------------

_DAMAGED_LEASES = [
    '{"next": [], "leases": {}}',
    '{"next": {}, "leases": []}',
    '{"next": {}, "leases": {"x": {}}}',
    '{"next": {}, "leases": {"x": "str"}}',
    '{"next": {}, "leases": {"x": {"ips": "abc"}}}',
    '{"next": {"SUBNET": "zz"}, "leases": {}}',
]


# BUG: read_leases checks only that the file is a JSON object; any other shape is a
# traceback (AttributeError/TypeError/KeyError/ValueError) in join, and again in the
# undo -- which escapes undo_all, so the half-made container is never removed and every
# later `hutch run` in the root dies in collect_stale_runs with the same traceback.
@pytest.mark.parametrize("text", _DAMAGED_LEASES)
def test_damaged_leases_file_is_one_line_and_leaves_nothing(net, text):
    subnet = net.network("n1")
    os.makedirs(os.path.join(net.root, "stray"))           # "x" in the file: a live-looking holder
    with open(os.path.join(net.root, ".net", "leases", "n1.json"), "w") as f:
        f.write(text.replace("SUBNET", subnet))
    try:
        line = _refused(net, "--network", "n1")
        assert "n1.json" in line
        assert set(net.hutch("list", "-q").stdout.split()) <= {"stray"}, "a container was left half-made"
        assert net.run("--", "true", check=False).returncode == 0, "the root is unusable afterwards"
    finally:
        with open(os.path.join(net.root, ".net", "leases", "n1.json"), "w") as f:
            f.write('{"next": {}, "leases": {}}')
        os.rmdir(os.path.join(net.root, "stray"))


def _edit_definition(net: Net, name: str, change) -> None:
    path = os.path.join(net.root, ".net", "networks", name + ".json")
    data = json.load(open(path))
    change(data)
    with open(path, "w") as f:
        json.dump(data, f)


# BUG: Network.from_json checks keys and types but not values: a subnet or gateway that
# is not an address is a ValueError traceback (exit 1) from ipaddress in allocate().
@pytest.mark.parametrize("field,value", [("subnet", "garbage"), ("subnet", "10.240.0.7/24"),
                                         ("gateway", "zz")])
def test_hand_edited_definition_with_bad_addresses(net, field, value):
    net.network("n1")
    _edit_definition(net, "n1", lambda d: d["subnets"][0].__setitem__(field, value))
    line = _refused(net, "--network", "n1")
    assert "n1.json" in line
    _no_containers_left(net)


# BUG: a definition whose "name" is not its file's name: join uses network.name for the
# lock, the leases and the journal entry, undo looks that name up, finds no such network
# and skips the teardown -- the bridge (and its firewall entries) stay on the host.
def test_hand_edited_definition_name_leaks_nothing(net):
    net.network("n1")
    bridge = _info(net, "n1")["bridge"]
    _edit_definition(net, "n1", lambda d: d.__setitem__("name", "other"))
    net.run("--network", "n1", "--", "true", check=False)
    _edit_definition(net, "n1", lambda d: d.__setitem__("name", "n1"))
    try:
        assert not os.path.exists(f"/sys/class/net/{bridge}"), "bridge left behind"
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        table = nft_table()
        if table and f'"{bridge}"' in table:       # take our own entries out again
            from hutch.net.nft import Firewall, host_lock
            with host_lock(), Firewall() as fw:
                fw.remove_network(bridge, [_info(net, "n1")["subnets"][0]["subnet"]])


# BUG: the bridge name of a definition is checked at `network create` only; edited by
# hand it goes into nft commands unquoted-safe only by luck: the undo's
# Firewall.remove_network runs `add element ... { "BRIDGE" }` with it whenever the
# table exists (another network live), so '"; add table ...' runs as nft commands
# (root-only file: defense in depth).  The run also prints two lines (undo warning).
def test_hand_edited_bridge_name_never_reaches_nft(net):
    net.network("n0")
    holder = net.server("keeps-table-live", "--network", "n0")
    net.network("n1")
    _edit_definition(net, "n1", lambda d: d.__setitem__(
        "bridge", 'x" }; add table inet hrpwn; add element inet hutch bridges { "hrq'))
    try:
        result = net.run("--network", "n1", "--", "true", check=False)
        assert subprocess.run(["nft", "list", "table", "inet", "hrpwn"], capture_output=True).returncode != 0, \
            "nft commands from a bridge name ran"
        assert result.returncode == 125 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert net.hutch("list", "-q").stdout.split() == ["keeps-table-live"]
    finally:
        subprocess.run(["nft", "delete", "table", "inet", "hrpwn"], capture_output=True)
        subprocess.run(["nft", "delete", "element", "inet", "hutch", "bridges", '{ "hrq" }'], capture_output=True)
        _edit_definition(net, "n1", lambda d: d.__setitem__("bridge", "hrok"))
        net.stop(holder)


# -- races ----------------------------------------------------------------------------------

class _HeldContainerLock:
    """Hold ROOT/.ID.lock: a create of ID then stops after its network plan is checked
    (the definition loaded) and before the join -- a window made wide on purpose."""

    def __init__(self, root: str, cid: str):
        os.makedirs(root, exist_ok=True)
        self.fd = os.open(os.path.join(root, f".{cid}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# BUG: `network rm` between a create's plan (definition loaded) and its join succeeds
# (no lease yet); the join then makes the bridge and a lease for a network that no longer
# exists, and the container's delete cannot tear it down (undo: network not found) --
# the bridge, its gateway address and its firewall entries stay on the host for good.
def test_network_rm_while_a_container_is_being_created(net, bundle):
    net.network("n1")
    bridge = _info(net, "n1")["bridge"]
    b = bundle(["sleep", "30"], annotations={"org.hutch.networks": "n1"})
    held = _HeldContainerLock(net.root, "c1")
    result = {}
    creating = threading.Thread(target=lambda: result.setdefault("create", net.create(b, "c1", check=False)))
    creating.start()
    try:
        time.sleep(1.0)                       # create is waiting for c1's lock, plan done
        removed = net.hutch("network", "rm", "n1", check=False)
    finally:
        held.release()
        creating.join(60)
    try:
        if removed.returncode == 0:
            assert result["create"].returncode != 0, "joined a network that was removed"
        net.hutch("delete", "--force", "c1", check=False)
        assert not os.path.exists(f"/sys/class/net/{bridge}"), "bridge of a removed network left"
    finally:
        net.hutch("delete", "--force", "c1", check=False)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        table = nft_table()
        if table and f'"{bridge}"' in table:
            from hutch.net.nft import Firewall, host_lock
            with host_lock(), Firewall() as fw:
                fw.remove_network(bridge, [])


def test_concurrent_joins_and_leaves_keep_the_bridge_while_anyone_is_on_it(net, bundle):
    """Creates and deletes racing on one network: the live flag and the bridge follow the
    leases (no member without a bridge, no bridge without a member at the end)."""
    net.network("n1")
    bridge = _info(net, "n1")["bridge"]
    b = bundle(["sleep", "60"], annotations={"org.hutch.networks": "n1"})
    errors = []

    def cycle(cid):
        for _ in range(3):
            r = net.create(b, cid, check=False)
            if r.returncode:
                errors.append(r.stderr)
                return
            if not os.path.exists(f"/sys/class/net/{bridge}"):
                errors.append(f"{cid} created but no bridge")
            net.hutch("delete", "--force", cid)

    threads = [threading.Thread(target=cycle, args=(f"r{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert net.leases("n1") == {}
    assert not os.path.exists(f"/sys/class/net/{bridge}")


# -- two state roots on one host ------------------------------------------------------------

# BUG: subnets are checked against this root's networks and the host's routes only; a
# second root defines the same subnet while the first is not live, both go live (two
# bridges with one gateway address, containers with the same address), and when the
# second's last container leaves, remove_network deletes the subnet from masq4/nets4
# while the first root's network still uses it: its outbound masquerade and hairpin go.
@pytest.mark.xfail(strict=True, reason="two roots can go live with one subnet; one's teardown breaks the other")
def test_two_roots_one_subnet(tmp_path, bundle):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    a, b = Net(str(tmp_path / "a")), Net(str(tmp_path / "b"))
    subnet, _ = random_subnet()
    try:
        a.hutch("network", "create", "--subnet", subnet, "--bridge", f"hra{os.getpid() % 10000}", "na")
        b.hutch("network", "create", "--subnet", subnet, "--bridge", f"hrb{os.getpid() % 10000}", "nb")
        a.server("sa", "--network", "na")
        second = b.run("--network", "nb", "--", "true", check=False)
        assert second.returncode == 125, "a second bridge went live with a subnet already live"
        masq = nft_table().split("set masq4 {")[1].split("}")[0]
        assert subnet in masq, "root a's network lost its masquerade"
    finally:
        for n in (a, b):
            n.cleanup()
        assert not a.links() and not b.links()


# -- what a container can do ----------------------------------------------------------------

# A container (default capabilities: CAP_NET_RAW) sends a UDP datagram to 127.0.0.1 out of
# eth0, addressed to the gateway's MAC.  With route_localnet=1 on the bridge (set for
# published ports on localhost) the host takes it as local: CVE-2020-8558 (kube-proxy).
_LOCALNET = r"""
import socket, struct, sys, time
gw, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect((gw, 9)); s.send(b"x"); myip = s.getsockname()[0]
time.sleep(0.3)
gwmac = [bytes.fromhex(l.split()[3].replace(":", "")) for l in open("/proc/net/arp").read().splitlines()[1:]
         if l.split()[0] == gw][0]
mymac = bytes.fromhex(open("/sys/class/net/eth0/address").read().strip().replace(":", ""))
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
    return ~t & 0xffff
payload = b"from-container"
udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(myip), socket.inet_aton("127.0.0.1"))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); p.bind(("eth0", 0))
for _ in range(3):
    p.send(gwmac + mymac + b"\x08\x00" + ip + udp); time.sleep(0.1)
print("sent")
"""


# BUG: route_localnet=1 on the bridge lets any container reach host services bound to
# 127.0.0.1 only (UDP here; TCP likewise with raw sockets).  Fix: drop what enters from a
# hutch bridge for 127.0.0.0/8 (kubernetes: "ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8
# ct status != dnat drop" in an input-hook chain), or DNAT 127.0.0.1 in output without
# route_localnet (netavark/docker-proxy).
def test_container_cannot_reach_hosts_loopback_services(net):
    net.network("n1")
    gateway = _info(net, "n1")["subnets"][0]["gateway"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as host_only:
        host_only.bind(("127.0.0.1", 0))
        host_only.settimeout(3)
        port = host_only.getsockname()[1]
        out = net.run("--network", "n1", "--", "python3", "-c", _LOCALNET, gateway, str(port)).stdout
        assert out.strip() == "sent"
        try:
            got = host_only.recvfrom(100)
        except socket.timeout:
            got = None
    assert got is None, f"host's 127.0.0.1:{port} got {got!r} from a container"


def test_hosts_and_resolv_are_read_only_inside(net):
    net.network("n1")
    out = net.run("--network", "n1", "--", "sh", "-c",
                  "echo 6.6.6.6 evil >> /etc/hosts; echo rc=$?; echo x >> /etc/resolv.conf; echo rc=$?;"
                  " ln -sf /etc/shadow /etc/hosts; echo rc=$?", check=False).stdout
    codes = out.split()
    assert len(codes) == 3 and "rc=0" not in codes, out


def test_a_hostname_cannot_add_lines_to_peers_hosts_files(net, bundle):
    net.network("n1")
    web = net.server("web", "--network", "n1")
    b = bundle(["sleep", "30"], hostname="evil\n6.6.6.6 web", annotations={"org.hutch.networks": "n1"})
    net.create(b, "ev")
    hosts = open(os.path.join(net.root, "web", "hosts")).read()
    assert "6.6.6.6" not in hosts and "evil" not in hosts
    net.hutch("delete", "--force", "ev")
    net.stop(web)


def test_oci_annotations_with_garbage_values(net, bundle):
    net.network("n1")
    for annotations in ({"org.hutch.networks": "n1", "org.hutch.publish": "x:y"},
                        {"org.hutch.networks": "n1", "org.hutch.ip": "not-an-ip"},
                        {"org.hutch.networks": " , ,"},
                        {"org.hutch.publish": "8080:80"},
                        {"org.hutch.networks": "n1,n1"},
                        {"org.hutch.networks": "../../etc"}):
        b = bundle(["true"], annotations=annotations)
        result = net.create(b, "g1", check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr, (annotations, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        _no_containers_left(net)
    assert net.leases("n1") == {}
    assert wait_until(lambda: not net.links(), 2)
