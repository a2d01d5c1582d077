"""Command-line style limits (docker/runc flags) -> OCI ``linux.resources``.

Used by `hutch run --memory 256m --cpus 0.5 --pids-limit 100` and `hutch update`.
Each option's name (as a flag) is the ``where`` of its error."""

from __future__ import annotations

from hutch.cgroups.convert import cpus_to_quota, parse_int, parse_size
from hutch.cgroups.check import validate
from hutch.errors import ConfigError


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resources_from_options(memory=None, memory_swap=None, memory_reservation=None,
                           kernel_memory=None, memory_swappiness=None, oom_kill_disable=None,
                           cpus=None, cpu_shares=None, cpu_quota=None, cpu_period=None,
                           cpu_rt_runtime=None, cpu_rt_period=None, cpuset_cpus=None,
                           cpuset_mems=None, pids_limit=None, blkio_weight=None) -> dict:
    """Only the options given (not None) appear in the result; the result is validated."""
    mem: dict = {}
    if memory is not None:
        mem["limit"] = parse_size(memory, "--memory", allow_unlimited=True)
    if memory_swap is not None:
        mem["swap"] = parse_size(memory_swap, "--memory-swap", allow_unlimited=True)
    if memory_reservation is not None:
        mem["reservation"] = parse_size(memory_reservation, "--memory-reservation",
                                        allow_unlimited=True)
    if kernel_memory is not None:
        mem["kernel"] = parse_size(kernel_memory, "--kernel-memory", allow_unlimited=True)
    if memory_swappiness is not None:
        mem["swappiness"] = parse_int(memory_swappiness, "--memory-swappiness", minimum=0)
        if mem["swappiness"] > 100:
            raise ConfigError(f"invalid value {memory_swappiness}: must be between 0 and 100",
                              where="--memory-swappiness")
    if oom_kill_disable:
        mem["disableOOMKiller"] = True

    cpu: dict = {}
    if cpus is not None:
        if cpu_quota is not None:
            raise ConfigError("--cpus and --cpu-quota cannot be used together", where="--cpus")
        period = parse_int(cpu_period, "--cpu-period", minimum=1000) if cpu_period else 100_000
        cpu["quota"], cpu["period"] = cpus_to_quota(cpus, period=period)
    if cpu_shares is not None:
        cpu["shares"] = parse_int(cpu_shares, "--cpu-shares", minimum=0)
    if cpu_quota is not None:
        cpu["quota"] = parse_int(cpu_quota, "--cpu-quota", minimum=-1)
    if cpu_period is not None:
        cpu["period"] = parse_int(cpu_period, "--cpu-period", minimum=0)
    if cpu_rt_runtime is not None:
        cpu["realtimeRuntime"] = parse_int(cpu_rt_runtime, "--cpu-rt-runtime", minimum=-1)
    if cpu_rt_period is not None:
        cpu["realtimePeriod"] = parse_int(cpu_rt_period, "--cpu-rt-period", minimum=0)
    if cpuset_cpus is not None:
        cpu["cpus"] = str(cpuset_cpus)
    if cpuset_mems is not None:
        cpu["mems"] = str(cpuset_mems)

    out: dict = {}
    if mem:
        out["memory"] = mem
    if cpu:
        out["cpu"] = cpu
    if pids_limit is not None:
        out["pids"] = {"limit": parse_int(pids_limit, "--pids-limit", minimum=-1)}
    if blkio_weight is not None:
        out["blockIO"] = {"weight": parse_int(blkio_weight, "--blkio-weight", minimum=0)}
    _validate_as_options(out)
    return out


_FLAG_OF = {"memory.limit": "--memory", "memory.swap": "--memory-swap",
            "memory.reservation": "--memory-reservation", "memory.kernel": "--kernel-memory",
            "cpu.shares": "--cpu-shares", "cpu.quota": "--cpu-quota", "cpu.period": "--cpu-period",
            "cpu.realtimeRuntime": "--cpu-rt-runtime", "cpu.realtimePeriod": "--cpu-rt-period",
            "cpu.cpus": "--cpuset-cpus", "cpu.mems": "--cpuset-mems", "pids.limit": "--pids-limit",
            "blockIO.weight": "--blkio-weight", "memory.swappiness": "--memory-swappiness"}


def _validate_as_options(resources: dict) -> None:
    """Run the OCI checks but name the flag, not the JSON path, in errors."""
    try:
        validate(resources)
    except ConfigError as err:
        key = (err.where or "").removeprefix("linux.resources.")
        if key in _FLAG_OF:
            err.where = _FLAG_OF[key]
        raise
