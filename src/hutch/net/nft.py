"""hutch's nftables table, `inet hutch`: masquerade, published ports, isolation.

Everything hutch adds lives in its own table and nowhere else; other tables (the
host's firewall, podman's, iptables-nft's) are never read or changed.  The rules
are fixed and few; what changes per network and per container is data in sets
and maps, so adding a container is adding map elements (one atomic batch), and
taking it away is deleting exactly those elements::

    prerouting, output (nat)   fib daddr type local -> jump ports
    ports                      dnat to the map entry for (daddr, proto, port), else
                               for (proto, port) on any host address
    postrouting (nat)          127.0.0.0/8 -> a bridge: masquerade (published ports
                               reached through 127.0.0.1; needs route_localnet)
                               dnat'ed, from a network's subnet into a bridge:
                               masquerade (hairpin: a container reaching a
                               published port, its own included; with br_netfilter
                               loaded the packet stays bridged and has no iifname,
                               hence the match on the source subnet)
                               a network's subnet leaving its bridges: masquerade
    guard (raw prerouting)     from a bridge to or from 127.0.0.0/8: drop -- route_localnet
                               on the bridges would otherwise let a container reach the
                               host's loopback-only services (CVE-2020-8558, kube-proxy);
                               replies to 127.0.0.1's published ports come addressed to
                               the gateway and are de-NATed only later, at conntrack
    forward (filter)           dnat'ed: accept (published ports are public);
                               from a bridge: its network's chain (isolation)
    net-<bridge>               to its own bridge: accept; to another hutch bridge:
                               drop; internal networks: drop everything else

The table is shared by every state root on the host (a test's private root too), so
it is set up idempotently -- `add` of what exists is no error and the fixed rules are
rewritten whole in one transaction -- and deleted only when no bridge is left in it,
under a host-wide lock.
"""

from __future__ import annotations

import os

from hutch.errors import HutchError

TABLE = "inet hutch"
LOCK_PATH = "/run/hutch-nft.lock"

_BASE = f"""\
add table {TABLE}
add set {TABLE} bridges {{ type ifname; }}
add set {TABLE} masq4 {{ type ipv4_addr; flags interval; }}
add set {TABLE} masq6 {{ type ipv6_addr; flags interval; }}
add set {TABLE} nets4 {{ type ipv4_addr; flags interval; }}
add set {TABLE} nets6 {{ type ipv6_addr; flags interval; }}
add map {TABLE} isolation {{ type ifname : verdict; }}
add map {TABLE} dnat4 {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
add map {TABLE} dnat4any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
add map {TABLE} dnat6 {{ type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }}
add map {TABLE} dnat6any {{ type inet_proto . inet_service : ipv6_addr . inet_service; }}
add chain {TABLE} ports
add chain {TABLE} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain {TABLE} output {{ type nat hook output priority -100; policy accept; }}
add chain {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
add chain {TABLE} forward {{ type filter hook forward priority filter; policy accept; }}
add chain {TABLE} guard {{ type filter hook prerouting priority raw; policy accept; }}
flush chain {TABLE} ports
flush chain {TABLE} prerouting
flush chain {TABLE} output
flush chain {TABLE} postrouting
flush chain {TABLE} forward
flush chain {TABLE} guard
add rule {TABLE} prerouting fib daddr type local jump ports
add rule {TABLE} output fib daddr type local jump ports
add rule {TABLE} ports dnat ip to ip daddr . meta l4proto . th dport map @dnat4
add rule {TABLE} ports dnat ip to meta l4proto . th dport map @dnat4any
add rule {TABLE} ports dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6
add rule {TABLE} ports dnat ip6 to meta l4proto . th dport map @dnat6any
add rule {TABLE} postrouting ip saddr 127.0.0.0/8 oifname @bridges masquerade
add rule {TABLE} postrouting ct status dnat oifname @bridges ip saddr @nets4 masquerade
add rule {TABLE} postrouting ct status dnat oifname @bridges ip6 saddr @nets6 masquerade
add rule {TABLE} postrouting ip saddr @masq4 oifname != @bridges masquerade
add rule {TABLE} postrouting ip6 saddr @masq6 oifname != @bridges masquerade
add rule {TABLE} guard iifname @bridges ip daddr 127.0.0.0/8 drop
add rule {TABLE} guard iifname @bridges ip saddr 127.0.0.0/8 drop
add rule {TABLE} forward ct status dnat accept
add rule {TABLE} forward iifname vmap @isolation
"""


_context = None


def _shared_context():
    """One libnftables context per process, never freed: nft_ctx_free spends about 12 ms
    of CPU tearing down its caches once a command ran (measured here, libnftables 1.0.6),
    more than the whole batch; the process's exit frees it for nothing."""
    global _context
    if _context is None:
        from hutch.syscall.nftables import Nft
        _context = Nft(json=False)
    return _context


class Firewall:
    """hutch's table through the process's libnftables context; every method is one
    atomic batch."""

    def __init__(self):
        self._nft = _shared_context()

    def close(self) -> None:
        pass

    def __enter__(self) -> "Firewall":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, batch: str, what: str) -> str:
        status, output, errors = self._nft.run(batch)
        if status != 0:
            raise HutchError(f"cannot {what}: {_first_error(errors)}", where="nftables")
        return output

    def try_run(self, batch: str) -> bool:
        return self._nft.run(batch)[0] == 0

    # -- networks ------------------------------------------------------------------

    def add_network(self, bridge: str, subnets: list[str], internal: bool) -> None:
        """The table (made or refreshed), then the network's chain, its bridge in the
        set, its subnets in the masquerade sets unless internal."""
        chain = _chain(bridge)
        lines = [_BASE,
                 f"add chain {TABLE} {chain}", f"flush chain {TABLE} {chain}",
                 f'add rule {TABLE} {chain} oifname "{bridge}" accept',
                 f"add rule {TABLE} {chain} oifname @bridges drop"]
        if internal:
            lines.append(f"add rule {TABLE} {chain} drop")
        lines += [f'add element {TABLE} bridges {{ "{bridge}" }}',
                  f'add element {TABLE} isolation {{ "{bridge}" : jump {chain} }}']
        for subnet in subnets:
            lines.append(f"add element {TABLE} {_nets_set(subnet)} {{ {subnet} }}")
            if not internal:
                lines.append(f"add element {TABLE} {_masq_set(subnet)} {{ {subnet} }}")
        self.run("\n".join(lines) + "\n", f"set up the firewall for bridge {bridge}")

    def remove_network(self, bridge: str, subnets: list[str]) -> None:
        """Take the network out; idempotent (what is gone already is skipped).  The
        table goes too when no bridge is left in it."""
        if not self.try_run(f"list table {TABLE}\n"):
            return
        chain = _chain(bridge)
        self._delete_element("bridges", f'"{bridge}"')
        self._delete_element("isolation", f'"{bridge}" : jump {chain}')
        for subnet in subnets:
            self._delete_element(_masq_set(subnet), subnet)
            self._delete_element(_nets_set(subnet), subnet)
        self.try_run(f"delete chain {TABLE} {chain}\n")
        if self.bridges() == []:
            self.try_run(f"delete table {TABLE}\n")

    def bridges(self) -> list[str] | None:
        """The bridges in the table's set; None without the table."""
        status, output, _ = self._nft.run(f"list set {TABLE} bridges\n")
        if status != 0:
            return None
        _, _, rest = output.partition("elements = {")
        body = rest.partition("}")[0]
        return [name.strip().strip('"') for name in body.split(",") if name.strip()]

    # -- published ports -----------------------------------------------------------

    def add_ports(self, elements: list[tuple[str, str]]) -> None:
        """elements: (map name, "key : value") pairs, all added in one batch."""
        if not elements:
            return
        batch = "".join(f"add element {TABLE} {m} {{ {e} }}\n" for m, e in elements)
        self.run(batch, "publish ports")

    def remove_ports(self, elements: list[tuple[str, str]]) -> None:
        for map_name, element in elements:
            self._delete_element(map_name, element)

    def _delete_element(self, set_name: str, element: str) -> None:
        # nft 1.0.6 has no "destroy": add-then-delete in one batch is a delete that
        # succeeds whether the element was there or not, and fails (changing nothing)
        # when the key holds another value -- then it is not ours to delete.
        self.try_run(f"add element {TABLE} {set_name} {{ {element} }}\n"
                     f"delete element {TABLE} {set_name} {{ {element} }}\n")


def port_elements(ports: list[dict], ip4: str | None, ip6: str | None) -> list[tuple[str, str]]:
    """The map elements for a container's published ports: ports are
    {"host_ip", "host_port", "container_port", "protocol"} dicts (net.ports)."""
    elements = []
    for port in ports:
        proto, host_ip = port["protocol"], port.get("host_ip") or ""
        key = f"{proto} . {port['host_port']}"
        for family, address in ((4, ip4), (6, ip6)):
            if address is None or (host_ip and (":" in host_ip) != (family == 6)):
                continue
            value = f"{address} . {port['container_port']}"
            if host_ip:
                elements.append((f"dnat{family}", f"{host_ip} . {key} : {value}"))
            else:
                elements.append((f"dnat{family}any", f"{key} : {value}"))
    return elements


def _chain(bridge: str) -> str:
    return f"net-{bridge}"


def _masq_set(subnet: str) -> str:
    return "masq6" if ":" in subnet else "masq4"


def _nets_set(subnet: str) -> str:
    return "nets6" if ":" in subnet else "nets4"


def _first_error(errors: str) -> str:
    for line in errors.splitlines():
        if line.startswith("Error:"):
            return line.removeprefix("Error:").strip()
    return errors.strip().splitlines()[0] if errors.strip() else "unknown error"


class host_lock:
    """The host-wide lock around changes to the shared table (several state roots)."""

    def __enter__(self):
        import fcntl
        self._fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self._fd)
