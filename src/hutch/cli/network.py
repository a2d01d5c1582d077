"""`hutch network create|ls|inspect|rm`: bridge networks, as `podman network`."""

from __future__ import annotations

import sys

from hutch.cli.flags import Flag, int_flag, parse
from hutch.errors import ConfigError

USAGE = """usage: hutch network create [--subnet CIDR] [--gateway IP] [--internal]
                            [--ipv6 --subnet6 CIDR [--gateway6 IP]] [--mtu N] [--bridge IF] NAME
       hutch network ls [--format json]
       hutch network inspect NAME...
       hutch network rm NAME...
A network is a Linux bridge with a private subnet, NAT to the outside and published
ports (hutch run --network NAME -p 8080:80).  The default network hutch0
(10.66.0.0/16) is made on first use.  Definitions and leases are kept under the
state root (--root); the bridge exists while a container uses the network.
"""

CREATE_FLAGS = [Flag("subnet", value=True), Flag("gateway", value=True), Flag("internal"),
                Flag("ipv6"), Flag("subnet6", value=True), Flag("gateway6", value=True),
                Flag("mtu", value=True), Flag("bridge", value=True), Flag("help", ("h",))]


def main(command: str, argv: list[str], g) -> int:
    from hutch.net import network
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    sub, rest = argv[0], argv[1:]
    if sub == "create":
        opts, names = parse(rest, CREATE_FLAGS, interspersed=True)
        if len(names) != 1:
            raise ConfigError("usage: hutch network create [OPTIONS] NAME", where="network create")
        if opts["ipv6"] and not opts["subnet6"]:
            raise ConfigError("--ipv6 needs --subnet6 CIDR", where="--ipv6")
        made = network.create(g.root, names[0], subnet=opts["subnet"], gateway=opts["gateway"],
                              internal=bool(opts["internal"]), subnet6=opts["subnet6"],
                              gateway6=opts["gateway6"], bridge=opts["bridge"],
                              mtu=int_flag(opts, "mtu") or None)
        print(made.name)
    elif sub in ("ls", "list"):
        opts, extra = parse(rest, [Flag("format", value=True, default="table")])
        if extra:
            raise ConfigError(f"unexpected argument {extra[0]!r}", where="network ls")
        _print_list(network.list_all(g.root), g.root, opts["format"])
    elif sub == "inspect":
        if not rest:
            raise ConfigError("usage: hutch network inspect NAME...", where="network inspect")
        from hutch import fastjson
        print(fastjson.dumps([network.inspect(g.root, name) for name in rest]))
    elif sub in ("rm", "remove"):
        if not rest:
            raise ConfigError("usage: hutch network rm NAME...", where="network rm")
        for name in rest:
            network.remove(g.root, name)
            print(name)
    else:
        raise ConfigError(f"unknown subcommand {sub!r} (see hutch network --help)", where="network")
    return 0


def _print_list(networks, root: str, fmt: str) -> None:
    from hutch.net import network
    if fmt == "json":
        from hutch import fastjson
        print(fastjson.dumps([network.inspect(root, n.name) for n in networks]))
        return
    if fmt != "table":
        raise ConfigError(f"unknown format {fmt!r}: use table or json", where="--format")
    rows = [("NAME", "BRIDGE", "SUBNETS", "CONTAINERS")]
    for n in networks:
        rows.append((n.name, n.bridge, ",".join(s.subnet for s in n.subnets),
                     str(len(network.inspect(root, n.name)["containers"]))))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[3] + "\n")
