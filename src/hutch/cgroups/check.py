"""Validation of OCI ``linux.resources`` before anything is written.

Pure checks on the JSON value: types, ranges and forms.  Every problem is a
:class:`ConfigError` whose ``where`` is the JSON path (``linux.resources.memory.limit``),
so the user sees the field and the value at fault.  Backend-specific checks
(a v2 key on v1, realtime on v2, a controller that is not mounted) live in the
backends because they depend on the host.
"""

from __future__ import annotations

from hutch import checks
from hutch.errors import ConfigError

BASE = "linux.resources"
_CPUSET_PATTERN = r"^\s*(\d+(-\d+)?)(\s*,\s*\d+(-\d+)?)*\s*$"
_UNIFIED_KEY_PATTERN = r"^[a-z_0-9]+\.[A-Za-z_0-9.]+$"


def _match(pattern: str, text: str):
    """re.match, importing `re` only when a value needs it: `re` (with enum) costs
    ~5 ms, and create/delete import this module on every run."""
    import re
    return re.match(pattern, text)
INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1

# which JSON keys each section may carry (unknown keys are errors: a typo must not pass silently)
_KNOWN = {
    "memory": {"limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness",
               "disableOOMKiller", "useHierarchy", "checkBeforeUpdate"},
    "cpu": {"shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "cpus",
            "mems", "idle"},
    "pids": {"limit"},
    "blockIO": {"weight", "leafWeight", "weightDevice", "throttleReadBpsDevice",
                "throttleWriteBpsDevice", "throttleReadIOPSDevice", "throttleWriteIOPSDevice"},
    "network": {"classID", "priorities"},
}
TOP_KEYS = {"memory", "cpu", "pids", "blockIO", "hugepageLimits", "network", "devices", "rdma",
            "unified"}
UNIFIED_CORE_KEYS = {"cgroup.max.depth", "cgroup.max.descendants"}
THROTTLES = ("throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice",
             "throttleWriteIOPSDevice")


_CHECK = checks.Checker(
    lambda value, expected, low, high: "invalid value {!r}: expected {}".format(
        value, "true or false" if expected == checks.BOOLEAN else expected),
    lambda value, low, high: f"invalid value {value}: must be between {low} and {high}",
    ConfigError)
_int, _bool, _dict, _list = _CHECK.integer, _CHECK.boolean, _CHECK.object, _CHECK.array


def _known(section: dict, keys: set, where: str) -> None:
    for key in section:
        if key not in keys:
            raise ConfigError(f"unknown field {key!r}", where=f"{where}.{key}")


def validate(resources: dict | None) -> dict:
    """Check an OCI linux.resources object; returns it unchanged (or {} for None)."""
    if resources is None:
        return {}
    _dict(resources, BASE)
    _known(resources, TOP_KEYS, BASE)
    checks = {"memory": _memory, "cpu": _cpu, "pids": _pids, "blockIO": _block_io,
              "hugepageLimits": _hugepages, "network": _network, "devices": _devices,
              "rdma": _rdma, "unified": _unified}
    for key, check in checks.items():
        if resources.get(key) is not None:
            check(resources[key], f"{BASE}.{key}")
    return resources


def _memory(mem, where: str) -> None:
    _dict(mem, where)
    _known(mem, _KNOWN["memory"], where)
    for key in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
        if mem.get(key) is not None:
            _int(mem[key], f"{where}.{key}", -1, INT64_MAX)
    if mem.get("swappiness") is not None:
        _int(mem["swappiness"], f"{where}.swappiness", 0, 100)
    for key in ("disableOOMKiller", "useHierarchy", "checkBeforeUpdate"):
        if mem.get(key) is not None:
            _bool(mem[key], f"{where}.{key}")
    limit, swap = mem.get("limit") or 0, mem.get("swap") or 0
    if limit > 0 and swap > 0 and swap < limit:
        raise ConfigError(f"invalid value {swap}: memory+swap must be >= the memory limit {limit}",
                          where=f"{where}.swap")


def _cpu(cpu, where: str) -> None:
    _dict(cpu, where)
    _known(cpu, _KNOWN["cpu"], where)
    if cpu.get("shares") is not None:
        _int(cpu["shares"], f"{where}.shares", 0, UINT64_MAX)
    if cpu.get("quota") is not None:
        quota = _int(cpu["quota"], f"{where}.quota", -1, INT64_MAX)
        if 0 < quota < 1000:
            raise ConfigError(f"invalid value {quota}: a CPU quota must be at least 1000 "
                              "microseconds (or -1 for none)", where=f"{where}.quota")
    if cpu.get("period") is not None:
        period = _int(cpu["period"], f"{where}.period", 0, UINT64_MAX)
        if period and not 1000 <= period <= 1_000_000:
            raise ConfigError(f"invalid value {period}: a CPU period must be between 1000 and "
                              "1000000 microseconds", where=f"{where}.period")
    if cpu.get("burst") is not None:
        _int(cpu["burst"], f"{where}.burst", 0, UINT64_MAX)
    if cpu.get("realtimeRuntime") is not None:
        _int(cpu["realtimeRuntime"], f"{where}.realtimeRuntime", -1, INT64_MAX)
    if cpu.get("realtimePeriod") is not None:
        _int(cpu["realtimePeriod"], f"{where}.realtimePeriod", 0, UINT64_MAX)
    if cpu.get("idle") is not None:
        _int(cpu["idle"], f"{where}.idle", 0, 1)
    for key in ("cpus", "mems"):
        value = cpu.get(key)
        if value is not None and value != "":
            if not isinstance(value, str) or not _match(_CPUSET_PATTERN, value):
                raise ConfigError(f"invalid value {value!r}: expected a list like 0-2,4",
                                  where=f"{where}.{key}")
            for part in value.replace(" ", "").split(","):
                lo, _, hi = part.partition("-")
                if hi and int(hi) < int(lo):
                    raise ConfigError(f"invalid range {part!r} in {value!r}", where=f"{where}.{key}")


def _pids(pids, where: str) -> None:
    _dict(pids, where)
    _known(pids, _KNOWN["pids"], where)
    if "limit" in pids and pids["limit"] is not None:
        _int(pids["limit"], f"{where}.limit", -1, INT64_MAX)


def _device_ref(entry, where: str) -> None:
    _dict(entry, where)
    for key in ("major", "minor"):
        if key not in entry:
            raise ConfigError(f"missing field {key!r}", where=where)
        _int(entry[key], f"{where}.{key}", 0, (1 << 32) - 1)


def _block_io(bio, where: str) -> None:
    _dict(bio, where)
    _known(bio, _KNOWN["blockIO"], where)
    for key in ("weight", "leafWeight"):
        if bio.get(key) is not None and bio[key] != 0:
            _int(bio[key], f"{where}.{key}", 10, 1000)
    for i, dev in enumerate(_list(bio.get("weightDevice") or [], f"{where}.weightDevice")):
        path = f"{where}.weightDevice[{i}]"
        _device_ref(dev, path)
        for key in ("weight", "leafWeight"):
            if dev.get(key) is not None and dev[key] != 0:
                _int(dev[key], f"{path}.{key}", 10, 1000)
    for key in THROTTLES:
        for i, dev in enumerate(_list(bio.get(key) or [], f"{where}.{key}")):
            path = f"{where}.{key}[{i}]"
            _device_ref(dev, path)
            if "rate" not in dev:
                raise ConfigError("missing field 'rate'", where=path)
            _int(dev["rate"], f"{path}.rate", 0, UINT64_MAX)


def _hugepages(limits, where: str) -> None:
    from hutch.cgroups.convert import hugepage_size_to_bytes
    for i, entry in enumerate(_list(limits, where)):
        path = f"{where}[{i}]"
        _dict(entry, path)
        hugepage_size_to_bytes(entry.get("pageSize", ""), f"{path}.pageSize")
        if "limit" not in entry:
            raise ConfigError("missing field 'limit'", where=path)
        _int(entry["limit"], f"{path}.limit", 0, UINT64_MAX)


def _network(net, where: str) -> None:
    _dict(net, where)
    _known(net, _KNOWN["network"], where)
    if net.get("classID") is not None:
        _int(net["classID"], f"{where}.classID", 0, (1 << 32) - 1)
    for i, prio in enumerate(_list(net.get("priorities") or [], f"{where}.priorities")):
        path = f"{where}.priorities[{i}]"
        _dict(prio, path)
        name = prio.get("name")
        if not isinstance(name, str) or not name or "/" in name or " " in name:
            raise ConfigError(f"invalid interface name {name!r}", where=f"{path}.name")
        _int(prio.get("priority"), f"{path}.priority", 0, (1 << 32) - 1)


def _devices(rules, where: str) -> None:
    for i, rule in enumerate(_list(rules, where)):
        path = f"{where}[{i}]"
        _dict(rule, path)
        if "allow" not in rule:
            raise ConfigError("missing field 'allow'", where=path)
        _bool(rule["allow"], f"{path}.allow")
        dtype = rule.get("type", "a")
        if dtype not in ("a", "b", "c"):
            raise ConfigError(f"invalid device type {dtype!r}: use a, b or c", where=f"{path}.type")
        for key in ("major", "minor"):
            if rule.get(key) is not None:
                _int(rule[key], f"{path}.{key}", -1, (1 << 32) - 1)
        access = rule.get("access", "rwm")
        if not isinstance(access, str) or not access or set(access) - set("rwm"):
            raise ConfigError(f"invalid device access {access!r}: use letters from rwm",
                              where=f"{path}.access")


def _rdma(rdma, where: str) -> None:
    _dict(rdma, where)
    for name, entry in rdma.items():
        path = f"{where}.{name}"
        if not name or " " in name or "/" in name:
            raise ConfigError(f"invalid rdma device name {name!r}", where=path)
        _dict(entry, path)
        for key in ("hcaHandles", "hcaObjects"):
            if entry.get(key) is not None:
                _int(entry[key], f"{path}.{key}", 0, (1 << 32) - 1)


def _unified(unified, where: str) -> None:
    _dict(unified, where)
    for key, value in unified.items():
        path = f"{where}.{key}"
        if not _match(_UNIFIED_KEY_PATTERN, key):
            raise ConfigError(f"invalid cgroup v2 file name {key!r}: expected controller.file",
                              where=path)
        if key.startswith("cgroup.") and key not in UNIFIED_CORE_KEYS:
            # membership, freezing and killing belong to the runtime, not to resources
            raise ConfigError(f"{key} cannot be set through linux.resources.unified "
                              f"(allowed core files: {', '.join(sorted(UNIFIED_CORE_KEYS))})",
                              where=path)
        if not isinstance(value, str):
            raise ConfigError(f"invalid value {value!r}: expected a string", where=path)
