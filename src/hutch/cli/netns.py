"""`hutch netns add|del|list|exec|identify|pids|attach|set`: as `ip netns`."""

from __future__ import annotations

import sys

from hutch.errors import ConfigError

USAGE = """usage: hutch netns list
       hutch netns add NAME
       hutch netns attach NAME PID
       hutch netns set NAME NSID          (NSID: a number or "auto")
       hutch netns del|delete NAME
       hutch netns identify [PID]
       hutch netns pids NAME
       hutch netns exec NAME CMD [ARGS...]
Named network namespaces live in /run/netns, shared with `ip netns`.
"""


def _args(argv: list[str], count: int, usage: str, optional: int = 0) -> list[str]:
    if not count <= len(argv) <= count + optional:
        raise ConfigError(f"usage: hutch netns {usage}", where="netns")
    return argv


def _pid(text: str) -> int:
    try:
        pid = int(text, 10)
    except ValueError:
        raise ConfigError(f"invalid pid {text!r}", where="pid") from None
    if pid <= 0:
        raise ConfigError(f"invalid pid {text!r}", where="pid")
    return pid


def main(command: str, argv: list[str], g) -> int:
    from hutch.tools import netns
    if argv and argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    sub, rest = (argv[0], argv[1:]) if argv else ("list", [])
    if sub in ("list", "ls", "show"):
        _args(rest, 0, "list")
        sys.stdout.write(netns.format_list(netns.list_netns()))
    elif sub == "add":
        (name,) = _args(rest, 1, "add NAME")
        netns.add(name)
    elif sub == "attach":
        name, pid = _args(rest, 2, "attach NAME PID")
        netns.add(name, pid=_pid(pid))
    elif sub in ("del", "delete"):
        (name,) = _args(rest, 1, "del NAME")
        netns.delete(name)
    elif sub == "set":
        name, nsid = _args(rest, 2, "set NAME NSID")
        netns.set_id(name, nsid)
    elif sub == "identify":
        pid = _args(rest, 0, "identify [PID]", optional=1)
        sys.stdout.write("".join(f"{n}\n" for n in netns.identify(_pid(pid[0]) if pid else None)))
    elif sub == "pids":
        (name,) = _args(rest, 1, "pids NAME")
        sys.stdout.write("".join(f"{p}\n" for p in netns.pids(name)))
    elif sub == "exec":
        if len(rest) < 2:
            raise ConfigError("usage: hutch netns exec NAME CMD [ARGS...]", where="netns")
        return netns.exec_in(rest[0], rest[1:])
    else:
        raise ConfigError(f"unknown subcommand {sub!r} (see hutch netns --help)", where="netns")
    return 0
