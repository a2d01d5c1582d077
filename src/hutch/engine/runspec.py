"""`hutch run` options -> an OCI config, so run, create and exec share one launch path.

Pure: building the config touches nothing on the system (except reading the
host environment for `-e KEY` without a value), so it is unit tested without root.
"""

from __future__ import annotations

import os
from hutch.record import dataclass, field

from hutch.errors import ConfigError
from hutch.oci.process import DEFAULT_PATH
from hutch.oci.state import OCI_VERSION
from hutch.syscall.constants import NAMESPACE_PROC_NAMES, RLIMITS

HOST_ROOT = "hutch:host"   # the built-in default root: host system dirs read-only
DEFAULT_ENV_PATH = "PATH=" + DEFAULT_PATH
SHAREABLE = ("pid", "network", "ipc", "uts", "cgroup")   # never mount: the root is built in it
# --share/--join-ns take OCI's type names, or the /proc/PID/ns ones (net, mnt) for them.
SHARE_ALIASES = {proc: oci for oci, proc in NAMESPACE_PROC_NAMES.items() if proc != oci}
OCI_MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                    "/sys/firmware", "/sys/devices/virtual/powercap"]
OCI_READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
RLIMIT_NAMES = {name.removeprefix("RLIMIT_").lower() for name in RLIMITS}   # --ulimit nofile=...


@dataclass
class RunOptions:
    """Everything `hutch run` accepts; the Python API takes the same fields."""
    args: list[str]
    rootfs: str | None = None
    name: str | None = None
    hostname: str | None = None
    domainname: str | None = None
    userns: bool = False
    uidmap: list[str] = field(default_factory=list)
    gidmap: list[str] = field(default_factory=list)
    share: list[str] = field(default_factory=list)
    join_ns: list[str] = field(default_factory=list)
    time_offset: list[str] = field(default_factory=list)
    propagation: str = "private"
    volumes: list[str] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    read_only: bool = False
    init: bool = True
    env: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    group_add: list[str] = field(default_factory=list)
    ulimits: list[str] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    no_new_privileges: bool = False
    tty: bool = False
    interactive: bool = False
    net: str = "none"             # none | host | container:ID | a network's name (or cni:NAME)
    networks: list[str] = field(default_factory=list)   # more networks: eth1, eth2, ...
    publish: list[str] = field(default_factory=list)    # -p [HOSTIP:]HOSTPORT:CTRPORT[/tcp|udp]
    ip: str | None = None          # the address in the first network
    ip6: str | None = None
    resources: dict = field(default_factory=dict)   # OCI linux.resources (from --memory etc.)
    sysctl: list[str] = field(default_factory=list)

    def container_id(self) -> str:
        return self.name or "run-" + os.urandom(6).hex()


def check_rootfs(o: RunOptions) -> None:
    if o.rootfs is not None and not os.path.isdir(o.rootfs):
        raise ConfigError(f"root filesystem {o.rootfs} does not exist or is not a directory",
                          where="--rootfs")


def build_spec(o: RunOptions, container_id: str) -> dict:
    if not o.args:
        raise ConfigError("no command given: hutch run [OPTIONS] -- CMD [ARGS...]", where="command")
    linux: dict = {
        "namespaces": _namespaces(o),
        "maskedPaths": [] if o.privileged else list(OCI_MASKED_PATHS),
        "readonlyPaths": [] if o.privileged else list(OCI_READONLY_PATHS),
        "rootfsPropagation": _propagation(o.propagation),
    }
    if o.userns:
        from hutch.ns.idmap import default_mapping, parse_mapping, to_oci
        uid = [parse_mapping(m, "--uidmap") for m in o.uidmap] or [default_mapping()]
        gid = [parse_mapping(m, "--gidmap") for m in o.gidmap] or ([*uid] if o.uidmap else [default_mapping()])
        linux["uidMappings"] = to_oci(uid)
        linux["gidMappings"] = to_oci(gid)
    elif o.uidmap or o.gidmap:
        raise ConfigError("id maps need a user namespace: add --userns", where="--uidmap")
    if o.time_offset:
        linux["timeOffsets"] = _time_offsets(o.time_offset)
    if o.resources:
        linux["resources"] = o.resources
        if o.privileged:
            # every device, as podman --privileged (the default is runc's short list)
            linux["resources"] = dict(o.resources, devices=[{"allow": True, "access": "rwm"}])
    if o.sysctl:
        linux["sysctl"] = dict(_key_value(s, "--sysctl") for s in o.sysctl)
    spec = {
        "ociVersion": OCI_VERSION,
        "process": _process(o),
        "root": {"path": os.path.abspath(o.rootfs) if o.rootfs else HOST_ROOT, "readonly": o.read_only},
        "hostname": o.hostname or (container_id[:63] if "uts" not in _shared(o) else None),
        "mounts": _mounts(o),
        "linux": linux,
        "annotations": {"org.hutch.run": "true", **_network_annotations(o)},
    }
    if o.domainname:
        spec["domainname"] = o.domainname
    if spec["hostname"] is None:
        del spec["hostname"]
    return spec


def _shared(o: RunOptions) -> set[str]:
    shared = set()
    for item in o.share:
        for name in item.split(","):
            name = SHARE_ALIASES.get(name.strip(), name.strip())
            if name not in SHAREABLE:
                raise ConfigError(f"cannot share {name!r}: choose from {', '.join(SHAREABLE)}", where="--share")
            shared.add(name)
    if o.net == "host":
        shared.add("network")
    return shared


def joined_networks(o: RunOptions) -> list[str]:
    """The bridge and CNI networks asked for, in order (eth0 first)."""
    modes = ("none", "host")
    if o.net == "host" and o.networks:
        raise ConfigError("--network host cannot be combined with other networks", where="--network")
    names = ([] if o.net in modes or o.net.startswith("container:") else [o.net]) + list(o.networks)
    for name in names:
        if name in modes or name.startswith("container:") or not name:
            raise ConfigError(f"--network {name or '(empty)'} cannot be combined with other networks",
                              where="--network")
    return names


def _network_annotations(o: RunOptions) -> dict:
    names = joined_networks(o)
    if o.net.startswith("container:") and (o.networks or o.publish):
        raise ConfigError("a container sharing another's network cannot join networks or publish ports",
                          where="--network")
    if not names:
        if o.publish:
            raise ConfigError("publishing ports needs a network: add --network NAME (hutch0 is the default)",
                              where="-p")
        if o.ip or o.ip6:
            raise ConfigError("--ip needs a network: add --network NAME", where="--ip")
        return {}
    from hutch.net.attach import annotations_for, parse_ports
    parse_ports(o.publish)              # bad -p fails here, before anything is made
    return annotations_for(names, o.publish, o.ip, o.ip6)


def _namespaces(o: RunOptions) -> list[dict]:
    shared = _shared(o)
    joined = {}
    for item in o.join_ns:
        ns_type, sep, path = item.partition(":")
        ns_type = SHARE_ALIASES.get(ns_type, ns_type)
        if not sep or not path or ns_type not in (*SHAREABLE, "user", "time"):
            if ns_type == "mount":
                raise ConfigError("cannot join a mount namespace: the container's root is built in a new one",
                                  where="--join-ns")
            raise ConfigError(f"invalid {item!r}: expected TYPE:PATH", where="--join-ns")
        joined[ns_type] = path
    wanted = ["mount"] + [t for t in SHAREABLE if t not in shared]
    if o.userns:
        wanted.append("user")
    if o.time_offset:
        wanted.append("time")
    out = [{"type": t} for t in wanted if t not in joined]
    out += [{"type": t, "path": p} for t, p in joined.items()]
    return out


def _propagation(value: str) -> str:
    value = value.lstrip("r")
    if value not in ("private", "slave", "shared"):
        raise ConfigError(f"invalid propagation {value!r}: use private, slave or shared", where="--propagation")
    return "r" + value


def _time_offsets(items: list[str]) -> dict:
    out = {}
    for item in items:
        clock, secs = _key_value(item, "--time-offset")
        if clock not in ("monotonic", "boottime"):
            raise ConfigError(f"unknown clock {clock!r}: use monotonic or boottime", where="--time-offset")
        try:
            out[clock] = {"secs": int(secs), "nanosecs": 0}
        except ValueError:
            raise ConfigError(f"invalid seconds {secs!r}", where="--time-offset") from None
    return out


def _key_value(text: str, where: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"invalid {text!r}: expected KEY=VALUE", where=where)
    return key, value


def _process(o: RunOptions) -> dict:
    from hutch.security.caps import CAPABILITIES, DEFAULT_CAPS, normalize, runtime_permitted_mask, to_names
    env = [DEFAULT_ENV_PATH] + (["TERM=xterm"] if o.tty else [])
    for item in o.env:
        if "=" not in item:
            if item not in os.environ:
                continue
            item = f"{item}={os.environ[item]}"
        key = item.split("=", 1)[0]
        env = [e for e in env if e.split("=", 1)[0] != key] + [item]
    if o.privileged:
        # Every capability hutch itself holds (root may lack some, e.g. CAP_SYS_RESOURCE in a VM).
        caps = to_names(runtime_permitted_mask())
    else:
        drop = {normalize(c) for c in o.cap_drop}
        caps = [] if "CAP_ALL" in drop else [c for c in DEFAULT_CAPS if c not in drop]
        for cap in o.cap_add:
            cap = normalize(cap)
            if cap == "CAP_ALL":
                caps = list(CAPABILITIES)
            elif cap not in caps:
                if cap not in CAPABILITIES:
                    raise ConfigError(f"unknown capability {cap!r}", where="--cap-add")
                caps.append(cap)
    uid, gid = _user(o.user)
    process = {
        "terminal": o.tty,
        "user": {"uid": uid, "gid": gid},
        "args": list(o.args),
        "env": env,
        "cwd": o.workdir or "/",
        "capabilities": {s: list(caps) for s in ("bounding", "effective", "permitted")},
        "noNewPrivileges": o.no_new_privileges,
        "rlimits": [_ulimit(u) for u in o.ulimits],
    }
    if uid == 0:
        # Root keeps its caps through exec; others get them only as ambient ones.
        process["capabilities"]["inheritable"] = []
    else:
        process["capabilities"]["effective"] = []
    if o.group_add:
        try:
            process["user"]["additionalGids"] = [int(g) for g in o.group_add]
        except ValueError:
            raise ConfigError("group ids must be numbers", where="--group-add") from None
    return process


def _user(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 0
    uid, _, gid = text.partition(":")
    try:
        return int(uid), int(gid) if gid else int(uid)
    except ValueError:
        raise ConfigError(f"invalid user {text!r}: expected UID[:GID] (numbers)", where="--user") from None


def _ulimit(text: str) -> dict:
    name, values = _key_value(text, "--ulimit")
    if name not in RLIMIT_NAMES:
        raise ConfigError(f"unknown limit {name!r}", where="--ulimit")
    soft, _, hard = values.partition(":")
    try:
        soft_n = -1 if soft == "unlimited" else int(soft)
        hard_n = soft_n if not hard else (-1 if hard == "unlimited" else int(hard))
    except ValueError:
        raise ConfigError(f"invalid value {values!r}: expected SOFT[:HARD]", where="--ulimit") from None
    unlimited = 2**64 - 1
    soft_n = unlimited if soft_n < 0 else soft_n
    hard_n = unlimited if hard_n < 0 else hard_n
    if soft_n > hard_n:
        raise ConfigError(f"soft limit above hard limit in {text!r}", where="--ulimit")
    return {"type": "RLIMIT_" + name.upper(), "soft": soft_n, "hard": hard_n}


def _mounts(o: RunOptions) -> list[dict]:
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
         + ([] if o.userns else ["gid=5"])},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev"] + ([] if o.privileged else ["ro"])},
    ]
    if not o.rootfs:
        mounts += [{"destination": d, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777" if d != "/run" else "mode=755"]}
                   for d in ("/tmp", "/run", "/var/tmp")]
    for i, volume in enumerate(o.volumes):
        mounts.append(_volume(volume, f"--volume[{i}]"))
    for path in o.tmpfs:
        if not path.startswith("/"):
            raise ConfigError(f"tmpfs destination {path!r} must be absolute", where="--tmpfs")
        mounts.append({"destination": path, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]})
    return mounts


def _volume(text: str, where: str) -> dict:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ConfigError(f"invalid volume {text!r}: expected SRC:DST[:ro|rw]", where=where)
    src, dst = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise ConfigError(f"invalid volume mode {mode!r}: use ro or rw", where=where)
    if not dst.startswith("/"):
        raise ConfigError(f"volume destination {dst!r} must be absolute", where=where)
    if not os.path.exists(src):
        raise ConfigError(f"volume source {src} does not exist", where=where)
    return {"destination": dst, "type": "bind", "source": os.path.abspath(src), "options": ["rbind", mode]}
