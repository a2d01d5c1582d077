"""A small, fast flag parser with runc's (urfave/cli) conventions.

Accepts `--name value`, `--name=value`, `-name value` and short aliases, boolean
flags (`--detach`, `--detach=false`), repeated flags collected in lists, and
`--` to end the flags.  argparse costs several milliseconds to import and
build; the OCI verbs sit on the container-start path.
"""

from __future__ import annotations

from hutch.record import dataclass

from hutch.errors import ConfigError


@dataclass(frozen=True)
class Flag:
    name: str                      # canonical, without dashes: "bundle"
    aliases: tuple[str, ...] = ()  # e.g. ("b",)
    value: bool = False            # takes a value
    repeat: bool = False           # may be given many times -> list
    default: object = None


def parse(argv: list[str], flags: list[Flag], interspersed: bool = False) -> tuple[dict, list[str]]:
    """Parse argv; stop at the first positional unless interspersed."""
    by_name = {}
    for flag in flags:
        for n in (flag.name, *flag.aliases):
            by_name[n] = flag
    opts = {f.name: ([] if f.repeat else f.default) for f in flags}
    positionals: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            positionals.extend(argv[i + 1:])
            break
        if not arg.startswith("-") or arg == "-":
            positionals.append(arg)
            if not interspersed:
                positionals.extend(argv[i + 1:])
                break
            i += 1
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        flag = by_name.get(name)
        if flag is None:
            raise ConfigError(f"flag provided but not defined: {arg.split('=')[0]}", where="command line")
        if flag.value:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise ConfigError(f"flag needs an argument: {arg}", where="command line")
                value = argv[i]
            if flag.repeat:
                opts[flag.name].append(value)
            else:
                opts[flag.name] = value
        else:
            opts[flag.name] = value.lower() not in ("false", "0") if eq else True
        i += 1
    return opts, positionals


def int_flag(opts: dict, name: str, default: int = 0) -> int:
    value = opts.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"invalid value {value!r}: expected an integer", where=f"--{name}") from None
