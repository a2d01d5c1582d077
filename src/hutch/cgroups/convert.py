"""Pure conversions between units and between cgroup v1 and v2 values (as runc does them).

Nothing here touches the file system, so all of it is unit tested without root.
"""

from __future__ import annotations

from hutch.errors import ConfigError

# docker/runc units.RAMInBytes: binary multiples, the unit letter optionally followed by "b"/"ib".
_SIZE_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$"
_SIZE_MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}

DEFAULT_CPU_PERIOD = 100_000      # microseconds, the kernel's and docker's default


def parse_size(text: str | int, where: str, allow_unlimited: bool = False) -> int:
    """'256m' -> 268435456 (binary units like docker); '-1' -> -1 when allow_unlimited."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        raw = str(text).strip()
        if allow_unlimited and raw == "-1":
            return -1
        import re       # here, not at the top: the systemd driver's create path imports convert
        match = re.match(_SIZE_PATTERN, raw, re.IGNORECASE)
        if not match:
            raise ConfigError(f"invalid size {text!r}: use a number with an optional unit "
                              "b, k, m, g, t (e.g. 256m)", where=where)
        value = int(float(match.group(1)) * _SIZE_MULT[match.group(2).lower()])
    if value == -1 and allow_unlimited:
        return -1
    if value < 0:
        raise ConfigError(f"invalid size {text!r}: must not be negative", where=where)
    return value


def parse_int(text: str | int, where: str, minimum: int | None = None) -> int:
    try:
        value = int(str(text).strip(), 10)
    except ValueError:
        raise ConfigError(f"invalid integer {text!r}", where=where) from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"invalid value {value}: must be at least {minimum}", where=where)
    return value


def cpus_to_quota(cpus: str | float, where: str = "--cpus",
                  period: int = DEFAULT_CPU_PERIOD) -> tuple[int, int]:
    """docker --cpus 0.5 -> (quota 50000, period 100000)."""
    try:
        value = float(cpus)
    except (TypeError, ValueError):
        raise ConfigError(f"invalid number of CPUs {cpus!r}", where=where) from None
    if value <= 0 or value != value or value == float("inf"):
        raise ConfigError(f"invalid number of CPUs {cpus!r}: must be greater than 0", where=where)
    return int(round(value * period)), period


def shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] -> cpu.weight [1, 10000] (runc ConvertCPUSharesToCgroupV2Value)."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def weight_to_shares(weight: int) -> int:
    """cpu.weight -> cpu.shares, the inverse mapping (used for stats and v2 -> v1 options)."""
    if weight == 0:
        return 0
    return 2 + ((weight - 1) * 262142) // 9999


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] -> io.weight [1, 10000] (runc ConvertBlkIOToIOWeightValue)."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def io_weight_to_blkio_weight(weight: int) -> int:
    if weight == 0:
        return 0
    return 10 + (weight - 1) * 990 // 9999


def memory_swap_to_v2(swap: int, memory: int) -> int:
    """OCI memory.swap (memory+swap, as v1) -> memory.swap.max (swap alone) as runc does.

    Returns -1 for "max", 0 for "leave unset"."""
    where = "linux.resources.memory.swap"
    if memory == -1 and swap == 0:
        return -1          # unlimited memory and no swap given: both unlimited
    if swap in (-1, 0):
        return swap
    if memory in (0, -1):
        raise ConfigError("unable to set a swap limit without a memory limit", where=where)
    if memory < 0:
        raise ConfigError(f"invalid memory value {memory}", where="linux.resources.memory.limit")
    if swap < memory:
        raise ConfigError(f"memory+swap limit {swap} should be >= memory limit {memory}", where=where)
    return swap - memory


def v2_limit(value: int) -> str:
    """-1 -> 'max', else the number (memory.max, pids.max, memory.swap.max ...)."""
    return "max" if value == -1 else str(value)


def cpu_max(quota: int | None, period: int | None) -> str:
    """cpu.max line from quota/period: 'max 100000', '50000 100000'."""
    q = "max" if quota in (None, -1, 0) else str(quota)
    p = str(period) if period else str(DEFAULT_CPU_PERIOD)
    return f"{q} {p}"


def hugepage_size_to_bytes(size: str, where: str) -> int:
    """'2MB' -> 2097152 (the OCI pageSize / kernel file name form)."""
    import re
    match = re.match(r"^(\d+)([KMG]B)$", size or "")
    if not match:
        raise ConfigError(f"invalid hugepage size {size!r}: use a form like 2MB or 1GB", where=where)
    return int(match.group(1)) * {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[match.group(2)]


def bytes_to_hugepage_size(n: int) -> str:
    """2097152 -> '2MB' (names of hugetlb.<size>.* files and /sys/kernel/mm/hugepages)."""
    for unit, mult in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{unit}"
    return f"{n}B"


def parse_duration(text: str, where: str) -> float:
    """Go-style durations used by runc flags: '5s', '500ms', '1m', '1h', '1.5s'."""
    import re
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)?\s*", text or "")
    if not match:
        raise ConfigError(f"invalid duration {text!r}: use e.g. 5s or 500ms", where=where)
    mult = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
    value = float(match.group(1)) * mult
    if value <= 0:
        raise ConfigError(f"invalid duration {text!r}: must be positive", where=where)
    return value
