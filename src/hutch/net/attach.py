"""A container's networks: what it asks for, and the setup step that wires it.

The request travels in the OCI config's annotations, so `hutch run`, the Python API
and an engine above hutch's OCI face ask the same way::

    org.hutch.networks   "web,hutch0" or "cni:mynet"   (bridge networks, CNI networks)
    org.hutch.publish    "8080:80,127.0.0.1:5353:53/udp,9000-9001:90-91"
    org.hutch.ip         "10.66.0.9"   org.hutch.ip6  "fd42::9"   (first network)
    org.hutch.cni-config-dir  where CNI networks are looked up (/etc/cni/net.d)
    org.hutch.cni-path        where CNI plugins are (/usr/lib/cni:/opt/cni/bin)

`plan()` checks all of it before anything is made.  The setup step (`Plan.step`)
runs in the parent once the container process has its network namespace and before
its program starts; for each bridge network it, in order:

    journals {"kind": "net", "key": "net:NAME", host_if ...}      (the undo's map)
    under the network's lock: leases an address and the host ports (leases file),
    makes the network live if it was not (bridge, gateway addresses, firewall),
    publishes the ports (map elements), makes the veth pair (the peer straight
    into the container's namespace as eth<N>), addresses it, routes, and rewrites
    the hosts files of everyone on the network

`undo` (delete, a failed create, a crashed one) reverses it from the leases file,
which is the truth about what a container holds; the last container to leave a
network takes its live part away.
"""

from __future__ import annotations

import os

from hutch.errors import ConfigError, HutchError
from hutch.record import dataclass, field

ANNOTATION_NETWORKS = "org.hutch.networks"
ANNOTATION_PUBLISH = "org.hutch.publish"
ANNOTATION_IP = "org.hutch.ip"
ANNOTATION_IP6 = "org.hutch.ip6"
ANNOTATION_CNI_DIR = "org.hutch.cni-config-dir"
ANNOTATION_CNI_PATH = "org.hutch.cni-path"       # plugin dirs, ':'-separated
DEFAULT_CNI_DIR = "/etc/cni/net.d"
_PROTOCOLS = ("tcp", "udp")


@dataclass
class Request:
    networks: list = field(default_factory=list)      # names; "cni:NAME" for CNI
    ports: list = field(default_factory=list)         # parsed port dicts
    ip: str | None = None
    ip6: str | None = None
    cni_dir: str = DEFAULT_CNI_DIR
    cni_path: tuple = ()            # () = the CNI runtime's defaults


def annotations_for(networks: list[str], publish: list[str], ip: str | None, ip6: str | None) -> dict:
    out = {ANNOTATION_NETWORKS: ",".join(networks)}
    if publish:
        out[ANNOTATION_PUBLISH] = ",".join(publish)
    if ip:
        out[ANNOTATION_IP] = ip
    if ip6:
        out[ANNOTATION_IP6] = ip6
    return out


def request_from(annotations: dict) -> Request | None:
    names = annotations.get(ANNOTATION_NETWORKS)
    if names is None:
        if annotations.get(ANNOTATION_PUBLISH):
            raise ConfigError("publishing ports needs a network (--network NAME)", where="-p")
        return None
    networks = [n.strip() for n in names.split(",") if n.strip()]
    if not networks:
        raise ConfigError("no network named", where=f"annotations.{ANNOTATION_NETWORKS}")
    if len(set(networks)) != len(networks):
        raise ConfigError(f"a network is named twice in {names!r}", where="--network")
    publish = [p for p in (annotations.get(ANNOTATION_PUBLISH) or "").split(",") if p.strip()]
    return Request(networks=networks, ports=parse_ports(publish),
                   ip=annotations.get(ANNOTATION_IP) or None, ip6=annotations.get(ANNOTATION_IP6) or None,
                   cni_dir=annotations.get(ANNOTATION_CNI_DIR) or DEFAULT_CNI_DIR,
                   cni_path=tuple(d for d in (annotations.get(ANNOTATION_CNI_PATH) or "").split(":") if d))


# -- -p [HOSTIP:]HOSTPORT[-END]:CTRPORT[-END][/tcp|udp] -------------------------------

def parse_ports(specs: list[str]) -> list[dict]:
    ports = []
    for spec in specs:
        ports.extend(parse_port(spec.strip()))
    seen = set()
    for p in ports:
        key = (p["host_ip"], p["host_port"], p["protocol"])
        if key in seen:
            raise ConfigError(f"host port {p['host_port']}/{p['protocol']} is published twice", where="-p")
        seen.add(key)
    return ports


def parse_port(spec: str) -> list[dict]:
    body, _, protocol = spec.partition("/")
    protocol = protocol or "tcp"
    if protocol not in _PROTOCOLS:
        raise ConfigError(f"invalid protocol {protocol!r} in {spec!r}: use tcp or udp", where="-p")
    host_ip = ""
    if body.startswith("["):                       # [::1]:8080:80
        host_ip, sep, body = body[1:].partition("]:")
        if not sep:
            raise ConfigError(f"invalid port mapping {spec!r}", where="-p")
    parts = body.split(":")
    if len(parts) == 3 and not host_ip:
        host_ip, parts = parts[0], parts[1:]
    if len(parts) != 2:
        raise ConfigError(f"invalid port mapping {spec!r}: expected [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]",
                          where="-p")
    if host_ip:
        from hutch.net.ipam import parse_address
        host_ip = str(parse_address(host_ip, "-p"))
    host, container = (_port_range(p, spec) for p in parts)
    if len(host) != len(container):
        raise ConfigError(f"port ranges of different lengths in {spec!r}", where="-p")
    return [{"host_ip": host_ip, "host_port": h, "container_port": c, "protocol": protocol}
            for h, c in zip(host, container)]


def _port_range(text: str, spec: str) -> list[int]:
    first, dash, last = text.partition("-")
    try:
        low, high = int(first), int(last) if dash else int(first)
    except ValueError:
        raise ConfigError(f"invalid port {text!r} in {spec!r}", where="-p") from None
    if not (1 <= low <= high <= 65535):
        raise ConfigError(f"invalid port {text!r} in {spec!r}: use 1-65535", where="-p")
    return list(range(low, high + 1))


# -- the plan: everything checked before anything is made ------------------------------

class Plan:
    """A checked request for one container; `step` is its setup step."""

    def __init__(self, root: str, container_id: str, spec: dict, request: Request):
        self.root, self.id, self.request = root, container_id, request
        self.hostname = spec.get("hostname") or container_id
        self.networks = []               # (name, Network | None for CNI)
        self.directory = None

    def check(self, spec: dict) -> "Plan":
        from hutch.net import network as netstore
        _check_new_netns(spec)
        if os.geteuid() != 0:
            raise ConfigError("bridge and CNI networks need root (rootless: --net none or host)",
                              where="--network")
        for name in self.request.networks:
            if name.startswith("cni:"):
                from hutch.net.cni import load_conflist
                load_conflist(name[4:], (self.request.cni_dir,))     # missing or malformed: now
                self.networks.append((name, None))
                continue
            if name in ("none", "host") or name.startswith("container:"):
                raise ConfigError(f"--network {name} cannot be combined with other networks",
                                  where="--network")
            self.networks.append((name, netstore.load_or_default(self.root, name)))
        self._check_addresses(self.networks[0][1])
        self._check_port_families(self.networks[0][1])
        return self

    def _check_port_families(self, first) -> None:
        """A host address of a family the first network lacks would publish nothing."""
        if first is None:
            return                       # CNI: portmap decides
        for port in self.request.ports:
            family = 6 if ":" in port["host_ip"] else 4
            if port["host_ip"] and first.subnet_of(family) is None:
                raise ConfigError(f"{port['host_ip']}:{port['host_port']}: network {first.name} has no "
                                  f"IPv{family} subnet to publish it on", where="-p")

    def _check_addresses(self, first) -> None:
        from hutch.net.ipam import check_requested
        for ip, family in ((self.request.ip, 4), (self.request.ip6, 6)):
            if ip is None:
                continue
            where = "--ip6" if family == 6 else "--ip"
            subnet = first.subnet_of(family) if first is not None else None
            if subnet is None:
                raise ConfigError(f"{ip}: the first network has no IPv{family} subnet", where=where)
            check_requested(ip, subnet.subnet, subnet.gateway, first.name)

    def add_files(self, directory: str, spec: dict) -> dict:
        """Make the container's hosts and resolv.conf and mount them (unless the config
        mounts its own, as engines do); returns the spec to save."""
        from hutch.net.hosts import create_files
        self.directory = directory
        hosts, resolv = create_files(directory)
        mounts = list(spec.get("mounts") or ())
        have = {m.get("destination") for m in mounts}
        for source, destination in ((hosts, "/etc/hosts"), (resolv, "/etc/resolv.conf")):
            if destination not in have:
                mounts.append({"destination": destination, "type": "bind", "source": source,
                               "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]})
        return dict(spec, mounts=mounts)

    def step(self, ctx) -> None:
        """The setup step: every network in order, eth0, eth1, ..."""
        for index, (name, network) in enumerate(self.networks):
            ifname, first = f"eth{index}", index == 0
            if network is None:
                self._join_cni(ctx, name[4:], ifname, first)
                continue
            # addresses asked for, published ports and the default route: the first network's
            join(ctx, self.root, network, ifname, self.hostname,
                 ip=self.request.ip if first else None, ip6=self.request.ip6 if first else None,
                 ports=self.request.ports if first else (), default_route=first)

    def _join_cni(self, ctx, name: str, ifname: str, first: bool) -> None:
        from hutch.net import cni
        capability_args = {}
        if first and self.request.ports:
            capability_args["portMappings"] = [
                {"hostPort": p["host_port"], "containerPort": p["container_port"],
                 "protocol": p["protocol"], **({"hostIP": p["host_ip"]} if p["host_ip"] else {})}
                for p in self.request.ports]
        extra = {"plugin_dirs": self.request.cni_path} if self.request.cni_path else {}
        result = cni.attach(ctx, name, ifname, (self.request.cni_dir,), capability_args=capability_args,
                            **extra)
        if self.directory is not None:
            from hutch.net import hosts
            own = [(ip["address"].partition("/")[0], [self.hostname, self.id])
                   for ip in result.get("ips") or () if ip.get("address")]
            hosts.write_in_place(os.path.join(self.directory, hosts.HOSTS), hosts.render(own, []))


def plan(root: str, container_id: str, spec: dict) -> Plan | None:
    request = request_from(spec.get("annotations") or {})
    if request is None:
        return None
    return Plan(root, container_id, spec, request).check(spec)


def _check_new_netns(spec: dict) -> None:
    for ns in (spec.get("linux") or {}).get("namespaces") or ():
        if ns.get("type") == "network":
            if ns.get("path"):
                raise ConfigError("a container joining another network namespace cannot join networks",
                                  where="--network")
            return
    raise ConfigError("networks need the container's own network namespace (not --net host)",
                      where="--network")


# -- joining a bridge network --------------------------------------------------------

def join(ctx, root: str, network, ifname: str, hostname: str, ip=None, ip6=None,
         ports=(), default_route: bool = True) -> dict:
    from hutch.net import ipam, network as netstore
    from hutch.faults import step
    container_id = ctx.state.id
    host_if = "vh" + os.urandom(5).hex()
    entry = {"kind": "net", "key": f"net:{network.name}", "root": root, "network": network.name,
             "id": container_id, "host_if": host_if, "definition": network.to_json()}
    ctx.own(entry)
    step("net.recorded")
    with netstore.lock(root, network.name):
        # `network rm` may have run since the plan was checked (it holds this lock too)
        network = netstore.load(root, network.name)
        data = ipam.read_leases(root, network.name)
        prune_stale(root, data, container_id)
        _check_ports(root, network.name, data, list(ports), container_id)
        ips = []
        for family, requested in ((4, ip), (6, ip6)):
            subnet = network.subnet_of(family)
            if subnet is not None:
                ips.append(ipam.allocate(data, subnet.subnet, subnet.gateway, requested, network.name))
        lease = {"ips": ips, "ports": list(ports), "host_if": host_if, "ifname": ifname,
                 "hostname": hostname}
        data["leases"][container_id] = lease
        ipam.write_leases(root, network.name, data)
        ctx.own(dict(entry, leased=True))     # from here on the undo must read the leases
        step("net.leased")
        if not (data.get("live") and _bridge_is_ours(root, network)):
            bring_up(root, network)
            data["live"] = True          # the next member skips bring_up (a cost of ~15 ms)
            ipam.write_leases(root, network.name, data)
        elif network.subnet_of(4):
            # Writing net.ipv4.ip_forward (a peer does, an admin may) resets every
            # interface's forwarding, this bridge's too: say it again, it costs 50 us.
            _sysctl(f"net/ipv4/conf/{network.bridge}/forwarding", "1")
        _publish(ports, ips)
        _wire(ctx.pid, root, network, host_if, ifname, ips, container_id, default_route)
        step("net.wired")
        refresh_hosts(root, network.name, data)
    return lease


def _check_ports(root: str, name: str, data: dict, ports: list[dict], me: str) -> None:
    from hutch.net import ipam, network as netstore
    if not ports:
        return
    everyone = {name: data}
    for other in netstore.list_all(root):
        if other.name != name:
            everyone[other.name] = ipam.read_leases(root, other.name)
    clash = ipam.port_conflicts(everyone, ports, me)
    if clash:
        raise HutchError(clash, where="-p")
    for port in ports:
        ipam.check_host_port_free(port)


def _family_ip(ips: list[str], family: int) -> str | None:
    for ip in ips:
        if (":" in ip) == (family == 6):
            return ip.partition("/")[0]
    return None


def _publish(ports, ips: list[str]) -> None:
    if not ports:
        return
    from hutch.net.nft import Firewall, port_elements
    with Firewall() as fw:
        fw.add_ports(port_elements(list(ports), _family_ip(ips, 4), _family_ip(ips, 6)))


def _wire(pid: int, root: str, network, host_if: str, ifname: str, ips: list[str], container_id: str,
          default_route: bool) -> None:
    from hutch.net.netlink import Netlink
    netns = f"/proc/{pid}/ns/net"
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with Netlink() as host:
            host.add_veth(host_if, ifname, peer_netns=fd, mtu=network.mtu, master=network.bridge,
                          alias=container_alias(container_id, root))
            # A container reaching its own published port: the DNAT'ed frame goes back
            # out of the port it came in by (with br_netfilter it stays bridged).
            _write(f"/sys/class/net/{host_if}/brport/hairpin_mode", "1")
            host.set_link(host_if, up=True)
    finally:
        os.close(fd)
    from hutch.net.addr import ip_interface
    from hutch.net.netlink import RTPROT_STATIC
    with Netlink(netns=netns) as inside:
        for ip in ips:
            # IPv4 with its subnet's broadcast address, as netavark and `ip addr add ... brd +`
            broadcast = None if ":" in ip else str(ip_interface(ip).network.broadcast_address)
            inside.add_address(ifname, ip, broadcast=broadcast)
        inside.set_link(ifname, up=True)
        if default_route:
            for family in (4, 6):
                subnet = network.subnet_of(family)
                if subnet is not None:
                    # metric 100 and proto static: what netavark gives (tests/integration/
                    # test_net_netavark.py compares)
                    inside.add_route("default", gateway=subnet.gateway, dev=ifname, family=family,
                                     metric=100, protocol=RTPROT_STATIC)


def container_alias(container_id: str, root: str) -> str:
    """The host-side veth's alias: whose it is (undo deletes only a link saying so)."""
    return f"hutch container {container_id} {root}"[:255]


# -- a network's live part ------------------------------------------------------------

def bring_up(root: str, network) -> None:
    """Bridge, gateway addresses, sysctls, firewall entries: made if missing (idempotent)."""
    from hutch.net.netlink import Netlink
    from hutch.net.nft import Firewall, host_lock
    with Netlink() as nl:
        link = nl.link(network.bridge)
        if link is not None and link.get("alias") != network.alias(root):
            raise HutchError(f"bridge {network.bridge} exists and is not network {network.name}'s "
                             f"(alias {link.get('alias')!r})", where="--network")
        if link is None:
            nl.add_bridge(network.bridge, mtu=network.mtu, alias=network.alias(root))
        have = {(a["address"], a["prefixlen"]) for a in nl.addresses(network.bridge)}
        for s in network.subnets:
            prefix = int(s.subnet.partition("/")[2])
            if (s.gateway, prefix) not in have:
                nl.add_address(network.bridge, f"{s.gateway}/{prefix}")
        if network.subnet_of(4):
            # Forwarding on this bridge only (what it receives may be routed: outbound,
            # hairpin), and 127.0.0.1 may be routed to it (published ports on localhost).
            _sysctl(f"net/ipv4/conf/{network.bridge}/forwarding", "1")
            _sysctl(f"net/ipv4/conf/{network.bridge}/route_localnet", "1")
        nl.set_link(network.bridge, up=True)
    with host_lock(), Firewall() as fw:
        fw.add_network(network.bridge, [s.subnet for s in network.subnets], network.internal)


def _bridge_is_ours(root: str, network) -> bool:
    """The bridge exists and its alias names this network (sysfs: no netlink round trip).
    Otherwise bring_up runs, and refuses a bridge of the same name that is someone else's."""
    try:
        with open(f"/sys/class/net/{network.bridge}/ifalias") as f:
            return f.read().rstrip("\n") == network.alias(root)
    except OSError:
        return False


def teardown_network(root: str, network) -> None:
    """Take the live part away (idempotent): firewall entries, then the bridge if ours."""
    from hutch.net.netlink import Netlink
    from hutch.net.nft import Firewall, host_lock
    with host_lock(), Firewall() as fw:
        fw.remove_network(network.bridge, [s.subnet for s in network.subnets])
    with Netlink() as nl:
        link = nl.link(network.bridge)
        if link is not None and link.get("alias") == network.alias(root):
            nl.delete_link(network.bridge)


def _sysctl(name: str, value: str) -> None:
    _write(f"/proc/sys/{name}", value)


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


# -- names ----------------------------------------------------------------------------

def refresh_hosts(root: str, name: str, data: dict) -> None:
    """Rewrite the hosts file of every container on network name (data: its leases)."""
    for member in list(data["leases"]):
        write_hosts(root, member)


def write_hosts(root: str, container_id: str) -> None:
    """The container's hosts file from the leases of every network it is on."""
    from hutch.net import hosts, ipam, network as netstore
    own, peers = [], []
    for network in netstore.list_all(root):
        data = ipam.read_leases(root, network.name)
        mine = data["leases"].get(container_id)
        if mine is None:
            continue
        for ip in mine["ips"]:
            own.append((ip.partition("/")[0], [mine.get("hostname") or container_id, container_id]))
        for peer, lease in data["leases"].items():
            if peer != container_id:
                for ip in lease["ips"]:
                    peers.append((ip.partition("/")[0], [peer, *([lease["hostname"]] if lease.get("hostname") else [])]))
    hosts.write_in_place(os.path.join(root, container_id, hosts.HOSTS), hosts.render(own, peers))


# -- the undo ---------------------------------------------------------------------------

def undo(entry: dict) -> None:
    """Leave the network: ports, veth, lease; the network's live part if this was the
    last container; the others' hosts files.  Idempotent; runs after crashes too."""
    from hutch.net import ipam, network as netstore
    root, name, container_id = entry["root"], entry["network"], entry["id"]
    try:
        network = netstore.load(root, name)
    except HutchError:
        # removed or damaged since: the copy in the entry still names the bridge to take away
        definition = entry.get("definition")
        network = netstore.Network.from_json(definition, "owned.jsonl") if definition else None
    with netstore.lock(root, name):
        try:
            data = ipam.read_leases(root, name)
        except ConfigError:
            if entry.get("leased"):
                raise                      # a lease may be in there: say so (one warning)
            # the join never got a lease (the damage stopped it, and was reported then)
            _release(root, {"leases": {}}, container_id, entry.get("host_if"))
            return
        if _release(root, data, container_id, entry.get("host_if")):
            ipam.write_leases(root, name, data)
        if network is not None and not data["leases"]:
            data.pop("live", None)
            ipam.write_leases(root, name, data)      # not live from here on, whatever follows
            teardown_network(root, network)
        refresh_hosts(root, name, data)


def _release(root: str, data: dict, container_id: str, host_if: str | None) -> bool:
    """Take container_id's ports, veth and lease out of data (caller holds the network's
    lock and writes data); True if it held a lease."""
    from hutch.net.netlink import Netlink
    lease = data["leases"].pop(container_id, None)
    if lease and lease.get("ports"):
        from hutch.net.nft import Firewall, port_elements
        with Firewall() as fw:
            fw.remove_ports(port_elements(lease["ports"], _family_ip(lease["ips"], 4),
                                          _family_ip(lease["ips"], 6)))
    with Netlink() as nl:
        for name in {host_if, (lease or {}).get("host_if")} - {None}:
            link = nl.link(name)
            if link is not None and link.get("alias") == container_alias(container_id, root):
                nl.delete_link(name)
    return lease is not None


def prune_stale(root: str, data: dict, me: str) -> list[str]:
    """Release the leases of containers whose state directory is gone (removed by hand,
    or a state root wiped while the network store was kept); caller holds the lock."""
    gone = [cid for cid in data["leases"] if cid != me and not os.path.isdir(os.path.join(root, cid))]
    for cid in gone:
        _release(root, data, cid, None)
    return gone
