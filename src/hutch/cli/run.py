"""`hutch run`: run a command in a new container (docker-like), or, given a bundle,
the OCI `run` verb as runc has it."""

from __future__ import annotations

import os
import sys

from hutch.cli.flags import Flag, parse
from hutch.errors import EXIT_RUNTIME_ERROR, ConfigError

HELP = """usage: hutch run [OPTIONS] [--rootfs DIR] [--] CMD [ARGS...]
       hutch run [--bundle DIR] [--detach] ... ID        (OCI run, as runc)

Run CMD in a new container: new mount, UTS, IPC, PID, network and cgroup namespaces.
Without --rootfs the container sees the host's system directories read-only, with
its own /tmp, /run, /proc, /dev and /sys.

namespaces:
  --userns                  new user namespace (root inside -> host ids 100000+)
  --uidmap C:H:N, --gidmap C:H:N   id maps for --userns (repeatable)
  --share pid,net,ipc,uts,mount,cgroup   keep the host's namespaces of these types
  --join-ns TYPE:PATH       join an existing namespace (e.g. net:/run/netns/x)
  --time-offset CLOCK=SECS  new time namespace (monotonic, boottime)
network:
  --network none|host|container:ID|NAME|cni:NAME   (also --net; repeat for eth1, eth2...)
                            none (default): own netns, lo up; host: the host's;
                            container:ID: that container's; NAME: a bridge network
                            (hutch0 is made on first use; see hutch network --help)
  -p, --publish [HOSTIP:]HOSTPORT:CTRPORT[/tcp|udp]   publish a port (ranges: 8000-8001:80-81)
  --ip ADDR, --ip6 ADDR     the container's address in the first network
filesystem:
  --rootfs DIR              root filesystem (pivot_root into it)
  -v, --volume SRC:DST[:ro] bind mount          --tmpfs DST   fresh tmpfs
  --read-only               read-only root      --propagation private|slave|shared
process:
  -e, --env KEY=VAL   -w, --workdir DIR   -u, --user UID[:GID]   --group-add GID
  --ulimit NAME=SOFT[:HARD]   --cap-add CAP   --cap-drop CAP|ALL   --privileged
  --no-new-privileges   -t, --tty   -i, --interactive   --no-init (exec CMD as PID 1)
  --hostname NAME   --domainname NAME   --name ID   --sysctl KEY=VALUE
resources:
  --memory SIZE   --memory-swap SIZE   --cpus N   --cpu-shares N   --pids-limit N
  --cpuset-cpus LIST

Exit status: CMD's; 128+N if killed by signal N; 125 hutch error; 126 not
executable; 127 not found.
"""

FLAGS = [
    Flag("rootfs", value=True), Flag("name", value=True), Flag("hostname", value=True),
    Flag("domainname", value=True), Flag("userns"), Flag("uidmap", value=True, repeat=True),
    Flag("gidmap", value=True, repeat=True), Flag("share", value=True, repeat=True),
    Flag("join-ns", value=True, repeat=True), Flag("time-offset", value=True, repeat=True),
    Flag("propagation", value=True, default="private"), Flag("volume", ("v",), value=True, repeat=True),
    Flag("tmpfs", value=True, repeat=True), Flag("read-only"), Flag("init"), Flag("no-init"),
    Flag("env", ("e",), value=True, repeat=True), Flag("workdir", ("w",), value=True),
    Flag("user", ("u",), value=True), Flag("group-add", value=True, repeat=True),
    Flag("ulimit", value=True, repeat=True), Flag("cap-add", value=True, repeat=True),
    Flag("cap-drop", value=True, repeat=True), Flag("privileged"), Flag("no-new-privileges"),
    Flag("tty", ("t",)), Flag("interactive", ("i",)), Flag("it"), Flag("net", ("network",), value=True, repeat=True),
    Flag("publish", ("p",), value=True, repeat=True), Flag("ip", value=True), Flag("ip6", value=True),
    Flag("sysctl", value=True, repeat=True),
    Flag("memory", ("m",), value=True), Flag("memory-swap", value=True), Flag("cpus", value=True),
    Flag("cpu-shares", value=True), Flag("pids-limit", value=True), Flag("cpuset-cpus", value=True),
    Flag("help", ("h",)),
]
RESOURCE_FLAGS = ("memory", "memory-swap", "cpus", "cpu-shares", "pids-limit", "cpuset-cpus")


# Flags only OCI `run` (runc's) has: any of them means an OCI run.  The value flags
# among them take `--flag VALUE`, `--flag=VALUE` and the single-dash spellings.
OCI_VALUE_FLAGS = frozenset({"bundle", "b", "console-socket", "pid-file", "preserve-fds"})
OCI_BOOL_FLAGS = frozenset({"detach", "d", "no-pivot", "no-new-keyring", "keep", "no-subreaper"})
_RUN_VALUE_FLAGS = frozenset(n for f in FLAGS if f.value for n in (f.name, *f.aliases))


def is_oci_run(argv: list[str]) -> bool:
    """runc's `run [--bundle DIR] ID`, as opposed to `hutch run [OPTIONS] -- CMD`."""
    if "--" in argv:
        return False
    positionals = 0
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            positionals += 1
        else:
            name, eq, _value = arg.lstrip("-").partition("=")
            if name in OCI_VALUE_FLAGS or name in OCI_BOOL_FLAGS:
                return True
            if name in _RUN_VALUE_FLAGS and not eq:
                i += 1   # the flag's value is not a positional argument
        i += 1
    return positionals == 1 and os.path.exists("config.json")


def main(command: str, argv: list[str], g) -> int:
    if is_oci_run(argv):
        from hutch.cli.oci import cmd_run
        from hutch.errors import HutchError
        try:
            return cmd_run(argv, g)
        except HutchError as err:
            err.oci_verb = True  # exit as runc does (1), not as `hutch run -- CMD` (125)
            raise
    opts, args = parse(argv, FLAGS)
    if opts["help"]:
        print(HELP, end="")
        return 0
    options = to_run_options(opts, args)
    if os.geteuid() != 0 and not options.userns:
        raise ConfigError("hutch run needs root (rootless containers need --userns)",
                          exit_code=EXIT_RUNTIME_ERROR)
    from hutch.engine.run import run_container
    return run_container(options, root=g.root, systemd_cgroup=g.systemd_cgroup)


def to_run_options(opts: dict, args: list[str]):
    from hutch.engine.runspec import RunOptions
    resources = {}
    if any(opts[f] for f in RESOURCE_FLAGS):
        from hutch.cgroups import resources_from_options
        resources = resources_from_options(**{f.replace("-", "_"): opts[f] for f in RESOURCE_FLAGS if opts[f]})
    tty = bool(opts["tty"] or opts["it"])
    return RunOptions(
        args=args, rootfs=opts["rootfs"], name=opts["name"], hostname=opts["hostname"],
        domainname=opts["domainname"], userns=bool(opts["userns"]), uidmap=opts["uidmap"],
        gidmap=opts["gidmap"], share=opts["share"], join_ns=opts["join-ns"],
        time_offset=opts["time-offset"], propagation=opts["propagation"], volumes=opts["volume"],
        tmpfs=opts["tmpfs"], read_only=bool(opts["read-only"]), init=not opts["no-init"],
        env=opts["env"], workdir=opts["workdir"], user=opts["user"], group_add=opts["group-add"],
        ulimits=opts["ulimit"], cap_add=opts["cap-add"], cap_drop=opts["cap-drop"],
        privileged=bool(opts["privileged"]), no_new_privileges=bool(opts["no-new-privileges"]),
        tty=tty, interactive=bool(opts["interactive"] or opts["it"]), net=(opts["net"] or ["none"])[0],
        networks=opts["net"][1:], publish=opts["publish"], ip=opts["ip"], ip6=opts["ip6"],
        resources=resources, sysctl=opts["sysctl"])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main("run", sys.argv[1:], None))
