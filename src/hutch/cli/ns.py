"""`hutch ns ls|enter|persist|unpersist`: lsns and nsenter equivalents."""

from __future__ import annotations

import sys

from hutch.errors import ConfigError

USAGE = """usage: hutch ns ls [-t TYPE] [-p PID] [-J|--json] [-T|--tree[=owner|parent|process]|-l]
                   [-o COLUMNS] [--output-all] [-n] [-W] [--root RUNTIME_ROOT]
       hutch ns enter (-t PID | CONTAINER) [options] [-- CMD [ARGS...]]   (ns enter --help)
       hutch ns persist PID TYPE PATH     bind-mount a namespace onto PATH
       hutch ns unpersist PATH            unmount PATH and remove it
"""


def main(command: str, argv: list[str], g) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if argv else 1
    sub, rest = argv[0], argv[1:]
    if sub in ("ls", "list"):
        return ls(rest, g)
    if sub == "enter":
        from hutch.tools import nsenter
        return nsenter.main(rest, g.root)
    if sub == "persist":
        return persist(rest)
    if sub == "unpersist":
        return unpersist(rest)
    raise ConfigError(f"unknown subcommand {sub!r} (ls, enter, persist, unpersist)", where="ns")


class _Parser:
    """argparse that reports errors as one HutchError line instead of exiting."""

    @staticmethod
    def make():
        import argparse

        class Parser(argparse.ArgumentParser):
            def error(self, message):
                raise ConfigError(message, where="ns ls")

        return Parser


def ls(argv: list[str], g) -> int:
    from hutch.ns.info import list_namespaces
    from hutch.tools import lsns
    parser = _Parser.make()(prog="hutch ns ls", add_help=True)
    parser.add_argument("-t", "--type", action="append", dest="types")
    parser.add_argument("-p", "--task", "--pid", type=int, dest="pid")
    parser.add_argument("-J", "--json", action="store_true")
    parser.add_argument("-T", "--tree", nargs="?", const="owner", choices=lsns.TREES)
    parser.add_argument("-l", "--list", action="store_true", help="no tree at all")
    parser.add_argument("-o", "--output")
    parser.add_argument("--output-all", action="store_true")
    parser.add_argument("-n", "--noheadings", action="store_true")
    parser.add_argument("-W", "--nowrap", action="store_true")
    parser.add_argument("-u", "--notruncate", action="store_true")
    parser.add_argument("-H", "--list-columns", action="store_true")
    parser.add_argument("--root", default=None, help="hutch runtime root (CONTAINER column)")
    args = parser.parse_args(argv)
    if args.list and args.tree:
        raise ConfigError("--list and --tree are mutually exclusive", where="ns ls")
    # As lsns: without --tree or --list, rows nest by process parentage.
    tree = None if args.list else (args.tree or "process")
    if args.list_columns:
        print(lsns.columns_help(), end="")
        return 0
    columns = (list(lsns.COLUMNS) if args.output_all else
               lsns.parse_columns(args.output, lsns.default_columns(args.types)))
    need = set(columns)
    owners = None
    if "CONTAINER" in need:
        from hutch.tools.containers import container_namespaces
        owners = container_namespaces(args.root or g.root)
    rows = list_namespaces(
        args.types, args.pid, owners,
        related=tree in ("owner", "parent") or bool(need & {"PNS", "ONS"}),
        netnsid="NETNSID" in need, commands="COMMAND" in need)
    if args.json:
        sys.stdout.write(lsns.to_json(rows, columns, tree))
    else:
        sys.stdout.write(lsns.to_table(rows, columns, tree, headings=not args.noheadings,
                                       nsfs_separator=","))
    return 0


def persist(argv: list[str]) -> int:
    from hutch.ns.pin import persist as do_persist
    if len(argv) != 3:
        raise ConfigError("usage: hutch ns persist PID TYPE PATH", where="ns persist")
    try:
        pid = int(argv[0])
    except ValueError:
        raise ConfigError(f"invalid pid {argv[0]!r}", where="ns persist") from None
    do_persist(pid, argv[1], argv[2])
    return 0


def unpersist(argv: list[str]) -> int:
    from hutch.ns.pin import unpersist as do_unpersist
    if len(argv) != 1:
        raise ConfigError("usage: hutch ns unpersist PATH", where="ns unpersist")
    do_unpersist(argv[0])
    return 0
