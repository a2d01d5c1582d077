"""Process security attributes applied in the container's init just before execve.

The launcher calls, in its forked child (inside the container's namespaces, after
pivot_root, still root of the container)::

    prepare_process(process, linux)    # early, fully privileged
    ...                                # the launcher's own work (cwd, fds, sync)
    finalize_process(process, linux)   # the last step before execve

``prepare_process`` sets what needs privileges or must precede the identity change:
rlimits, oomScoreAdj, ioPriority, scheduler, personality, umask and the LSM exec
label.  ``finalize_process`` changes identity and drops privileges in the one order
the kernel allows:

1. ``no_new_privs`` (affects only the coming execve, so it can go first);
2. drop the bounding set (needs CAP_SETPCAP, which the runtime still has);
3. ``PR_SET_KEEPCAPS`` + setgroups/setresgid/setresuid, so the permitted set survives
   a switch to a non-zero uid;
4. without no_new_privs the kernel loads a seccomp filter only for a caller with
   CAP_SYS_ADMIN: the filter goes in here, while the runtime still holds its full
   permitted set (runc does it even earlier, before the uid switch, so a profile that
   denies setresuid breaks it; hutch's filter only sees the capset/prctl calls below);
5. capset(effective, permitted, inheritable), then the ambient set (a capability must
   be both permitted and inheritable to be raised; otherwise it is skipped, as runc
   does);
6. with no_new_privs the filter is installed last, so none of the runtime's own
   syscalls are filtered.

All input is checked by :func:`validate` first (also callable by the parent before it
forks), so a bad config fails before anything changes.
"""

from __future__ import annotations

import os

from hutch.syscall.proc import read_text
from hutch.record import dataclass, field

from hutch import checks
from hutch.errors import ConfigError, HutchError, SysCallError
from hutch.security import caps as capmod
from hutch.syscall.constants import RLIMITS
U64 = (1 << 64) - 1
RLIM_INFINITY = U64

IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
IOPRIO_CLASS_SHIFT = 13
IOPRIO_WHO_PROCESS = 1

SCHED_POLICIES = {
    "SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3, "SCHED_ISO": 4,
    "SCHED_IDLE": 5, "SCHED_DEADLINE": 6,
}
SCHED_FLAGS = {
    "SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02, "SCHED_FLAG_DL_OVERRUN": 0x04,
    "SCHED_FLAG_KEEP_POLICY": 0x08, "SCHED_FLAG_KEEP_PARAMS": 0x10,
    "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20, "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40,
}

# linux.memoryPolicy (set_mempolicy(2); <linux/mempolicy.h>).
MPOL_MODES = {
    "MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3,
    "MPOL_LOCAL": 4, "MPOL_PREFERRED_MANY": 5, "MPOL_WEIGHTED_INTERLEAVE": 6,
}
MPOL_FLAGS = {"MPOL_F_STATIC_NODES": 1 << 15, "MPOL_F_RELATIVE_NODES": 1 << 14,
              "MPOL_F_NUMA_BALANCING": 1 << 13}
# Modes that take no nodes, and modes that need at least one (MPOL_PREFERRED takes
# zero or one set: none means "local allocation").  runc 1.3 draws the same lines.
MPOL_NO_NODES = ("MPOL_DEFAULT", "MPOL_LOCAL")
MPOL_NEED_NODES = ("MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_PREFERRED_MANY",
                   "MPOL_WEIGHTED_INTERLEAVE")
# The kernel refuses a nodemask longer than a page of bits (get_nodes in mm/mempolicy.c).
MAX_NODE = 4096 * 8 - 2

PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}
PERSONALITY_FLAGS = {
    "UNAME26": 0x0020000, "ADDR_NO_RANDOMIZE": 0x0040000, "FDPIC_FUNCPTRS": 0x0080000,
    "MMAP_PAGE_ZERO": 0x0100000, "ADDR_COMPAT_LAYOUT": 0x0200000,
    "READ_IMPLIES_EXEC": 0x0400000, "ADDR_LIMIT_32BIT": 0x0800000, "SHORT_INODE": 0x1000000,
    "WHOLE_SECONDS": 0x2000000, "STICKY_TIMEOUTS": 0x4000000, "ADDR_LIMIT_3GB": 0x8000000,
}

DEFAULT_UMASK = 0o022  # runc's umask when process.user.umask is absent


# --- the validated plan --------------------------------------------------------------

@dataclass
class Rlimit:
    resource: int
    name: str
    soft: int
    hard: int
    where: str


@dataclass
class Scheduler:
    policy: int
    flags: int = 0
    nice: int = 0
    priority: int = 0
    runtime: int = 0
    deadline: int = 0
    period: int = 0


@dataclass
class MemoryPolicy:
    mode: int                  # the MPOL_* mode or'ed with its MPOL_F_* flags
    nodes: frozenset = frozenset()
    text: str = ""             # as the config said it, for error messages


@dataclass
class User:
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    umask: int = DEFAULT_UMASK


@dataclass
class Plan:
    """Everything prepare/finalize will do, computed without side effects."""
    rlimits: list[Rlimit] = field(default_factory=list)
    oom_score_adj: int | None = None
    ioprio: int | None = None
    scheduler: Scheduler | None = None
    personality: int | None = None
    memory_policy: MemoryPolicy | None = None
    apparmor_profile: str | None = None
    selinux_label: str | None = None
    user: User = field(default_factory=User)
    caps: capmod.CapSets = field(default_factory=capmod.CapSets)
    no_new_privs: bool = False
    seccomp_prog: bytes | None = None
    seccomp_flags: int = 0


def _bad_int(value, low: int, high: int) -> str:
    return f"must be an integer in [{low}, {high}], not {value!r}"


_CHECK = checks.Checker(
    lambda value, expected, low, high: _bad_int(value, low, high) if expected == checks.INTEGER
    else f"must be {expected}", _bad_int, ConfigError)
_int = _CHECK.integer


def _object(value, where: str) -> dict:
    """value as an object, {} when null or absent."""
    return {} if value is None else _CHECK.object(value, where)


def _one_of(name, table: dict, what: str, where: str):
    """table[name], or the error that names what was expected."""
    if name not in table:
        raise ConfigError(f"unknown {what} {name!r} (expected one of {', '.join(table)})", where=where)
    return table[name]


def parse_rlimits(rlimits, where: str = "process.rlimits") -> list[Rlimit]:
    if rlimits is None:
        return []
    if not isinstance(rlimits, list):
        raise ConfigError("must be a list of {type, soft, hard}", where=where)
    out, seen = [], set()
    for i, item in enumerate(rlimits):
        here = f"{where}[{i}]"
        item = _object(item, here)
        name = item.get("type")
        if name not in RLIMITS:
            raise ConfigError(f"unknown rlimit type {name!r}", where=f"{here}.type")
        if name in seen:
            raise ConfigError(f"duplicate rlimit {name}", where=f"{here}.type")
        seen.add(name)
        soft = _int(item.get("soft"), f"{here}.soft", 0, U64)
        hard = _int(item.get("hard"), f"{here}.hard", 0, U64)
        if soft > hard:
            raise ConfigError(f"soft limit {soft} is above the hard limit {hard}", where=here)
        out.append(Rlimit(RLIMITS[name], name, soft, hard, here))
    return out


def parse_io_priority(value, where: str = "process.ioPriority") -> int | None:
    if value is None:
        return None
    value = _object(value, where)
    cls = _one_of(value.get("class"), IOPRIO_CLASSES, "I/O priority class", f"{where}.class")
    priority = _int(value.get("priority", 0), f"{where}.priority", 0, 7)
    return cls << IOPRIO_CLASS_SHIFT | priority


def parse_scheduler(value, where: str = "process.scheduler") -> Scheduler | None:
    if value is None:
        return None
    value = _object(value, where)
    policy = value.get("policy")
    if policy not in SCHED_POLICIES:
        raise ConfigError(f"unknown scheduler policy {policy!r}", where=f"{where}.policy")
    flags = 0
    for i, name in enumerate(value.get("flags") or ()):
        if name not in SCHED_FLAGS:
            raise ConfigError(f"unknown scheduler flag {name!r}", where=f"{where}.flags[{i}]")
        flags |= SCHED_FLAGS[name]
    sched = Scheduler(
        SCHED_POLICIES[policy], flags,
        nice=_int(value.get("nice", 0), f"{where}.nice", -20, 19),
        priority=_int(value.get("priority", 0), f"{where}.priority", 0, 99),
        runtime=_int(value.get("runtime", 0), f"{where}.runtime", 0, U64),
        deadline=_int(value.get("deadline", 0), f"{where}.deadline", 0, U64),
        period=_int(value.get("period", 0), f"{where}.period", 0, U64))
    realtime = policy in ("SCHED_FIFO", "SCHED_RR")
    if sched.priority and not realtime:
        raise ConfigError("priority is only meaningful for SCHED_FIFO and SCHED_RR",
                          where=f"{where}.priority")
    if realtime and not sched.priority:
        raise ConfigError(f"{policy} needs a priority in [1, 99]", where=f"{where}.priority")
    if policy != "SCHED_DEADLINE" and (sched.runtime or sched.deadline or sched.period):
        raise ConfigError("runtime, deadline and period are only meaningful for SCHED_DEADLINE",
                          where=where)
    return sched


def parse_node_list(value, where: str) -> frozenset[int]:
    """A kernel list string ("0-1,3"; "" for none) as a set of node numbers."""
    if not isinstance(value, str):
        raise ConfigError("must be a string like \"0-1,3\"", where=where)
    nodes: set[int] = set()
    for part in value.split(",") if value.strip() else ():
        low, dash, high = part.strip().partition("-")
        try:
            first = int(low, 10)
            last = int(high, 10) if dash else first
        except ValueError:
            raise ConfigError(f"invalid node range {part.strip()!r} (expected N or N-M, "
                              f"as in \"0-1,3\")", where=where) from None
        if first < 0 or last < first:
            raise ConfigError(f"invalid node range {part.strip()!r}", where=where)
        if last > MAX_NODE:
            raise ConfigError(f"node {last} is above the kernel's limit of {MAX_NODE}",
                              where=where)
        nodes.update(range(first, last + 1))
    return frozenset(nodes)


def parse_memory_policy(value, where: str = "linux.memoryPolicy") -> MemoryPolicy | None:
    """linux.memoryPolicy as set_mempolicy(2) takes it; refuses what the kernel would
    (and what runc 1.3 refuses at validation), each error naming its JSON path."""
    if value is None:
        return None
    value = _object(value, where)
    mode_name = value.get("mode")
    _one_of(mode_name, MPOL_MODES, "memory policy mode", f"{where}.mode")
    nodes = parse_node_list(value.get("nodes") or "", f"{where}.nodes")
    if mode_name in MPOL_NO_NODES and nodes:
        raise ConfigError(f"{mode_name} takes no nodes", where=f"{where}.nodes")
    if mode_name in MPOL_NEED_NODES and not nodes:
        raise ConfigError(f"{mode_name} needs at least one node", where=f"{where}.nodes")
    flags = value.get("flags") or []
    if not isinstance(flags, list):
        raise ConfigError("must be a list of MPOL_F_* names", where=f"{where}.flags")
    mode = MPOL_MODES[mode_name]
    for i, name in enumerate(flags):
        mode |= _one_of(name, MPOL_FLAGS, "memory policy flag", f"{where}.flags[{i}]")
    if "MPOL_F_STATIC_NODES" in flags and "MPOL_F_RELATIVE_NODES" in flags:
        raise ConfigError("MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other",
                          where=f"{where}.flags")
    if "MPOL_F_NUMA_BALANCING" in flags and mode_name != "MPOL_BIND":
        raise ConfigError("MPOL_F_NUMA_BALANCING applies only to MPOL_BIND",
                          where=f"{where}.flags")
    if not nodes and ({"MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"} & set(flags)):
        raise ConfigError("MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES need nodes",
                          where=f"{where}.flags")
    return MemoryPolicy(mode, nodes, f"{mode_name} {value.get('nodes') or ''}".strip())


def parse_personality(value, where: str = "linux.personality") -> int | None:
    if value is None:
        return None
    value = _object(value, where)
    domain = value.get("domain")
    if domain not in PERSONALITY_DOMAINS:
        raise ConfigError(f"unknown personality domain {domain!r} (expected LINUX or LINUX32)",
                          where=f"{where}.domain")
    persona = PERSONALITY_DOMAINS[domain]
    for i, name in enumerate(value.get("flags") or ()):
        if name not in PERSONALITY_FLAGS:
            raise ConfigError(f"unknown personality flag {name!r}", where=f"{where}.flags[{i}]")
        persona |= PERSONALITY_FLAGS[name]
    return persona


def parse_user(value, where: str = "process.user") -> User:
    value = _object(value, where)
    gids = value.get("additionalGids") or []
    if not isinstance(gids, list):
        raise ConfigError("must be a list of group ids", where=f"{where}.additionalGids")
    umask = value.get("umask")
    return User(
        uid=_int(value.get("uid", 0), f"{where}.uid", 0, 0xFFFFFFFE),
        gid=_int(value.get("gid", 0), f"{where}.gid", 0, 0xFFFFFFFE),
        additional_gids=[_int(g, f"{where}.additionalGids[{i}]", 0, 0xFFFFFFFE)
                         for i, g in enumerate(gids)],
        umask=DEFAULT_UMASK if umask is None else _int(umask, f"{where}.umask", 0, 0o7777))


def _label(value, where: str) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ConfigError("must be a string", where=where)
    return value


# --- LSM detection --------------------------------------------------------------------



def _active_lsms() -> list[str]:
    return read_text("/sys/kernel/security/lsm").strip().split(",")


def apparmor_enabled() -> bool:
    """AppArmor is the active LSM (the checks libapparmor and runc make)."""
    return read_text("/sys/module/apparmor/parameters/enabled").startswith("Y") or \
        "apparmor" in _active_lsms()


def selinux_enabled() -> bool:
    return os.path.exists("/sys/fs/selinux/enforce") or "selinux" in _active_lsms()


def plan(process: dict | None, linux: dict | None) -> Plan:
    """Validate ``process`` and the process-related parts of ``linux``; no side effects
    beyond reading /proc and /sys.  Every error is a ConfigError naming its JSON path."""
    process = _object(process, "process")
    linux = _object(linux, "linux")
    p = Plan()
    p.rlimits = parse_rlimits(process.get("rlimits"))
    if process.get("oomScoreAdj") is not None:
        p.oom_score_adj = _int(process["oomScoreAdj"], "process.oomScoreAdj", -1000, 1000)
    p.ioprio = parse_io_priority(process.get("ioPriority"))
    p.scheduler = parse_scheduler(process.get("scheduler"))
    p.personality = parse_personality(linux.get("personality"))
    p.memory_policy = parse_memory_policy(linux.get("memoryPolicy"))
    p.apparmor_profile = _label(process.get("apparmorProfile"), "process.apparmorProfile")
    if p.apparmor_profile and not apparmor_enabled():
        raise ConfigError("apparmor is not enabled on this host", where="process.apparmorProfile")
    p.selinux_label = _label(process.get("selinuxLabel"), "process.selinuxLabel")
    if p.selinux_label and not selinux_enabled():
        raise ConfigError("selinux is not enabled on this host", where="process.selinuxLabel")
    p.user = parse_user(process.get("user"))
    p.caps = capmod.from_process(process)
    capmod.check_consistent(p.caps)
    p.no_new_privs = bool(process.get("noNewPrivileges"))
    seccomp = linux.get("seccomp")
    if seccomp is not None:
        p.seccomp_prog, p.seccomp_flags = _compiled(seccomp)
    return p


# The parent may validate before fork and the child use the same object: compile once.
_last_compiled: tuple[object, bytes, int] | None = None


def _compiled(seccomp) -> tuple[bytes, int]:
    global _last_compiled
    if _last_compiled is not None and _last_compiled[0] is seccomp:
        return _last_compiled[1], _last_compiled[2]
    from hutch.security import seccomp as seccomp_mod

    prog = seccomp_mod.compile_filter(seccomp)
    flags = seccomp_mod.filter_flags(seccomp)
    _last_compiled = (seccomp, prog, flags)
    return prog, flags


def validate(process: dict | None, linux: dict | None) -> None:
    """Raise ConfigError for anything prepare/finalize would refuse as bad input."""
    plan(process, linux)


# --- prepare ----------------------------------------------------------------------------

def _fail(what: str, err, where: str, hint: str = "") -> HutchError:
    name = os.strerror(err.errno) if err.errno else str(err)
    return HutchError(f"{what}: {name}{'; ' + hint if hint else ''}", where=where)


def apply_rlimits(rlimits: list[Rlimit]) -> None:
    import resource

    for limit in rlimits:
        # Python's prlimit takes -1 for "unlimited" (rlim_t is unsigned).
        soft = -1 if limit.soft >= 1 << 63 else limit.soft
        hard = -1 if limit.hard >= 1 << 63 else limit.hard
        try:
            resource.prlimit(0, limit.resource, (soft, hard))
        except OSError as err:
            raise _fail(f"cannot set {limit.name} to soft {limit.soft}, hard {limit.hard}", err,
                        limit.where, "raising a hard limit needs CAP_SYS_RESOURCE") from None
        except ValueError as err:
            raise HutchError(f"cannot set {limit.name}: {err}", where=limit.where) from None


PROC_SUPER_MAGIC = 0x9FA0


def open_proc(path: str, mode: str = "r"):
    """Open a /proc file and make sure it is procfs: inside a container /proc could be
    the container's own fake tree (CVE-2019-16884, CVE-2023-28642), and what we read
    or write there decides privileges."""
    from hutch.syscall.mountapi import fstatfs_type
    flags = (os.O_WRONLY if "w" in mode else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags)
    try:
        if fstatfs_type(fd) != PROC_SUPER_MAGIC:
            raise HutchError(f"{path} is not on procfs: refusing to use it")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, mode)


def apply_oom_score_adj(value: int) -> None:
    try:
        with open_proc("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as err:
        raise _fail(f"cannot set oom_score_adj to {value}", err, "process.oomScoreAdj",
                    "lowering it needs CAP_SYS_RESOURCE") from None


def apply_ioprio(ioprio: int) -> None:
    from hutch import syscall as hsys

    try:
        hsys.ioprio_set(IOPRIO_WHO_PROCESS, 0, ioprio)
    except SysCallError as err:
        raise _fail("ioprio_set", err, "process.ioPriority") from None


def apply_scheduler(sched: Scheduler) -> None:
    from hutch.syscall.sched import SchedAttr, sched_setattr

    attr = SchedAttr(sched_policy=sched.policy, sched_flags=sched.flags, sched_nice=sched.nice,
                     sched_priority=sched.priority, sched_runtime=sched.runtime,
                     sched_deadline=sched.deadline, sched_period=sched.period)
    try:
        sched_setattr(attr)
    except SysCallError as err:
        hint = ""
        if err.errno == 1 and sched.policy in (SCHED_POLICIES["SCHED_FIFO"], SCHED_POLICIES["SCHED_RR"]):
            # With CONFIG_RT_GROUP_SCHED a cgroup v1 cpu group without a realtime budget
            # refuses realtime tasks, even to root.
            hint = ("a realtime policy needs a realtime budget in the container's cpu cgroup "
                    "(linux.resources.cpu.realtimeRuntime) on cgroup v1")
        raise _fail("sched_setattr", err, "process.scheduler", hint) from None


def apply_memory_policy(policy: MemoryPolicy) -> None:
    from hutch.syscall.mm import set_mempolicy

    try:
        set_mempolicy(policy.mode, policy.nodes)
    except SysCallError as err:
        hint = ""
        if err.errno == 22 and policy.nodes:   # EINVAL: most often a node this host lacks
            online = read_text("/sys/devices/system/node/online").strip()
            hint = f"nodes online here: {online or 'unknown'}"
        raise _fail(f"set_mempolicy {policy.text}", err, "linux.memoryPolicy", hint) from None


def apply_personality(persona: int) -> None:
    from hutch import syscall as hsys

    try:
        hsys.personality(persona)
    except SysCallError as err:
        raise _fail(f"personality {persona:#x}", err, "linux.personality") from None


def _write_attr(paths: tuple[str, ...], value: str, where: str) -> None:
    for path in paths:
        if os.path.exists(path):
            try:
                with open_proc(path, "w") as f:
                    f.write(value)
                return
            except OSError as err:
                raise _fail(f"cannot set the exec label via {path}", err, where) from None
    raise HutchError(f"no LSM attribute file among {', '.join(paths)}", where=where)


def prepare_process(process: dict | None, linux: dict | None) -> Plan:
    """Apply the privileged, early attributes; returns the plan finalize will reuse."""
    p = plan(process, linux)
    apply_rlimits(p.rlimits)
    if p.oom_score_adj is not None:
        apply_oom_score_adj(p.oom_score_adj)
    if p.ioprio is not None:
        apply_ioprio(p.ioprio)
    if p.scheduler is not None:
        apply_scheduler(p.scheduler)
    if p.personality is not None:
        apply_personality(p.personality)
    if p.memory_policy is not None:
        apply_memory_policy(p.memory_policy)
    os.umask(p.user.umask)
    if p.apparmor_profile:
        _write_attr(("/proc/self/attr/apparmor/exec", "/proc/self/attr/exec"),
                    f"exec {p.apparmor_profile}", "process.apparmorProfile")
    if p.selinux_label:
        _write_attr(("/proc/self/attr/exec",), p.selinux_label, "process.selinuxLabel")
    return p


# --- finalize ------------------------------------------------------------------------------

def _warn(message: str) -> None:
    try:
        os.write(2, f"hutch: warning: {message}\n".encode())
    except OSError:
        pass


def _groups_from_etc(uid: int) -> list[int]:
    """Supplementary groups /etc/group gives the user named by uid in /etc/passwd (runc
    adds these to additionalGids).  Best effort: a rootfs without the files gives none."""
    name = None
    for line in read_text("/etc/passwd").splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[2] == str(uid):
            name = fields[0]
            break
    if name is None:
        return []
    groups = []
    for line in read_text("/etc/group").splitlines():
        fields = line.split(":")
        if len(fields) > 3 and name in fields[3].split(",") and fields[2].isdigit():
            groups.append(int(fields[2]))
    return groups


def switch_user(user: User) -> None:
    """setgroups + setresgid + setresuid, keeping the permitted capabilities."""
    from hutch import syscall as hsys

    groups = list(dict.fromkeys(_groups_from_etc(user.uid) + user.additional_gids))
    try:
        with open_proc("/proc/self/setgroups") as f:
            setgroups_denied = f.read().strip() == "deny"
    except FileNotFoundError:
        setgroups_denied = False
    hsys.prctl(hsys.PR_SET_KEEPCAPS, 1)
    try:
        if not setgroups_denied:
            os.setgroups(groups)
        elif user.additional_gids:
            raise HutchError("cannot set additional groups: setgroups is denied in this user "
                             "namespace", where="process.user.additionalGids")
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
    except HutchError:
        raise
    except OSError as err:
        raise _fail(f"cannot switch to uid {user.uid} gid {user.gid}", err, "process.user") \
            from None
    hsys.prctl(hsys.PR_SET_KEEPCAPS, 0)


def drop_bounding(keep: int, last: int) -> None:
    from hutch import syscall as hsys

    for cap in range(last + 1):
        if not keep >> cap & 1:
            hsys.prctl(hsys.PR_CAPBSET_DROP, cap)


def raise_ambient(ambient: int, last: int) -> None:
    """Raise each ambient capability that is permitted and inheritable; skip the rest
    silently, as runc does: `runc spec` itself lists ambient capabilities without
    making them inheritable, and engines copy that."""
    from hutch import syscall as hsys

    hsys.prctl(hsys.PR_CAP_AMBIENT, hsys.PR_CAP_AMBIENT_CLEAR_ALL)
    for cap in range(last + 1):
        if ambient >> cap & 1:
            try:
                hsys.prctl(hsys.PR_CAP_AMBIENT, hsys.PR_CAP_AMBIENT_RAISE, cap)
            except SysCallError:
                pass


def _install_seccomp(p: Plan) -> None:
    from hutch.security.seccomp import install_filter

    try:
        install_filter(p.seccomp_prog, p.seccomp_flags)
    except OSError as err:
        raise _fail("cannot load the seccomp filter", err, "linux.seccomp") from None


def finalize_process(process: dict | None, linux: dict | None, p: Plan | None = None) -> None:
    """Switch identity and drop privileges; the next call must be execve."""
    from hutch import syscall as hsys

    if p is None:
        p = plan(process, linux)
    last = capmod.last_cap()
    sets = p.caps.masked(capmod.all_caps_mask())
    unknown = p.caps.permitted & ~sets.permitted
    if unknown:
        _warn(f"ignoring capabilities this kernel does not know: {capmod.to_names(unknown)}")
    _, have_permitted, have_inheritable = hsys.capget()
    missing = sets.permitted & ~have_permitted
    if missing:
        raise HutchError(f"{', '.join(capmod.to_names(missing))} requested but not available "
                         "to the runtime (not in its own permitted set)",
                         where="process.capabilities.permitted")

    if p.no_new_privs:
        hsys.prctl(hsys.PR_SET_NO_NEW_PRIVS, 1)
    drop_bounding(sets.bounding, last)
    switch_user(p.user)
    if p.seccomp_prog and not p.no_new_privs:
        # Loading a filter without no_new_privs needs CAP_SYS_ADMIN in effect: the uid
        # switch may have cleared the effective set, so make it whole once more.
        hsys.capset(have_permitted, have_permitted, have_inheritable)
        _install_seccomp(p)
    try:
        hsys.capset(sets.effective, sets.permitted, sets.inheritable)
    except SysCallError as err:
        raise _fail("capset", err, "process.capabilities") from None
    raise_ambient(sets.ambient, last)
    if p.seccomp_prog and p.no_new_privs:
        _install_seccomp(p)
