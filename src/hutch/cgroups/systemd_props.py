"""Pure logic of the systemd cgroup driver: unit and slice names, and OCI
``linux.resources`` / annotations as systemd transient-unit properties, the way runc
(libcontainer/cgroups/systemd, runc 1.1/1.2) computes them.

Nothing here talks to D-Bus or touches a file: the driver (:mod:`hutch.cgroups.systemd`)
wraps each property in a variant and sends it.  A property is a tuple
``(name, dbus_signature, value)``::

    ("MemoryMax", "t", 268435456)
    ("DeviceAllow", "a(ss)", [("/dev/char/1:3", "rwm")])
    ("AllowedCPUs", "ay", b"\\x0f")
    ("Delegate", "b", True)

``systemd_version`` arguments: None means "new enough for everything" (hutch's hosts run
systemd >= 252); an int (the manager's Version, see :func:`parse_systemd_version`) makes
the version checks runc makes: CPUQuotaPeriodUSec needs 242, AllowedCPUs/AllowedMemoryNodes
244, CPUWeight=idle 252, "char-MAJOR" device globs 240.  -1 (unknown) skips all of them,
as runc does when it cannot read the version.

Where runc and systemd disagree about where a unit lives, the path follows systemd: a
slice unit's cgroup is the expansion of its own name (runc's legacy path joins it under
the parent slice instead, which systemd never does).
"""

from __future__ import annotations

from hutch.cgroups import convert, devices
from hutch.errors import ConfigError

Property = tuple  # (name: str, dbus_signature: str, value)

UINT64_MAX = (1 << 64) - 1
USEC_INFINITY = UINT64_MAX          # systemd's "no limit" for usec and byte properties
INT64_MAX = (1 << 63) - 1
CGROUP_WEIGHT_IDLE = 0              # CPUWeight=idle over D-Bus (systemd >= 252)

WHERE_PATH = "linux.cgroupsPath"
BASE = "linux.resources"
UNIT_NAME_MAX = 255                 # systemd UNIT_NAME_MAX (256) minus the NUL
_UNIT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\")
_ASCII_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
# A cpuset bit beyond this is refused rather than allocated (kernel NR_CPUS tops at 8192,
# MAX_NUMNODES at 1024); runc would build the bitmap however large.
CPUSET_MAX_BIT = 1 << 16

# systemd feature versions (the checks runc makes)
SD_CPU_QUOTA_PERIOD = 242
SD_ALLOWED_CPUS = 244
SD_DEVICE_MAJOR_GLOB = 240
SD_CPU_IDLE = 252


def _supports(systemd_version: int | None, needed: int) -> bool:
    return systemd_version is None or systemd_version >= needed


def parse_systemd_version(text: str) -> int:
    """The manager's Version property -> its number, as runc systemdVersionAtoi:
    '252.38-1~deb12u1', 'v245.4-1.fc32', '"245"' -> 252/245; -1 when there is none."""
    text = str(text).lstrip('"v')
    digits = ""
    for ch in text:
        if ch not in _DIGITS:
            break
        digits += ch
    return int(digits) if digits else -1


# --- names and paths ---------------------------------------------------------------

def _check_unit_chars(name: str, what: str, where: str) -> None:
    if not name:
        raise ConfigError(f"invalid {what}: empty name", where=where)
    if len(name) > UNIT_NAME_MAX:
        raise ConfigError(f"invalid {what} {name[:40]!r}...: longer than {UNIT_NAME_MAX} "
                          "characters", where=where)
    bad = sorted(set(name) - _UNIT_CHARS)
    if bad:
        raise ConfigError(f"invalid {what} {name!r}: character {bad[0]!r} is not allowed in a "
                          "systemd unit name (use letters, digits, ':', '-', '_', '.', '\\')",
                          where=where)


def expand_slice(name: str, where: str = WHERE_PATH) -> str:
    """A slice name -> its cgroup path, as systemd/runc ExpandSlice.

    '-.slice' -> '/'; 'system.slice' -> '/system.slice';
    'a-b-c.slice' -> '/a.slice/a-b.slice/a-b-c.slice'.  A dash separates the levels, so
    an empty level ('-a.slice', 'a--b.slice', 'a-.slice', '.slice') is refused."""
    suffix = ".slice"
    if not isinstance(name, str) or not name.endswith(suffix):
        raise ConfigError(f"invalid slice name {name!r}: a slice name ends in .slice", where=where)
    if "/" in name:
        raise ConfigError(f"invalid slice name {name!r}: it must not contain '/'", where=where)
    _check_unit_chars(name, "slice name", where)
    stem = name[:-len(suffix)]
    if stem == "-":
        return "/"                      # the root slice
    path, prefix = "", ""
    for component in stem.split("-"):
        if not component:
            raise ConfigError(f"invalid slice name {name!r}: empty level between dashes "
                              "(no leading, trailing or double '-')", where=where)
        path += "/" + prefix + component + suffix
        prefix += component + "-"
    return path


def is_slice(unit: str) -> bool:
    return unit.endswith(".slice")


def unit_name(prefix: str, name: str, where: str = WHERE_PATH) -> str:
    """The unit for cgroupsPath 'slice:prefix:name', as runc getUnitName.

    A name ending in '.slice' is a slice unit of that name; anything else is the scope
    'prefix-name.scope'.  Like runc there is no special case for an empty prefix
    ('-name.scope') nor for a name already ending in '.scope' ('p-x.scope.scope'), so
    the unit is the one runc would use for the same config."""
    if is_slice(name):
        expand_slice(name, where)       # a slice must have a well-formed name to be placed
        return name
    unit = f"{prefix}-{name}.scope"
    _check_unit_chars(unit, "unit name", where)
    return unit


def unit_cgroup_path(slice_: str, unit: str, where: str = WHERE_PATH) -> str:
    """The unit's cgroup path inside a hierarchy (starting with '/').

    A scope lives in its slice: '/system.slice/hutch-x.scope'.  A slice unit lives where
    its own name puts it, whatever its parent (systemd places slices by name)."""
    if is_slice(unit):
        return expand_slice(unit, where)
    base = expand_slice(slice_, where)
    return ("" if base == "/" else base) + "/" + unit


# --- cpu -------------------------------------------------------------------------------

def cpu_quota_properties(quota: int | None, period: int | None,
                         systemd_version: int | None = None) -> list:
    """OCI cpu.quota/period -> CPUQuotaPeriodUSec and CPUQuotaPerSecUSec (runc addCpuQuota).

    Quota -1 (or 0 with a period) means no limit (USEC_INFINITY).  systemd keeps the quota
    as a whole percentage of a CPU, so a fractional percentage is rounded UP to the next
    10 ms per second: quota 1234/100000 -> 20000."""
    quota = quota or 0
    period = period or 0
    props: list = []
    if period and _supports(systemd_version, SD_CPU_QUOTA_PERIOD):
        props.append(("CPUQuotaPeriodUSec", "t", period))
    if quota or period:
        per_sec = USEC_INFINITY
        if quota > 0:
            per_sec = _quota_per_sec(quota, period or convert.DEFAULT_CPU_PERIOD)
        props.append(("CPUQuotaPerSecUSec", "t", per_sec))
    return props


def _quota_per_sec(quota: int, period: int) -> int:
    per_sec = quota * 1_000_000 // period
    if per_sec % 10_000:
        per_sec = (per_sec // 10_000 + 1) * 10_000
    return per_sec


def _parse_uint(text: str, bits: int = 64) -> int | None:
    """Go strconv.ParseUint(text, 10, bits): digits only, in range; else None."""
    if not text or not set(text) <= _DIGITS:
        return None
    value = int(text)
    return value if value < (1 << bits) else None


def _parse_int(text: str, bits: int = 64) -> int | None:
    """Go strconv.ParseInt(text, 10, bits): an optional sign then digits, in range."""
    sign = 1
    if text[:1] in ("+", "-"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    value = _parse_uint(text, bits + 1)
    if value is None:
        return None
    value *= sign
    limit = 1 << (bits - 1)
    return value if -limit <= value < limit else None


def cpuset_bits(ranges: str, where: str) -> bytes:
    """'0-3,5' -> the CPU (or memory node) mask systemd's AllowedCPUs/AllowedMemoryNodes
    take: little-endian bytes, byte 0 holding CPUs 0-7, no trailing zero bytes (runc
    RangeToBits).  '0-3' -> b'\\x0f', '8' -> b'\\x00\\x01'.  Spaces around an element and
    empty elements (',1,') are allowed as by runc; a value selecting nothing is refused."""
    if not isinstance(ranges, str):
        raise ConfigError(f"invalid cpu list {ranges!r}: expected a string like 0-3,5",
                          where=where)
    mask = 0
    for element in ranges.split(","):
        element = element.strip()
        if not element:
            continue
        start_text, dash, end_text = element.partition("-")
        start = _parse_uint(start_text, 32)
        end = _parse_uint(end_text, 32) if dash else start
        if start is None or end is None:
            raise ConfigError(f"invalid cpu list {ranges!r}: bad element {element!r}", where=where)
        if start > end:
            raise ConfigError(f"invalid cpu list {ranges!r}: range {element!r} ends before it "
                              "starts", where=where)
        if end >= CPUSET_MAX_BIT:
            raise ConfigError(f"invalid cpu list {ranges!r}: {end} is larger than "
                              f"{CPUSET_MAX_BIT - 1}", where=where)
        mask |= ((1 << (end - start + 1)) - 1) << start
    if not mask:
        raise ConfigError(f"invalid cpu list {ranges!r}: it selects nothing", where=where)
    return mask.to_bytes((mask.bit_length() + 7) // 8, "little")


def _cpuset_properties(cpus, mems, systemd_version: int | None) -> list:
    """runc addCpuset: AllowedCPUs / AllowedMemoryNodes (systemd >= 244)."""
    if not cpus and not mems:
        return []
    if not _supports(systemd_version, SD_ALLOWED_CPUS):
        return []                       # runc: too old, cgroupfs gets the value anyway
    props = []
    if cpus:
        props.append(("AllowedCPUs", "ay", cpuset_bits(cpus, f"{BASE}.cpu.cpus")))
    if mems:
        props.append(("AllowedMemoryNodes", "ay", cpuset_bits(mems, f"{BASE}.cpu.mems")))
    return props


def _uint64(value: int) -> int:
    """A Go uint64(int64) conversion: -1 (unlimited) becomes the all-ones 'infinity'."""
    return value & UINT64_MAX


# --- devices -------------------------------------------------------------------------------

def device_properties(rules: list | None, systemd_version: int | None = None,
                      with_defaults: bool = True) -> list:
    """DevicePolicy/DeviceAllow for the device rules (runc devices/systemd.go).

    * default-deny result: DevicePolicy=strict, DeviceAllow reset, then one DeviceAllow
      with an entry per allowed rule: 'char-*'/'block-*' for *:*, 'char-M'/'block-M' for
      M:* (systemd >= 240; skipped before), '/dev/char/M:m' or '/dev/block/M:m' for a
      concrete device.  '*:m' cannot be written for systemd and is skipped (the cgroupfs
      backend still enforces it);
    * default-allow with no exceptions (allow everything): DevicePolicy=auto, DeviceAllow
      reset;
    * default-allow with deny exceptions: systemd has no deny list; like runc this asks
      for strict deny-all (DevicePolicy=strict, DeviceAllow reset) and leaves the real
      rules to the cgroupfs backend that runs after it."""
    emu = devices.emulate_rules(rules, with_defaults, purpose="for systemd")
    reset = ("DeviceAllow", "a(ss)", [])
    if emu.is_blacklist:
        if emu.allows_all:
            return [("DevicePolicy", "s", "auto"), reset]
        return [("DevicePolicy", "s", "strict"), reset]
    entries = []
    for dtype, major, minor, access in emu.final_rules():
        group = "char-" if dtype == "c" else "block-"
        if major == -1:
            if minor != -1:
                continue                # '*:n' has no systemd form
            path = group + "*"
        elif minor == -1:
            if not _supports(systemd_version, SD_DEVICE_MAJOR_GLOB):
                continue                # older systemd wants a /proc/devices group name
            path = f"{group}{major}"
        else:
            path = f"/dev/{'char' if dtype == 'c' else 'block'}/{major}:{minor}"
        entries.append((path, access))
    return [("DevicePolicy", "s", "strict"), reset, ("DeviceAllow", "a(ss)", entries)]


# --- resources ---------------------------------------------------------------------------

def resource_properties(resources: dict | None, v2: bool, systemd_version: int | None = None,
                        default_devices: bool = True) -> list:
    """Unit properties for validated OCI linux.resources (runc genV1ResourcesProperties /
    genV2ResourcesProperties), devices first.  Absent or zero values give no property.

    v1: MemoryLimit, CPUShares, CPU quota, BlockIOWeight, TasksMax, AllowedCPUs/MemoryNodes.
    v2: MemoryMax, MemoryLow, MemorySwapMax, CPUWeight (0 = idle when cpu.idle is 1, which
    then wins over shares, as runc), CPU quota, TasksMax, AllowedCPUs/MemoryNodes, then the
    convertible `unified` keys (see :func:`unified_properties`).

    Everything systemd cannot express (swappiness, hugetlb, rdma, throttles ...) is left to
    the cgroupfs backend, which writes the full set after systemd."""
    resources = resources or {}
    props = device_properties(resources.get("devices"), systemd_version, default_devices)
    memory = resources.get("memory") or {}
    cpu = resources.get("cpu") or {}
    pids = resources.get("pids") or {}
    limit = memory.get("limit") or 0
    if v2:
        props += _v2_memory(memory)
        props += _v2_cpu_weight(cpu, systemd_version)
    else:
        if resources.get("unified"):
            raise ConfigError("cgroup v2 keys (unified) cannot be set on this cgroup v1 host",
                              where=f"{BASE}.unified")
        if limit:
            props.append(("MemoryLimit", "t", _uint64(limit)))
        if cpu.get("shares"):
            props.append(("CPUShares", "t", cpu["shares"]))
    props += cpu_quota_properties(cpu.get("quota"), cpu.get("period"), systemd_version)
    if not v2:
        weight = (resources.get("blockIO") or {}).get("weight")
        if weight:
            props.append(("BlockIOWeight", "t", weight))
    pids_limit = pids.get("limit") or 0
    if pids_limit > 0 or pids_limit == -1:
        props.append(("TasksMax", "t", _uint64(pids_limit)))
    props += _cpuset_properties(cpu.get("cpus"), cpu.get("mems"), systemd_version)
    if v2 and resources.get("unified"):
        props += unified_properties(resources["unified"], systemd_version)
    return props


def _v2_memory(memory: dict) -> list:
    props = []
    limit = memory.get("limit") or 0
    if limit:
        props.append(("MemoryMax", "t", _uint64(limit)))
    if memory.get("reservation"):
        props.append(("MemoryLow", "t", _uint64(memory["reservation"])))
    swap = convert.memory_swap_to_v2(memory.get("swap") or 0, limit)
    if swap:
        props.append(("MemorySwapMax", "t", _uint64(swap)))
    return props


def _v2_cpu_weight(cpu: dict, systemd_version: int | None) -> list:
    if cpu.get("idle") == 1 and _supports(systemd_version, SD_CPU_IDLE):
        return [("CPUWeight", "t", CGROUP_WEIGHT_IDLE)]     # shares are ignored (as runc)
    weight = convert.shares_to_weight(cpu.get("shares") or 0)
    return [("CPUWeight", "t", weight)] if weight > 0 else []


_UNIFIED_MEMORY = {"memory.high": "MemoryHigh", "memory.low": "MemoryLow",
                   "memory.min": "MemoryMin", "memory.max": "MemoryMax",
                   "memory.swap.max": "MemorySwapMax"}


def unified_properties(unified: dict, systemd_version: int | None = None) -> list:
    """linux.resources.unified -> properties, best effort as runc unifiedResToSystemdProps.

    cpu.max ('quota [period]', quota 'max' = no limit, period 100000 by default),
    cpu.weight, cpuset.cpus/mems, memory.high/low/min/max/swap.max and pids.max ('max' =
    infinity) convert; other keys give nothing here (the cgroupfs backend writes them)."""
    props: list = []
    for key, raw in unified.items():
        where = f"{BASE}.unified.{key}"
        if "/" in key:
            raise ConfigError(f"unified resource {key!r} must be a file name (no slashes)",
                              where=where)
        if "." not in key:
            raise ConfigError(f"unified resource {key!r} must be in the form "
                              "CONTROLLER.PARAMETER", where=where)
        value = str(raw).strip()        # the kernel forgives surrounding white space
        if key == "cpu.max":
            props += _unified_cpu_max(value, where, systemd_version)
        elif key == "cpu.weight":
            props.append(("CPUWeight", "t", _unified_uint(value, where, allow_max=False)))
        elif key in ("cpuset.cpus", "cpuset.mems"):
            bits = cpuset_bits(value, where)
            if _supports(systemd_version, SD_ALLOWED_CPUS):
                name = "AllowedCPUs" if key == "cpuset.cpus" else "AllowedMemoryNodes"
                props.append((name, "ay", bits))
        elif key in _UNIFIED_MEMORY:
            props.append((_UNIFIED_MEMORY[key], "t", _unified_uint(value, where)))
        elif key == "pids.max":
            props.append(("TasksMax", "t", _unified_uint(value, where)))
    return props


def _unified_uint(value: str, where: str, allow_max: bool = True) -> int:
    if allow_max and value == "max":
        return UINT64_MAX
    number = _parse_uint(value)
    if number is None:
        raise ConfigError(f"invalid value {value!r}: expected an unsigned integer"
                          + (" or max" if allow_max else ""), where=where)
    return number


def _unified_cpu_max(value: str, where: str, systemd_version: int | None) -> list:
    fields = value.split()
    if not 1 <= len(fields) <= 2:
        raise ConfigError(f"invalid value {value!r}: expected 'QUOTA [PERIOD]'", where=where)
    quota = 0                           # 0: no limit once a period is given
    if fields[0] != "max":
        quota = _parse_int(fields[0])
        if quota is None:
            raise ConfigError(f"invalid quota {fields[0]!r} in {value!r}: expected an integer "
                              "or max", where=where)
    period = convert.DEFAULT_CPU_PERIOD
    if len(fields) == 2:
        period = _parse_uint(fields[1])
        if period is None:
            raise ConfigError(f"invalid period {fields[1]!r} in {value!r}: expected an "
                              "unsigned integer", where=where)
    return cpu_quota_properties(quota, period, systemd_version)


# --- the unit itself ---------------------------------------------------------------------

def base_properties(unit: str, slice_: str, description: str, pid: int | None,
                    v2: bool) -> list:
    """The properties runc starts a container's unit with (startUnit callers in
    systemd/v1.go and v2.go), before resources and annotations.

    A scope goes in its slice (Slice=) with Delegate=yes; a slice unit only Wants= its
    parent.  Accounting is always on (runc: joining the memory cgroup late misbehaves)."""
    props: list = [("Description", "s", description)]
    if is_slice(unit):
        props.append(("Wants", "as", [slice_]))
    else:
        props.append(("Slice", "s", slice_))
        props.append(("Delegate", "b", True))
    if pid is not None and pid != -1:
        props.append(("PIDs", "au", [pid]))
    props += [("MemoryAccounting", "b", True),
              ("CPUAccounting", "b", True),
              ("IOAccounting", "b", True) if v2 else ("BlockIOAccounting", "b", True),
              ("TasksAccounting", "b", True),
              ("DefaultDependencies", "b", False)]
    return props


# --- annotations ---------------------------------------------------------------------------

ANNOTATION_PREFIX = "org.systemd.property."

# GVariant text type keywords -> (signature, lowest, highest)
_TYPED_NUMBERS = {
    "byte": ("y", 0, (1 << 8) - 1), "int16": ("n", -(1 << 15), (1 << 15) - 1),
    "uint16": ("q", 0, (1 << 16) - 1), "int32": ("i", -(1 << 31), (1 << 31) - 1),
    "uint32": ("u", 0, (1 << 32) - 1), "int64": ("x", -(1 << 63), INT64_MAX),
    "uint64": ("t", 0, UINT64_MAX), "double": ("d", None, None),
}
_SIG_KEYWORD = {sig: word for word, (sig, _, _) in _TYPED_NUMBERS.items()}
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}


def annotation_properties(annotations: dict | None) -> list:
    """config.json annotations 'org.systemd.property.<Name>' -> unit properties (runc
    initSystemdProps), in annotation order, appended after hutch's own (so they win).

    The name must be ASCII letters only, at least 3 (runc checkPropertyName).  The value
    is GVariant text; hutch reads this subset of it:

    * true / false -> b;
    * 'text' or "text" (escapes \\\\ \\' \\" \\n \\t \\r) -> s;
    * typed numbers: byte N, int16 N, uint16 N, int32 N, uint32 N, int64 N, uint64 N,
      double X (also '@t N' style) -> y n q i u x t d;
    * an untyped integer -> i (GVariant's default, as runc), except for names ending in
      USec, Max or Limit, which systemd only accepts as t, so hutch sends t;
    * an untyped decimal fraction -> d.

    A name ending in a lowercase letter + 'Sec' (TimeoutStopSec) is renamed to ...USec and
    its number (seconds) converted to t microseconds, as runc does.  Anything else (arrays,
    tuples, other types) is refused naming the annotation."""
    props: list = []
    for key, text in (annotations or {}).items():
        if not isinstance(key, str) or not key.startswith(ANNOTATION_PREFIX):
            continue
        where = f"annotations.{key}"
        name = key[len(ANNOTATION_PREFIX):]
        if len(name) < 3 or not set(name) <= _ASCII_LETTERS:
            raise ConfigError(f"invalid systemd property name {name!r}: use ASCII letters only, "
                              "at least 3", where=where)
        if not isinstance(text, str):
            raise ConfigError(f"invalid value {text!r}: expected a string in GVariant text "
                              "form", where=where)
        sig, value = parse_gvariant(text, where, name)
        if name.endswith("Sec") and len(name) > 3 and name[-4].islower():
            name, sig, value = name[:-3] + "USec", "t", _seconds_to_usec(sig, value, text, where)
        props.append((name, sig, value))
    return props


def _seconds_to_usec(sig: str, value, text: str, where: str) -> int:
    """runc convertSecToUSec: a number of seconds -> uint64 microseconds."""
    if sig not in "ynqiuxtd" or isinstance(value, bool):
        raise ConfigError(f"invalid value {text!r}: a ...Sec property takes a number of seconds",
                          where=where)
    if value < 0:
        raise ConfigError(f"invalid value {text!r}: seconds must not be negative", where=where)
    usec = int(value * 1_000_000)
    if usec > UINT64_MAX:
        raise ConfigError(f"invalid value {text!r}: too large", where=where)
    return usec


def parse_gvariant(text: str, where: str, name: str = "") -> tuple[str, object]:
    """The supported subset of GVariant text (see annotation_properties) -> (sig, value)."""
    body = text.strip()
    if body in ("true", "false"):
        return "b", body == "true"
    if body[:1] in ("'", '"'):
        return "s", _parse_quoted(body, where)
    word, _, rest = body.partition(" ")
    if word.startswith("@") and word[1:] in _SIG_KEYWORD:
        word = _SIG_KEYWORD[word[1:]]
    if word in _TYPED_NUMBERS:
        sig, lo, hi = _TYPED_NUMBERS[word]
        return sig, _parse_number(rest.strip(), sig, lo, hi, text, where)
    if _parse_int(body) is not None:
        if name.endswith(("USec", "Max", "Limit")):
            return "t", _parse_number(body, "t", 0, UINT64_MAX, text, where)
        return "i", _parse_number(body, "i", -(1 << 31), (1 << 31) - 1, text, where)
    if _looks_like_float(body):
        return "d", float(body)
    raise ConfigError(f"unsupported value {text!r}: hutch reads true/false, a quoted string, "
                      "a number or a typed number like 'uint64 1000'", where=where)


def _parse_number(text: str, sig: str, lo, hi, original: str, where: str):
    if sig == "d":
        if _parse_int(text) is not None or _looks_like_float(text):
            return float(text)
        raise ConfigError(f"invalid number {original!r}", where=where)
    value = _parse_int(text, 65)
    if value is None:
        raise ConfigError(f"invalid integer {original!r}", where=where)
    if not lo <= value <= hi:
        raise ConfigError(f"invalid value {original!r}: out of range {lo}..{hi}", where=where)
    return value


def _looks_like_float(text: str) -> bool:
    body = text[1:] if text[:1] in ("+", "-") else text
    whole, dot, frac = body.partition(".")
    return bool(dot) and bool(whole or frac) and set(whole + frac) <= _DIGITS


def _parse_quoted(body: str, where: str) -> str:
    quote = body[0]
    out = []
    i = 1
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt not in _ESCAPES:
                raise ConfigError(f"unsupported escape '\\{nxt}' in {body!r}", where=where)
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        if ch == quote:
            if i != len(body) - 1:
                raise ConfigError(f"unexpected text after the closing quote in {body!r}",
                                  where=where)
            return "".join(out)
        out.append(ch)
        i += 1
    raise ConfigError(f"unterminated string {body!r}", where=where)
