"""Address and host-port leases of a network, and the choice of subnets.

ROOT/.net/leases/NAME.json::

    {"next": {"10.66.0.0/16": "10.66.0.7"},          where the next search starts
     "leases": {"<container id>": {"ips": ["10.66.0.6/16"], "ports": [...],
                                   "host_if": "vh0123456789", "hostname": "web"}}}

Every change happens under the network's lock (network.lock) and is written by
rename, so concurrent creates never hand out one address twice and a reader never
sees half a file.  Addresses are handed out in turn (the one after the last given,
wrapping), not lowest-first, so a just-freed address is not reused at once while
peers may still have it in their ARP and conntrack tables.
"""

from __future__ import annotations

import os

from hutch.errors import ConfigError, HutchError
from hutch.net import addr as ipaddress     # the subset of the stdlib module used here, 5 ms cheaper


def leases_path(root: str, name: str) -> str:
    from hutch.net.network import net_dir
    return os.path.join(net_dir(root), "leases", name + ".json")


def read_leases(root: str, name: str) -> dict:
    from hutch.net.network import read_json
    path = leases_path(root, name)
    data = read_json(path)
    if data is None:
        return {"next": {}, "leases": {}}
    data.setdefault("next", {})
    data.setdefault("leases", {})
    _check_leases(data, path)
    return data


def _check_leases(data: dict, path: str) -> None:
    """The shape IPAM relies on; a damaged file is one ConfigError naming it."""
    try:
        if not isinstance(data["next"], dict) or not isinstance(data["leases"], dict):
            raise ValueError("next and leases must be objects")
        for value in data["next"].values():
            ipaddress.ip_address(value)
        for holder, lease in data["leases"].items():
            if not isinstance(lease, dict) or not isinstance(lease.get("ips"), list):
                raise ValueError(f"lease of {holder!r} is not an object with a list of ips")
            for ip in lease["ips"]:
                ipaddress.ip_interface(ip)
            ports = lease.get("ports") or []
            if not isinstance(ports, list) or not all(
                    isinstance(p, dict) and isinstance(p.get("host_port"), int) and
                    p.get("protocol") in ("tcp", "udp") and isinstance(p.get("container_port"), int)
                    for p in ports):
                raise ValueError(f"ports of {holder!r} are not port mappings")
    except (ValueError, TypeError, AttributeError) as err:
        raise ConfigError(f"damaged leases file ({err})", where=path) from None


def write_leases(root: str, name: str, data: dict) -> None:
    from hutch.net.network import write_json_atomic
    write_json_atomic(leases_path(root, name), data)


# -- subnets -------------------------------------------------------------------------

def host_routes() -> list[str]:
    """Destinations of the host's routes (main table, not default): a new network must
    not overlap what the host already reaches through another interface."""
    out = []
    try:
        with open("/proc/net/route") as f:
            for line in list(f)[1:]:
                cols = line.split()
                dest, mask = int(cols[1], 16), int(cols[7], 16)
                if mask:
                    prefix = bin(mask).count("1")
                    out.append(f"{ipaddress.from_bytes(4, dest.to_bytes(4, 'little'))}/{prefix}")
    except (OSError, IndexError, ValueError):
        pass
    try:
        with open("/proc/net/ipv6_route") as f:
            for line in f:
                cols = line.split()
                prefix = int(cols[1], 16)
                if 0 < prefix < 128 and not cols[0].startswith("fe80") and not cols[0].startswith("ff"):
                    out.append(f"{ipaddress.from_bytes(6, bytes.fromhex(cols[0]))}/{prefix}")
    except (OSError, IndexError, ValueError):
        pass
    return out


def pick_subnet(subnet: str | None, gateway: str | None, taken: list[str], name: str,
                auto, flag: str) -> tuple[str, str]:
    """(subnet, gateway) for a new network: the one asked for, checked, or the first
    free automatic one."""
    if subnet is None:
        if gateway is not None:
            raise ConfigError(f"a gateway needs a subnet: add {flag}", where=flag)
        if auto is None:
            raise ConfigError("no subnet given", where=flag)
        candidates = [auto] if isinstance(auto, str) else [auto[0].format(i) for i in range(auto[1])]
        for candidate in candidates:
            if not _overlapping(ipaddress.ip_network(candidate), taken):
                return candidate, str(next(ipaddress.ip_network(candidate).hosts()))
        raise ConfigError(f"no free subnet for network {name}: give one with {flag}", where=flag)
    net = parse_subnet(subnet, flag)
    clash = _overlapping(net, taken)
    if clash:
        raise ConfigError(f"subnet {net} of network {name} overlaps {clash}", where=flag)
    if gateway is None:
        gw = next(net.hosts())
    else:
        gw = parse_address(gateway, "--gateway6" if net.version == 6 else "--gateway")
        if gw not in net or not _assignable(gw, net):
            raise ConfigError(f"gateway {gw} is not a host address of {net}",
                              where="--gateway6" if net.version == 6 else "--gateway")
    return str(net), str(gw)


def parse_subnet(text: str, where: str):
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as err:
        raise ConfigError(f"invalid subnet {text!r}: {err}", where=where) from None
    if net.num_addresses < 4:
        raise ConfigError(f"subnet {net} is too small: it needs room for a gateway and containers",
                          where=where)
    if net.is_loopback or net.is_multicast or net.is_link_local:
        raise ConfigError(f"subnet {net} is not usable for containers", where=where)
    return net


def parse_address(text: str, where: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(f"invalid IP address {text!r}", where=where) from None


def _overlapping(net, taken: list[str]) -> str | None:
    for other in taken:
        try:
            other_net = ipaddress.ip_network(other, strict=False)
        except ValueError:
            continue
        if other_net.version == net.version and net.overlaps(other_net):
            return str(other_net)
    return None


def _assignable(address, net) -> bool:
    if net.version == 4 and net.prefixlen < 31:
        return address not in (net.network_address, net.broadcast_address)
    return address != net.network_address


# -- addresses -----------------------------------------------------------------------

def allocate(data: dict, subnet: str, gateway: str, requested: str | None, network: str) -> str:
    """An address of subnet for a container (with its prefix, "10.66.0.6/16"); updates
    data["next"].  requested is checked: in the subnet, assignable, free."""
    net = ipaddress.ip_network(subnet)
    taken = {ipaddress.ip_interface(ip).ip for lease in data["leases"].values() for ip in lease["ips"]}
    taken.add(ipaddress.ip_address(gateway))
    if requested is not None:
        address = check_requested(requested, subnet, gateway, network)
        if address in taken:
            raise ConfigError(f"address {address} is already in use in network {network}", where="--ip")
        return f"{address}/{net.prefixlen}"
    start = ipaddress.ip_address(data["next"].get(subnet, str(next(net.hosts()))))
    if start not in net:
        start = next(net.hosts())
    address = _search(net, start, taken)
    if address is None:
        raise HutchError(f"network {network} has no free address left in {net}", where="--network")
    data["next"][subnet] = str(address + 1) if address + 1 in net else str(net.network_address)
    return f"{address}/{net.prefixlen}"


def check_requested(requested: str, subnet: str, gateway: str, network: str):
    """The address asked for with --ip/--ip6, if it can be a container's in subnet."""
    net = ipaddress.ip_network(subnet)
    where = "--ip6" if net.version == 6 else "--ip"
    address = parse_address(requested, where)
    if address not in net or not _assignable(address, net):
        raise ConfigError(f"address {address} is not in network {network}'s subnet {net}", where=where)
    if str(address) == gateway:
        raise ConfigError(f"address {address} is network {network}'s gateway", where=where)
    return address


def _search(net, start, taken):
    """The first assignable free address from start on, wrapping once round the subnet."""
    first, last = int(net.network_address), int(net.broadcast_address)
    size = last - first + 1
    offset = int(start) - first
    limit = min(size, len(taken) + 3)       # beyond that many tries a free one must be found
    for step in range(size if size <= 65536 else limit + 65536):
        candidate = ipaddress.Address(net.version, first + (offset + step) % size)
        if candidate not in taken and _assignable(candidate, net):
            return candidate
    return None


# -- host ports ----------------------------------------------------------------------

def port_conflicts(all_leases: dict[str, dict], wanted: list[dict], me: str) -> str | None:
    """A message if one of wanted's host ports is published already by another container
    (all_leases: network name -> leases data)."""
    # Indexed by (protocol, port): ranges of thousands of ports on both sides would be
    # millions of pairs compared one by one.
    published: dict[tuple, list] = {}
    for network, data in all_leases.items():
        for holder, lease in data["leases"].items():
            if holder == me:
                continue
            for theirs in lease.get("ports") or ():
                published.setdefault((theirs["protocol"], theirs["host_port"]), []).append(
                    (theirs, holder, network))
    for mine in wanted:
        for theirs, holder, network in published.get((mine["protocol"], mine["host_port"]), ()):
            if _same_host_port(mine, theirs):
                return (f"host port {_describe(mine)} is already published by container "
                        f"{holder} (network {network})")
    return None


def _same_host_port(a: dict, b: dict) -> bool:
    if a["protocol"] != b["protocol"] or a["host_port"] != b["host_port"]:
        return False
    return not a.get("host_ip") or not b.get("host_ip") or a["host_ip"] == b["host_ip"]


def _describe(port: dict) -> str:
    host = f"{port['host_ip']}:" if port.get("host_ip") else ""
    return f"{host}{port['host_port']}/{port['protocol']}"


def check_host_port_free(port: dict) -> None:
    """Refuse a host port a program on the host listens on: DNAT would take its traffic."""
    import _socket as socket           # the C module: `socket` costs 11 ms to import here
    host_ip = port.get("host_ip") or ""
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if port["protocol"] == "udp" else socket.SOCK_STREAM
    probe = socket.socket(family, kind)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port["host_port"]))
        except OSError as err:
            if err.errno == 98:        # EADDRINUSE
                raise HutchError(f"host port {_describe(port)} is in use by a program on the host",
                                 where="-p") from None
            if err.errno == 99:        # EADDRNOTAVAIL
                raise ConfigError(f"host address {host_ip} of -p {_describe(port)} is not an address "
                                  "of this host", where="-p") from None
            raise
    finally:
        probe.close()
