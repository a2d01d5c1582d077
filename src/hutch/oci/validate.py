"""Read a bundle's config.json and check it against the OCI runtime spec (Linux).

This runs on the ``create`` hot path, so it imports only ``json`` and ``os`` (plus
``hutch.errors``); the capability table is imported only when a config names
capabilities.  Everything here is pure logic: no system calls beyond reading the
file and stat()ing the root filesystem.

Every problem raises :class:`~hutch.errors.ConfigError` with ``where`` set to the
JSON path of the offending value (``process.capabilities.bounding[2]``,
``linux.sysctl["net.ipv4.ip_forward"]``) and exit code 1, as runc uses for every
OCI verb.  Unknown properties are ignored, as the spec requires
("Extensibility"), and a JSON ``null`` counts as absent, as it does for runc's Go
decoder.

Where hutch is stricter than runc 1.1 it is because the spec says MUST (an
unknown capability, duplicate rlimits, a relative mount destination...): those
cases are listed in tests/unit/test_validate_cases.py with ``runc_accepts``.
"""

from __future__ import annotations

from hutch import checks, fastjson
import os

from hutch.errors import EXIT_OCI_ERROR, ConfigError

CONFIG_NAME = "config.json"

# --- value sets the spec (and the kernel) define ------------------------------------

SUPPORTED_OCI_MAJOR = 1

HOOK_NAMES = ("prestart", "createRuntime", "createContainer", "startContainer",
              "poststart", "poststop")

NAMESPACE_TYPES = ("cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time")

CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")

IOPRIO_CLASSES = ("IOPRIO_CLASS_RT", "IOPRIO_CLASS_BE", "IOPRIO_CLASS_IDLE")

SCHED_POLICIES = ("SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH", "SCHED_ISO",
                  "SCHED_IDLE", "SCHED_DEADLINE")
SCHED_FLAGS = ("SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_RECLAIM", "SCHED_FLAG_DL_OVERRUN",
               "SCHED_FLAG_KEEP_POLICY", "SCHED_FLAG_KEEP_PARAMS", "SCHED_FLAG_UTIL_CLAMP_MIN",
               "SCHED_FLAG_UTIL_CLAMP_MAX")

ROOTFS_PROPAGATIONS = ("shared", "slave", "private", "unbindable",
                       "rshared", "rslave", "rprivate", "runbindable")

DEVICE_TYPES = ("c", "b", "u", "p")

SECCOMP_ACTIONS = ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                   "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE",
                   "SCMP_ACT_TRAP")
SECCOMP_OPERATORS = ("SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                     "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE")
SECCOMP_ARCHS = (
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
)
SECCOMP_FLAGS = ("SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                 "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")
# The only actions for which an errno (errnoRet / defaultErrnoRet) means something.
SECCOMP_ERRNO_ACTIONS = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
SECCOMP_MAX_ARG_INDEX = 5   # a system call has six arguments, 0..5

PERSONALITY_DOMAINS = ("LINUX", "LINUX32")
TIME_OFFSET_CLOCKS = ("monotonic", "boottime")

HOST_NAME_MAX = 64          # sethostname(2)/setdomainname(2) refuse longer names
MAX_ID_MAP_LINES = 340      # /proc/PID/uid_map accepts at most this many lines (Linux >= 4.15)

INT32 = (-(1 << 31), (1 << 31) - 1)
INT64 = (-(1 << 63), (1 << 63) - 1)
UINT16 = (0, (1 << 16) - 1)
UINT32 = (0, (1 << 32) - 1)
UINT64 = (0, (1 << 64) - 1)


# --- reading ------------------------------------------------------------------------

def load_config(bundle_dir: str) -> dict:
    """Parse ``<bundle_dir>/config.json``; any failure is a ConfigError naming the file."""
    path = os.path.join(bundle_dir, CONFIG_NAME)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        _fail(path, "no such file: a bundle needs a config.json (see `hutch spec`)")
    except OSError as err:
        _fail(path, f"cannot read: {err.strerror}")
    try:
        # Strict UTF-8, no byte order mark, NaN/Infinity refused (as runc does), and a
        # truncated or malformed file is one line with its line and column.
        return fastjson.require_object(fastjson.loads(raw, where=path), where=path)
    except ConfigError as err:
        _fail(path, err.message)   # the same line, with the OCI verbs' exit code


def rootfs_path(config: dict, bundle_dir: str) -> str:
    """Absolute path of the root filesystem: root.path, relative to the bundle if not absolute."""
    return os.path.normpath(os.path.join(os.path.abspath(bundle_dir), config["root"]["path"]))


# --- entry point ----------------------------------------------------------------------

def validate_config(config: dict, bundle_dir: str) -> dict:
    """Check every Linux field of `config`; fill spec defaults in place and return it.

    Defaults filled (the spec defines them): ``process.terminal`` false,
    ``root.readonly`` false.
    """
    if not isinstance(config, dict):
        _fail(CONFIG_NAME, f"must hold a JSON object, not {_kind(config)}")
    _check_oci_version(config.get("ociVersion"))
    linux = _opt_obj(config, "linux", "")
    namespaces = _check_namespaces(linux.get("namespaces"), "linux.namespaces")
    _check_process(config.get("process"), "process")
    _check_root(config.get("root"), "root", bundle_dir)
    _check_names(config, namespaces)
    _check_mounts(config.get("mounts"), "mounts")
    _check_hooks(config.get("hooks"), "hooks")
    _check_string_map(config.get("annotations"), "annotations")
    _check_linux(linux, "linux", namespaces)
    return config


# --- error helpers and primitive checks -------------------------------------------------

def _fail(where: str, message: str):
    raise ConfigError(message, where=where, exit_code=EXIT_OCI_ERROR)


_kind = checks.kind


def _wrong_type(value, expected: str, low, high) -> str:
    if expected == checks.BOOLEAN:
        expected = "a boolean (true or false)"
    return (f"must be {expected}, not {_kind(value)}"
            + (f" ({value!r})" if expected == checks.INTEGER and isinstance(value, float) else ""))


def _out_of_range(value: int, low: int, high: int) -> str:
    return f"{value} is out of range ({low}..{high})"


_CHECK = checks.Checker(_wrong_type, _out_of_range, ConfigError, EXIT_OCI_ERROR)
_obj, _list, _str, _bool = _CHECK.object, _CHECK.array, _CHECK.string, _CHECK.boolean


def _at(where: str, key: str) -> str:
    """JSON path of `key` inside `where`: dotted for names, ["..."] for anything else."""
    if key.isidentifier():
        return f"{where}.{key}" if where else key
    return f"{where}[{fastjson.dumps(key)}]"


def _opt_obj(parent: dict, key: str, where: str) -> dict:
    """parent[key] as an object, {} when absent or null."""
    value = parent.get(key)
    return {} if value is None else _obj(value, _at(where, key))


def _int(value, where: str, bounds: tuple[int, int]) -> int:
    """An integer (not a boolean, not 1.0) within the inclusive bounds."""
    return _CHECK.integer(value, where, *bounds)


def _str_list(value, where: str) -> list:
    items = _list(value, where)
    for i, item in enumerate(items):
        _str(item, f"{where}[{i}]")
    return items


def _abs_path(value, where: str) -> str:
    path = _str(value, where)
    if not path.startswith("/"):
        _fail(where, f"{path!r} must be an absolute path")
    return path


def _one_of(value, where: str, allowed) -> str:
    text = _str(value, where)
    if text not in allowed:
        _fail(where, f"unknown value {text!r} (expected one of: {', '.join(allowed)})")
    return text


def _required(parent: dict, key: str, where: str):
    value = parent.get(key)
    if value is None:
        _fail(_at(where, key), "is required")
    return value


def _no_nul(text: str, where: str) -> None:
    if "\0" in text:
        _fail(where, "must not contain a NUL byte")


def _check_string_map(value, where: str) -> None:
    if value is None:
        return
    for key, item in _obj(value, where).items():
        if key == "":
            _fail(where, "keys must not be empty")
        _str(item, _at(where, key))


def _check_env(value, where: str) -> None:
    for i, entry in enumerate(_str_list(value, where)):
        name, eq, _ = entry.partition("=")
        if not eq:
            _fail(f"{where}[{i}]", f"{entry!r} is not of the form KEY=VALUE")
        if not name:
            _fail(f"{where}[{i}]", f"{entry!r} has an empty variable name")
        _no_nul(entry, f"{where}[{i}]")


def _check_cpu_list(value, where: str) -> None:
    """A CPU list as the kernel writes it: "0-3,7", with spaces allowed around items."""
    text = _str(value, where)
    if not text.strip():
        return                      # empty: the affinity is left alone
    for item in text.split(","):
        item = item.strip()
        first, dash, last = item.partition("-")
        if not (first.strip().isdigit() and (not dash or last.strip().isdigit())):
            _fail(where, f"{text!r} is not a CPU list like \"0-3,7\"")
        if dash and int(first) > int(last):
            _fail(where, f"{text!r}: range {item} goes backwards")


# --- top-level fields ---------------------------------------------------------------------

def _check_oci_version(value) -> None:
    if value is None:
        _fail("ociVersion", "is required")
    version = _str(value, "ociVersion")
    core = version.split("+", 1)[0].split("-", 1)[0]
    parts = core.split(".")
    # SemVer is MAJOR.MINOR.PATCH; "1.0" is accepted too since some engines write it.
    if not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        _fail("ociVersion", f"{version!r} is not a SemVer version like \"1.2.0\"")
    if int(parts[0]) != SUPPORTED_OCI_MAJOR:
        _fail("ociVersion",
              f"unsupported version {version!r}: hutch supports {SUPPORTED_OCI_MAJOR}.x")


def _check_root(value, where: str, bundle_dir: str) -> None:
    if value is None:
        _fail(where, "is required (the container's root filesystem)")
    root = _obj(value, where)
    path = _str(_required(root, "path", where), f"{where}.path")
    if not path:
        _fail(f"{where}.path", "must not be empty")
    if root.get("readonly") is None:
        root["readonly"] = False
    _bool(root["readonly"], f"{where}.readonly")
    resolved = os.path.join(bundle_dir, path)
    try:
        is_dir = os.path.isdir(resolved)
        exists = is_dir or os.path.lexists(resolved)
    except (OSError, ValueError):
        is_dir = exists = False
    if not exists:
        _fail(f"{where}.path", f"{resolved} does not exist")
    if not is_dir:
        _fail(f"{where}.path", f"{resolved} is not a directory")


def _check_names(config: dict, namespaces: dict) -> None:
    """hostname and domainname: strings short enough for the kernel, in a UTS namespace."""
    for key in ("hostname", "domainname"):
        value = config.get(key)
        if value is None:
            continue
        name = _str(value, key)
        if len(name.encode()) > HOST_NAME_MAX:
            _fail(key, f"is longer than {HOST_NAME_MAX} bytes")
        _no_nul(name, key)
        # Without a UTS namespace this would rename the host (runc refuses too).
        if name and "uts" not in namespaces:
            _fail(key, f"setting the {key} needs a UTS namespace (add {{\"type\": \"uts\"}} "
                       "to linux.namespaces)")


# --- process ------------------------------------------------------------------------------

def _check_process(value, where: str) -> None:
    if value is None:
        _fail(where, "is required to create a container")
    process = _obj(value, where)
    if process.get("terminal") is None:
        process["terminal"] = False
    _bool(process["terminal"], f"{where}.terminal")
    if process.get("consoleSize") is not None:
        size = _obj(process["consoleSize"], f"{where}.consoleSize")
        for key in ("height", "width"):
            _int(_required(size, key, f"{where}.consoleSize"), f"{where}.consoleSize.{key}", UINT16)
    if process.get("user") is not None:
        _check_user(process["user"], f"{where}.user")
    args = _required(process, "args", where)
    if not _str_list(args, f"{where}.args"):
        _fail(f"{where}.args", "must name the program to run (at least one entry)")
    for i, arg in enumerate(args):
        _no_nul(arg, f"{where}.args[{i}]")
    if process.get("env") is not None:
        _check_env(process["env"], f"{where}.env")
    cwd = _required(process, "cwd", where)
    _abs_path(cwd, f"{where}.cwd")
    if process.get("capabilities") is not None:
        _check_capabilities(process["capabilities"], f"{where}.capabilities")
    if process.get("rlimits") is not None:
        _check_rlimits(process["rlimits"], f"{where}.rlimits")
    if process.get("noNewPrivileges") is not None:
        _bool(process["noNewPrivileges"], f"{where}.noNewPrivileges")
    if process.get("oomScoreAdj") is not None:
        _int(process["oomScoreAdj"], f"{where}.oomScoreAdj", (-1000, 1000))
    for key in ("apparmorProfile", "selinuxLabel"):
        if process.get(key) is not None:
            _str(process[key], f"{where}.{key}")
    if process.get("ioPriority") is not None:
        _check_io_priority(process["ioPriority"], f"{where}.ioPriority")
    if process.get("scheduler") is not None:
        _check_scheduler(process["scheduler"], f"{where}.scheduler")
    if process.get("execCPUAffinity") is not None:
        affinity = _obj(process["execCPUAffinity"], f"{where}.execCPUAffinity")
        for key in ("initial", "final"):
            if affinity.get(key) is not None:
                _check_cpu_list(affinity[key], f"{where}.execCPUAffinity.{key}")


def _check_user(value, where: str) -> None:
    user = _obj(value, where)
    for key in ("uid", "gid"):
        _int(_required(user, key, where), f"{where}.{key}", UINT32)
    if user.get("umask") is not None:
        _int(user["umask"], f"{where}.umask", UINT32)
    if user.get("additionalGids") is not None:
        for i, gid in enumerate(_list(user["additionalGids"], f"{where}.additionalGids")):
            _int(gid, f"{where}.additionalGids[{i}]", UINT32)


def _check_capabilities(value, where: str) -> None:
    caps = _obj(value, where)
    known = None
    for set_name in CAPABILITY_SETS:
        if caps.get(set_name) is None:
            continue
        names = _str_list(caps[set_name], f"{where}.{set_name}")
        if known is None and names:
            from hutch.security.caps import CAPABILITIES   # only when caps are named
            known = CAPABILITIES
        for i, name in enumerate(names):
            if name not in known:
                _fail(f"{where}.{set_name}[{i}]", f"unknown capability {name!r}")


def _check_rlimits(value, where: str) -> None:
    from hutch.syscall.constants import RLIMITS   # only when rlimits are set
    seen = {}
    for i, item in enumerate(_list(value, where)):
        at = f"{where}[{i}]"
        rlimit = _obj(item, at)
        kind = _one_of(_required(rlimit, "type", at), f"{at}.type", sorted(RLIMITS))
        soft = _int(_required(rlimit, "soft", at), f"{at}.soft", UINT64)
        hard = _int(_required(rlimit, "hard", at), f"{at}.hard", UINT64)
        if soft > hard:
            _fail(f"{at}.soft", f"soft limit {soft} is above the hard limit {hard}")
        if kind in seen:
            _fail(f"{at}.type", f"{kind} is already set by {where}[{seen[kind]}]")
        seen[kind] = i


def _check_io_priority(value, where: str) -> None:
    prio = _obj(value, where)
    _one_of(_required(prio, "class", where), f"{where}.class", IOPRIO_CLASSES)
    if prio.get("priority") is not None:
        _int(prio["priority"], f"{where}.priority", (0, 7))


def _check_scheduler(value, where: str) -> None:
    """Policy and fields as sched_setattr(2) would accept them."""
    sched = _obj(value, where)
    policy = _one_of(_required(sched, "policy", where), f"{where}.policy", SCHED_POLICIES)
    if sched.get("nice") is not None:
        _int(sched["nice"], f"{where}.nice", (-20, 19))
    priority = 0
    if sched.get("priority") is not None:
        priority = _int(sched["priority"], f"{where}.priority", INT32)
    if policy in ("SCHED_FIFO", "SCHED_RR"):
        if not 1 <= priority <= 99:
            _fail(f"{where}.priority", f"{policy} needs a priority in 1..99, not {priority}")
    elif priority != 0:
        _fail(f"{where}.priority", f"must be 0 for {policy} (only SCHED_FIFO/SCHED_RR use it)")
    if sched.get("flags") is not None:
        for i, flag in enumerate(_list(sched["flags"], f"{where}.flags")):
            _one_of(flag, f"{where}.flags[{i}]", SCHED_FLAGS)
    times = {}
    for key in ("runtime", "deadline", "period"):
        if sched.get(key) is not None:
            times[key] = _int(sched[key], f"{where}.{key}", UINT64)
    if policy == "SCHED_DEADLINE":
        _check_deadline(times.get("runtime", 0), times.get("deadline", 0),
                        times.get("period", 0), where)


def _check_deadline(runtime: int, deadline: int, period: int, where: str) -> None:
    # The kernel's rules (__checkparam_dl): runtime >= 1024 ns, runtime <= deadline,
    # and deadline <= period when a period is given.
    if runtime < 1024:
        _fail(f"{where}.runtime", "SCHED_DEADLINE needs a runtime of at least 1024 ns")
    if deadline < runtime:
        _fail(f"{where}.deadline", f"deadline {deadline} is below the runtime {runtime}")
    if period and period < deadline:
        _fail(f"{where}.period", f"period {period} is below the deadline {deadline}")


# --- mounts and hooks -----------------------------------------------------------------------

def _check_mounts(value, where: str) -> None:
    if value is None:
        return
    for i, item in enumerate(_list(value, where)):
        at = f"{where}[{i}]"
        mount = _obj(item, at)
        _abs_path(_required(mount, "destination", at), f"{at}.destination")
        for key in ("type", "source"):
            if mount.get(key) is not None:
                _str(mount[key], f"{at}.{key}")
        # Unknown options are filesystem data (mode=755, size=...): only their type is checked.
        if mount.get("options") is not None:
            _str_list(mount["options"], f"{at}.options")
        uid_maps = _check_id_mappings(mount.get("uidMappings"), f"{at}.uidMappings")
        gid_maps = _check_id_mappings(mount.get("gidMappings"), f"{at}.gidMappings")
        if bool(uid_maps) != bool(gid_maps):
            missing = "gidMappings" if uid_maps else "uidMappings"
            _fail(f"{at}.{missing}", "an id-mapped mount needs both uidMappings and gidMappings")


def _check_hooks(value, where: str) -> None:
    if value is None:
        return
    hooks = _obj(value, where)
    for name in HOOK_NAMES:
        if hooks.get(name) is None:
            continue
        for i, item in enumerate(_list(hooks[name], f"{where}.{name}")):
            at = f"{where}.{name}[{i}]"
            hook = _obj(item, at)
            _abs_path(_required(hook, "path", at), f"{at}.path")
            if hook.get("args") is not None:
                _str_list(hook["args"], f"{at}.args")
            if hook.get("env") is not None:
                _str_list(hook["env"], f"{at}.env")
            if hook.get("timeout") is not None:
                timeout = _int(hook["timeout"], f"{at}.timeout", INT64)
                if timeout <= 0:
                    _fail(f"{at}.timeout", f"must be greater than zero, not {timeout}")


# --- linux ------------------------------------------------------------------------------------

def _check_namespaces(value, where: str) -> dict:
    """Namespace type -> path ("" for a new one); duplicates and unknown types are errors."""
    found: dict[str, str] = {}
    if value is None:
        return found
    for i, item in enumerate(_list(value, where)):
        at = f"{where}[{i}]"
        ns = _obj(item, at)
        kind = _one_of(_required(ns, "type", at), f"{at}.type", NAMESPACE_TYPES)
        if kind in found:
            _fail(f"{at}.type", f"namespace {kind!r} is listed twice")
        path = ""
        if ns.get("path") is not None:
            path = _abs_path(ns["path"], f"{at}.path")
        found[kind] = path
    return found


def _check_linux(linux: dict, where: str, namespaces: dict) -> None:
    _check_user_namespace(linux, where, namespaces)
    if linux.get("devices") is not None:
        _check_devices(linux["devices"], f"{where}.devices")
    _check_string_map(linux.get("sysctl"), f"{where}.sysctl")
    for key in ("cgroupsPath", "mountLabel"):
        if linux.get(key) is not None:
            _str(linux[key], f"{where}.{key}")
    if linux.get("resources") is not None:
        _check_schema(linux["resources"], _RESOURCES, f"{where}.resources")
    if linux.get("rootfsPropagation") is not None:
        _one_of(linux["rootfsPropagation"], f"{where}.rootfsPropagation", ROOTFS_PROPAGATIONS)
    for key in ("maskedPaths", "readonlyPaths"):
        if linux.get(key) is not None:
            for i, path in enumerate(_list(linux[key], f"{where}.{key}")):
                _abs_path(path, f"{where}.{key}[{i}]")
    if linux.get("seccomp") is not None:
        _check_seccomp(linux["seccomp"], f"{where}.seccomp")
    if linux.get("personality") is not None:
        personality = _obj(linux["personality"], f"{where}.personality")
        _one_of(_required(personality, "domain", f"{where}.personality"),
                f"{where}.personality.domain", PERSONALITY_DOMAINS)
        if personality.get("flags") is not None:
            _str_list(personality["flags"], f"{where}.personality.flags")
    if linux.get("timeOffsets") is not None:
        _check_time_offsets(linux["timeOffsets"], f"{where}.timeOffsets", namespaces)
    if linux.get("intelRdt") is not None:
        _fail(f"{where}.intelRdt", "Intel RDT is not supported by hutch")
    if linux.get("memoryPolicy") is not None:
        from hutch.security.process import parse_memory_policy   # only when one is set
        parse_memory_policy(linux["memoryPolicy"], f"{where}.memoryPolicy")


def _check_id_mappings(value, where: str) -> list:
    """A list of {containerID, hostID, size}: no empty, overflowing or overlapping range."""
    if value is None:
        return []
    mappings = _list(value, where)
    if len(mappings) > MAX_ID_MAP_LINES:
        _fail(where, f"has {len(mappings)} entries; the kernel accepts at most {MAX_ID_MAP_LINES}")
    ranges = []
    for i, item in enumerate(mappings):
        at = f"{where}[{i}]"
        mapping = _obj(item, at)
        inner = _int(_required(mapping, "containerID", at), f"{at}.containerID", UINT32)
        outer = _int(_required(mapping, "hostID", at), f"{at}.hostID", UINT32)
        size = _int(_required(mapping, "size", at), f"{at}.size", UINT32)
        if size == 0:
            _fail(f"{at}.size", "must be greater than zero")
        for start, key in ((inner, "containerID"), (outer, "hostID")):
            if start + size > UINT32[1]:   # the kernel refuses a range reaching 2^32 - 1
                _fail(f"{at}.size", f"{key} {start} + size {size} overflows the 32-bit id space")
        for j, (other_inner, other_outer, other_size) in enumerate(ranges):
            for key, a, b in (("containerID", inner, other_inner), ("hostID", outer, other_outer)):
                if a < b + other_size and b < a + size:
                    _fail(f"{at}.{key}", f"range overlaps {where}[{j}]")
        ranges.append((inner, outer, size))
    return mappings


def _check_user_namespace(linux: dict, where: str, namespaces: dict) -> None:
    """Mappings exactly when a new user namespace is created (runc refuses the rest too)."""
    uid_maps = _check_id_mappings(linux.get("uidMappings"), f"{where}.uidMappings")
    gid_maps = _check_id_mappings(linux.get("gidMappings"), f"{where}.gidMappings")
    if "user" not in namespaces:
        for key, maps in (("uidMappings", uid_maps), ("gidMappings", gid_maps)):
            if maps:
                _fail(f"{where}.{key}", "mappings need a user namespace "
                                        "(add {\"type\": \"user\"} to linux.namespaces)")
    elif namespaces["user"]:
        for key, maps in (("uidMappings", uid_maps), ("gidMappings", gid_maps)):
            if maps:
                _fail(f"{where}.{key}", "must not be set when joining an existing user namespace "
                                        "(its mappings are already in place)")
    else:
        for key, maps in (("uidMappings", uid_maps), ("gidMappings", gid_maps)):
            if not maps:
                _fail(f"{where}.{key}", "is required when a new user namespace is created")


def _check_devices(value, where: str) -> None:
    for i, item in enumerate(_list(value, where)):
        at = f"{where}[{i}]"
        device = _obj(item, at)
        kind = _one_of(_required(device, "type", at), f"{at}.type", DEVICE_TYPES)
        _abs_path(_required(device, "path", at), f"{at}.path")
        for key in ("major", "minor"):
            if device.get(key) is not None:
                _int(device[key], f"{at}.{key}", INT64)
            elif kind != "p":   # a FIFO needs no device number; c, b and u do
                _fail(f"{at}.{key}", f"is required for a device of type {kind!r}")
        for key in ("fileMode", "uid", "gid"):
            if device.get(key) is not None:
                _int(device[key], f"{at}.{key}", UINT32)


def _check_seccomp(value, where: str) -> None:
    seccomp = _obj(value, where)
    default = _one_of(_required(seccomp, "defaultAction", where), f"{where}.defaultAction",
                      SECCOMP_ACTIONS)
    if default == "SCMP_ACT_NOTIFY":
        # The runtime itself makes system calls after loading the filter: they would block.
        _fail(f"{where}.defaultAction", "SCMP_ACT_NOTIFY cannot be the default action")
    if seccomp.get("defaultErrnoRet") is not None:
        _int(seccomp["defaultErrnoRet"], f"{where}.defaultErrnoRet", UINT32)
        if default not in SECCOMP_ERRNO_ACTIONS:
            _fail(f"{where}.defaultErrnoRet", f"{default} takes no errno "
                                              "(only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)")
    for key, allowed in (("architectures", SECCOMP_ARCHS), ("flags", SECCOMP_FLAGS)):
        if seccomp.get(key) is not None:
            for i, name in enumerate(_list(seccomp[key], f"{where}.{key}")):
                _one_of(name, f"{where}.{key}[{i}]", allowed)
    for key in ("listenerPath", "listenerMetadata"):
        if seccomp.get(key) is not None:
            _str(seccomp[key], f"{where}.{key}")
    if seccomp.get("syscalls") is None:
        return
    for i, item in enumerate(_list(seccomp["syscalls"], f"{where}.syscalls")):
        _check_seccomp_rule(item, f"{where}.syscalls[{i}]", bool(seccomp.get("listenerPath")))


def _check_seccomp_rule(value, where: str, has_listener: bool) -> None:
    rule = _obj(value, where)
    names = _str_list(_required(rule, "names", where), f"{where}.names")
    if not names:
        _fail(f"{where}.names", "must name at least one system call")
    for i, name in enumerate(names):
        if not name:
            _fail(f"{where}.names[{i}]", "must not be empty")
    action = _one_of(_required(rule, "action", where), f"{where}.action", SECCOMP_ACTIONS)
    if action == "SCMP_ACT_NOTIFY" and not has_listener:
        _fail(f"{where}.action", "SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath")
    if rule.get("errnoRet") is not None:
        _int(rule["errnoRet"], f"{where}.errnoRet", UINT32)
        if action not in SECCOMP_ERRNO_ACTIONS:
            _fail(f"{where}.errnoRet", f"{action} takes no errno "
                                       "(only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)")
    if rule.get("args") is None:
        return
    for i, item in enumerate(_list(rule["args"], f"{where}.args")):
        at = f"{where}.args[{i}]"
        arg = _obj(item, at)
        _int(_required(arg, "index", at), f"{at}.index", (0, SECCOMP_MAX_ARG_INDEX))
        _int(_required(arg, "value", at), f"{at}.value", UINT64)
        if arg.get("valueTwo") is not None:
            _int(arg["valueTwo"], f"{at}.valueTwo", UINT64)
        _one_of(_required(arg, "op", at), f"{at}.op", SECCOMP_OPERATORS)


def _check_time_offsets(value, where: str, namespaces: dict) -> None:
    offsets = _obj(value, where)
    for clock, item in offsets.items():
        at = _at(where, clock)
        if clock not in TIME_OFFSET_CLOCKS:
            _fail(at, f"unknown clock {clock!r} (expected one of: {', '.join(TIME_OFFSET_CLOCKS)})")
        offset = _obj(item, at)
        if offset.get("secs") is not None:
            _int(offset["secs"], f"{at}.secs", INT64)
        if offset.get("nanosecs") is not None:
            _int(offset["nanosecs"], f"{at}.nanosecs", (0, 999_999_999))
    if offsets and namespaces.get("time", None) != "":
        _fail(where, "time offsets need a new time namespace (add {\"type\": \"time\"} "
                     "to linux.namespaces, without a path)")


# --- linux.resources: types only (the cgroups code checks meaning) --------------------------------
#
# A schema is a type name, a dict of field -> schema (a name ending in "!" is required),
# ("list", schema) or ("map", schema).

_DEVICE_NUMBER = {"major!": "int64", "minor!": "int64"}
_THROTTLE = ("list", {**_DEVICE_NUMBER, "rate": "uint64"})

_RESOURCES = {
    "devices": ("list", {"allow!": "bool", "type": "str", "major": "int64", "minor": "int64",
                         "access": "str"}),
    "memory": {"limit": "int64", "reservation": "int64", "swap": "int64", "kernel": "int64",
               "kernelTCP": "int64", "swappiness": "uint64", "disableOOMKiller": "bool",
               "useHierarchy": "bool", "checkBeforeUpdate": "bool"},
    "cpu": {"shares": "uint64", "quota": "int64", "burst": "uint64", "period": "uint64",
            "realtimeRuntime": "int64", "realtimePeriod": "uint64", "cpus": "str",
            "mems": "str", "idle": "int64"},
    "pids": {"limit": "int64"},
    "blockIO": {"weight": "uint16", "leafWeight": "uint16",
                "weightDevice": ("list", {**_DEVICE_NUMBER, "weight": "uint16",
                                          "leafWeight": "uint16"}),
                "throttleReadBpsDevice": _THROTTLE, "throttleWriteBpsDevice": _THROTTLE,
                "throttleReadIOPSDevice": _THROTTLE, "throttleWriteIOPSDevice": _THROTTLE},
    "hugepageLimits": ("list", {"pageSize!": "str", "limit!": "uint64"}),
    "network": {"classID": "uint32", "priorities": ("list", {"name!": "str",
                                                             "priority!": "uint32"})},
    "rdma": ("map", {"hcaHandles": "uint32", "hcaObjects": "uint32"}),
    "unified": ("map", "str"),
}

_SCALARS = {
    "bool": _bool, "str": _str,
    "int64": lambda v, w: _int(v, w, INT64), "uint64": lambda v, w: _int(v, w, UINT64),
    "uint32": lambda v, w: _int(v, w, UINT32), "uint16": lambda v, w: _int(v, w, UINT16),
}


def _check_schema(value, schema, where: str) -> None:
    if isinstance(schema, str):
        _SCALARS[schema](value, where)
    elif isinstance(schema, tuple):
        kind, item_schema = schema
        if kind == "list":
            for i, item in enumerate(_list(value, where)):
                _check_schema(item, item_schema, f"{where}[{i}]")
        else:
            for key, item in _obj(value, where).items():
                _check_schema(item, item_schema, _at(where, key))
    else:
        fields = _obj(value, where)
        for name, field_schema in schema.items():
            key = name.rstrip("!")
            if fields.get(key) is None:
                if name.endswith("!"):
                    _fail(_at(where, key), "is required")
                continue
            _check_schema(fields[key], field_schema, _at(where, key))


def validate_process(process, where: str = "process") -> None:
    """Check one process object (as `exec --process FILE` gives it) like config.json's."""
    _check_process(process, where)
