"""cgroup v2 backend: one directory in the unified hierarchy.

OCI values are converted the way runc converts them (shares -> cpu.weight, blkio
weight -> io.weight, memory+swap -> memory.swap.max); device rules become an eBPF
program attached to the directory."""

from __future__ import annotations

import os
import select
import _signal as signal  # the C module: `signal` pulls in enum (5 ms on the start path)
import time

from hutch.cgroups import common, convert, devices, paths, stats as stats_mod
from hutch.cgroups.common import Action, Write, read_int, read_or, write_file
from hutch.cgroups.check import BASE, THROTTLES, validate
from hutch.errors import ConfigError, HutchError

_IO_MAX_KEYS = {"throttleReadBpsDevice": "rbps", "throttleWriteBpsDevice": "wbps",
                "throttleReadIOPSDevice": "riops", "throttleWriteIOPSDevice": "wiops"}


RESOURCE_CONTROLLERS = {"cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc"}


def _num(value: int) -> str:
    """runc numToStr: 0 -> '' (unset), -1 -> 'max'."""
    if value == 0:
        return ""
    return "max" if value == -1 else str(value)


class V2Manager(common.Manager):
    driver = "v2"

    def __init__(self, container_id: str, path: str, root: str, created: list[str] | None = None):
        super().__init__(container_id, root)
        self.path = path
        self.created = list(created or [])

    @classmethod
    def for_container(cls, container_id: str, cgroups_path: str | None, root: str) -> "V2Manager":
        own = paths.own_cgroups().get("", "/")
        return cls(container_id, paths.join(root, paths.resolve(container_id, cgroups_path, own)), root)

    def to_state(self) -> dict:
        return {"driver": "v2", "id": self.id, "root": self.root, "paths": {"": self.path},
                "created": list(self.created)}

    @classmethod
    def from_state(cls, data: dict) -> "V2Manager":
        return cls(data.get("id", ""), data.get("paths", {}).get(""), data.get("root", paths.DEFAULT_ROOT),
                   data.get("created", []))

    def leaf_dirs(self) -> list[str]:
        return [self.path]

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    # -- lifecycle -------------------------------------------------------------------
    def create(self) -> None:
        """mkdir (idempotent) and, as runc does, enable every resource controller the
        hierarchy offers, so usage files (memory.current, pids.current ...) exist for stats."""
        try:
            common.makedirs_recorded(self.path, self.created)
        except OSError as err:
            raise HutchError(f"cannot create cgroup {self.path}: {os.strerror(err.errno)}",
                             where="cgroup") from None
        try:
            common.enable_controllers(self.root, self.path, self.available() & RESOURCE_CONTROLLERS)
        except HutchError:
            pass    # e.g. a parent with processes of its own; apply() reports what it needs

    def add_pid(self, pid: int) -> None:
        try:
            write_file(self._file("cgroup.procs"), str(pid))
        except OSError as err:
            raise HutchError(f"cannot add process {pid} to cgroup {self.path}: "
                             f"{os.strerror(err.errno)}", where="cgroup") from None

    def available(self) -> set[str]:
        """Controllers the hierarchy offers (the root's cgroup.controllers): enable()
        makes them reach this cgroup."""
        return set((read_or(os.path.join(self.root, "cgroup.controllers"), "") or "").split())

    def enable(self, controllers: set[str]) -> None:
        common.enable_controllers(self.root, self.path, controllers)

    # -- resources ---------------------------------------------------------------------
    def validate(self, resources: dict) -> dict:
        resources = validate(resources)
        cpu = resources.get("cpu") or {}
        if cpu.get("realtimeRuntime") or cpu.get("realtimePeriod"):
            raise ConfigError("realtime CPU limits are not supported on cgroup v2",
                              where=f"{BASE}.cpu.realtimeRuntime")
        net = resources.get("network") or {}
        if net.get("classID") is not None or net.get("priorities"):
            raise ConfigError("network classID/priorities need the net_cls/net_prio controllers, "
                              "which cgroup v2 does not have", where=f"{BASE}.network")
        bio = resources.get("blockIO") or {}
        if bio.get("leafWeight") or any(d.get("leafWeight") for d in bio.get("weightDevice") or []):
            raise ConfigError("block I/O leaf weights are not supported on cgroup v2",
                              where=f"{BASE}.blockIO.leafWeight")
        common.check_hugepage_sizes(resources.get("hugepageLimits"), f"{BASE}.hugepageLimits")
        need = self.controllers_needed(resources)
        avail = self.available()
        for ctl, where in need.items():
            if ctl not in avail:
                raise common.not_available(ctl, where, "v2")
        return resources

    @staticmethod
    def controllers_needed(r: dict) -> dict[str, str]:
        """controller -> JSON path of the first resource that needs it."""
        need: dict[str, str] = {}
        cpu = r.get("cpu") or {}
        if any(cpu.get(k) for k in ("shares", "quota", "period", "burst")) or \
                cpu.get("idle") is not None:
            need["cpu"] = f"{BASE}.cpu"
        if cpu.get("cpus") or cpu.get("mems"):
            need["cpuset"] = f"{BASE}.cpu.cpus"
        mem = r.get("memory") or {}
        if any(mem.get(k) for k in ("limit", "swap", "reservation")):
            need["memory"] = f"{BASE}.memory"
        if (r.get("pids") or {}).get("limit"):
            need["pids"] = f"{BASE}.pids.limit"
        bio = r.get("blockIO") or {}
        if bio.get("weight") or bio.get("weightDevice") or any(bio.get(k) for k in THROTTLES):
            need["io"] = f"{BASE}.blockIO"
        if r.get("hugepageLimits"):
            need["hugetlb"] = f"{BASE}.hugepageLimits"
        if r.get("rdma"):
            need["rdma"] = f"{BASE}.rdma"
        for key in (r.get("unified") or {}):
            ctl = key.split(".", 1)[0]
            if ctl not in ("cgroup",) and ctl not in need:
                need[ctl] = f"{BASE}.unified.{key}"
        need.pop("cgroup", None)
        return need

    def apply(self, resources: dict | None) -> None:
        resources = self.validate(resources or {})
        enabled = common.enable_controllers(self.root, self.path,
                                            set(self.controllers_needed(resources)))
        try:
            common.run_plan(self.plan(resources))
        except BaseException:
            common.disable_controllers(enabled)     # leave the tree as it was
            raise

    def _w(self, name: str, value: str, where: str, label: str, **kw) -> Write:
        return Write(self._file(name), value, where, label, **kw)

    def plan(self, r: dict) -> list:
        steps: list = []
        cpu = r.get("cpu") or {}
        w = f"{BASE}.cpu"
        if cpu.get("shares"):
            steps.append(self._w("cpu.weight", str(convert.shares_to_weight(cpu["shares"])),
                                 f"{w}.shares", "cpu weight (from shares)"))
        if cpu.get("quota") or cpu.get("period"):
            value = str(cpu["quota"]) if (cpu.get("quota") or 0) > 0 else "max"
            if cpu.get("period"):
                value += f" {cpu['period']}"
            steps.append(self._w("cpu.max", value, f"{w}.quota", "cpu quota/period"))
        if cpu.get("burst") is not None:
            steps.append(self._w("cpu.max.burst", str(cpu["burst"]), f"{w}.burst", "cpu burst"))
        if cpu.get("idle") is not None:
            steps.append(self._w("cpu.idle", str(cpu["idle"]), f"{w}.idle", "cpu idle"))
        if cpu.get("cpus"):
            steps.append(self._w("cpuset.cpus", cpu["cpus"], f"{w}.cpus", "cpuset cpus"))
        if cpu.get("mems"):
            steps.append(self._w("cpuset.mems", cpu["mems"], f"{w}.mems", "cpuset mems"))
        steps += self._plan_memory(r.get("memory") or {})
        limit = (r.get("pids") or {}).get("limit")
        if limit:
            steps.append(self._w("pids.max", "max" if limit < 0 else str(limit),
                                 f"{BASE}.pids.limit", "pids limit"))
        steps += self._plan_io(r.get("blockIO") or {})
        for i, hp in enumerate(r.get("hugepageLimits") or []):
            steps.append(self._w(f"hugetlb.{hp['pageSize']}.max", str(hp["limit"]),
                                 f"{BASE}.hugepageLimits[{i}].limit", f"hugetlb {hp['pageSize']} limit"))
        for name, rd in (r.get("rdma") or {}).items():
            steps.append(self._w("rdma.max", common.rdma_line(name, rd), f"{BASE}.rdma.{name}",
                                 "rdma limit", restore=False))
        for key, value in (r.get("unified") or {}).items():
            if not os.path.exists(self._file(key)):
                raise ConfigError(f"cgroup v2 file {key} does not exist in {self.path}",
                                  where=f"{BASE}.unified.{key}")
            steps.append(self._w(key, value, f"{BASE}.unified.{key}", key))
        if r.get("devices") is not None:
            steps.append(self._plan_devices(r["devices"]))
        return steps

    def _plan_memory(self, mem: dict) -> list:
        w = f"{BASE}.memory"
        steps = []
        limit, swap = mem.get("limit") or 0, mem.get("swap") or 0
        if not (limit or swap or mem.get("reservation")):
            return steps
        if mem.get("checkBeforeUpdate") and limit > 0:
            usage = read_int(self._file("memory.current"))
            if limit < usage:
                raise HutchError(f"cannot set memory limit to {limit}: the cgroup already uses "
                                 f"{usage} bytes (checkBeforeUpdate)", where=f"{w}.limit")
        swap_v2 = convert.memory_swap_to_v2(swap, limit)
        swap_str = _num(swap_v2)
        if swap_str == "" and swap_v2 == 0 and swap > 0:
            swap_str = "0"      # memory == memory+swap: no swap at all
        if swap_str and os.path.exists(self._file("memory.swap.max")):
            steps.append(self._w("memory.swap.max", swap_str, f"{w}.swap", "swap limit"))
        elif swap_str and swap_str != "max":
            raise HutchError("cannot set a swap limit: swap accounting is off (no memory.swap.max)",
                             where=f"{w}.swap")
        if _num(limit):
            steps.append(self._w("memory.max", _num(limit), f"{w}.limit", "memory limit"))
        if _num(mem.get("reservation") or 0):
            steps.append(self._w("memory.low", _num(mem["reservation"]), f"{w}.reservation",
                                 "memory reservation"))
        return steps

    def _plan_io(self, bio: dict) -> list:
        w = f"{BASE}.blockIO"
        steps = []
        bfq = os.path.exists(self._file("io.bfq.weight"))
        if bio.get("weight"):
            if bfq:
                steps.append(self._w("io.bfq.weight", str(bio["weight"]), f"{w}.weight",
                                     "block I/O weight"))
            else:
                steps.append(self._w("io.weight",
                                     str(convert.blkio_weight_to_io_weight(bio["weight"])),
                                     f"{w}.weight", "io weight (from blkio weight)"))
        for i, dev in enumerate(bio.get("weightDevice") or []):
            if dev.get("weight"):
                if not bfq:
                    raise HutchError("per-device weights need the BFQ scheduler (io.bfq.weight)",
                                     where=f"{w}.weightDevice[{i}]")
                steps.append(self._w("io.bfq.weight", f"{dev['major']}:{dev['minor']} {dev['weight']}",
                                     f"{w}.weightDevice[{i}].weight", "device weight", restore=False))
        for key in THROTTLES:
            for i, dev in enumerate(bio.get(key) or []):
                rate = dev["rate"] if dev["rate"] else "max"
                steps.append(self._w("io.max", f"{dev['major']}:{dev['minor']} {_IO_MAX_KEYS[key]}={rate}",
                                     f"{w}.{key}[{i}]", "io throttle", restore=False))
        return steps

    def _plan_devices(self, rules: list) -> Action:
        program = devices.bpf_program(devices.normalize(rules))

        def do():
            from hutch.syscall import bpf
            from hutch.errors import SysCallError
            try:
                bpf.replace_device_program(self.path, program)
            except SysCallError as err:
                raise HutchError(f"cannot attach the device program: {err}",
                                 where=f"{BASE}.devices") from None

        return Action(do, None, f"{BASE}.devices")

    # -- freezer ---------------------------------------------------------------------
    def freeze(self) -> None:
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def _set_frozen(self, frozen: bool) -> None:
        """Write cgroup.freeze and wait for cgroup.events to report the state."""
        try:
            write_file(self._file("cgroup.freeze"), "1" if frozen else "0")
        except OSError as err:
            raise HutchError(f"cannot {'freeze' if frozen else 'thaw'} cgroup {self.path}: "
                             f"{os.strerror(err.errno)}", where="cgroup") from None
        want = 1 if frozen else 0
        fd = os.open(self._file("cgroup.events"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            poller = select.poll()
            poller.register(fd, select.POLLPRI | select.POLLERR)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                # read through the polled fd: that re-arms POLLPRI (kernfs)
                os.lseek(fd, 0, os.SEEK_SET)
                if common.parse_flat_keyed(os.read(fd, 4096).decode()).get("frozen", 0) == want:
                    return
                poller.poll(100)
        finally:
            os.close(fd)
        raise HutchError(f"cgroup {self.path} did not become {'frozen' if frozen else 'thawed'}",
                         where="cgroup")

    def _events(self) -> dict[str, int]:
        return common.read_flat_keyed(self._file("cgroup.events"))

    def is_frozen(self) -> bool:
        return read_or(self._file("cgroup.freeze")) == "1"

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        if sig == signal.SIGKILL and os.path.exists(self._file("cgroup.kill")):
            write_file(self._file("cgroup.kill"), "1")
            return
        self.signal_each(sig)

    def cpu_quota_period(self) -> tuple[int | None, int | None]:
        """cpu.max as (quota, period); quota -1 for "max"; None where unreadable."""
        words = (read_or(self._file("cpu.max"), "") or "").split()
        if len(words) != 2:
            return None, None
        return (-1 if words[0] == "max" else int(words[0])), int(words[1])

    # -- stats and events -------------------------------------------------------------
    def stats(self) -> dict:
        return stats_mod.v2_stats(self.path)

    def oom_kill_count(self) -> int:
        return common.read_flat_keyed(self._file("memory.events")).get("oom_kill", 0)

    def oom_watch(self):
        if not os.path.exists(self._file("memory.events")):
            raise common.not_available("memory", "cgroup", "v2")
        return common.EventsFileOOMWatch(self.path)
