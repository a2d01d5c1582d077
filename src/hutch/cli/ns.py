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


# `ns ls` options, as lsns's getopt_long takes them ("JlPp:o:nruhVt:T::WQ:H"): short
# options cluster (-Jl), a value is glued or the next word (-tnet, -t net), -T's
# optional value only glued (-Towner, --tree=owner: or the next word if it names a
# tree, as hutch has always taken it); long options by any unique prefix.  Parsed
# by hand: argparse costs more to import and build than the whole listing.
_LS_FLAGS = {"J": "json", "l": "list", "n": "noheadings", "W": "nowrap", "u": "notruncate",
             "H": "list_columns", "h": "help"}
_LS_VALUES = {"t": "types", "p": "pid", "o": "output"}
_LS_LONG = {"json": "J", "list": "l", "noheadings": "n", "nowrap": "W", "notruncate": "u",
            "list-columns": "H", "help": "h", "type": "t", "task": "p", "pid": "p",
            "output": "o", "tree": "T", "output-all": "output_all", "root": "root"}


def _long_option(name: str) -> str:
    if name in _LS_LONG:
        return _LS_LONG[name]
    matches = {v for k, v in _LS_LONG.items() if k.startswith(name)} if name else set()
    if len(matches) != 1:
        what = "ambiguous" if matches else "unrecognized"
        raise ConfigError(f"{what} option --{name}", where="ns ls")
    return matches.pop()


def parse_ls_args(argv: list[str]) -> dict:
    """The options of `ns ls` (see above); ConfigError naming the option otherwise."""
    from hutch.tools.lsns import TREES
    opts: dict = {"types": [], "pid": None, "output": None, "tree": None, "output_all": False,
                  "root": None, **{name: False for name in _LS_FLAGS.values()}}

    def take(key: str, value: str, option: str) -> None:
        if key == "types":
            opts["types"].append(value)
        elif key == "pid":
            try:
                opts["pid"] = int(value, 10)
            except ValueError:
                raise ConfigError(f"invalid PID argument {value!r}", where=option) from None
        elif key == "tree":
            if value not in TREES:
                raise ConfigError(f"unknown tree type: {value} (use {', '.join(TREES)})",
                                  where=option)
            opts["tree"] = value
        else:
            opts[key] = value

    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            letter = _long_option(name)
            option = f"--{name}"
            if letter in _LS_FLAGS or letter == "output_all":
                if eq:
                    raise ConfigError("takes no value", where=option)
                opts[_LS_FLAGS.get(letter, letter)] = True
            elif letter == "T":
                if not eq and i < len(argv) and argv[i] in TREES:
                    value, eq, i = argv[i], "=", i + 1
                take("tree", value if eq else "owner", option)
            else:
                if not eq:
                    if i >= len(argv):
                        raise ConfigError("needs a value", where=option)
                    value, i = argv[i], i + 1
                take(_LS_VALUES.get(letter, letter), value, option)
        elif arg.startswith("-") and len(arg) > 1 and arg != "--":
            j = 1
            while j < len(arg):
                letter, rest = arg[j], arg[j + 1:]
                j += 1
                if letter in _LS_FLAGS:
                    opts[_LS_FLAGS[letter]] = True
                elif letter == "T":
                    if not rest and i < len(argv) and argv[i] in TREES:
                        rest, i = argv[i], i + 1
                    take("tree", rest or "owner", "-T")
                    break
                elif letter in _LS_VALUES:
                    if not rest:
                        if i >= len(argv):
                            raise ConfigError("needs a value", where=f"-{letter}")
                        rest, i = argv[i], i + 1
                    take(_LS_VALUES[letter], rest, f"-{letter}")
                    break
                else:
                    raise ConfigError(f"unknown option -{letter}", where="ns ls")
        else:
            raise ConfigError(f"unexpected argument {arg!r}", where="ns ls")
    return opts


def ls(argv: list[str], g) -> int:
    from hutch.ns.info import list_namespaces
    from hutch.tools import lsns
    args = parse_ls_args(argv)
    if args["help"]:
        print(USAGE, end="")
        return 0
    if args["list"] and args["tree"]:
        raise ConfigError("--list and --tree are mutually exclusive", where="ns ls")
    if args["list_columns"]:
        print(lsns.columns_help(), end="")
        return 0
    types = args["types"] or None
    columns = (list(lsns.COLUMNS) if args["output_all"] else
               lsns.parse_columns(args["output"], lsns.default_columns(types)))
    # As lsns: the process tree is the default unless --list or --output-all is given.
    tree = args["tree"] or (None if args["list"] or args["output_all"] else "process")
    owners = None
    if "CONTAINER" in columns:
        from hutch.tools.containers import container_namespaces
        owners = container_namespaces(args["root"] or g.root)
    rows = list_namespaces(types, args["pid"], owners, **lsns.list_options(columns, tree))
    if args["json"]:
        sys.stdout.write(lsns.to_json(rows, columns, tree))
    else:
        sys.stdout.write(lsns.to_table(rows, columns, tree, headings=not args["noheadings"],
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
