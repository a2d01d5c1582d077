"""cgroup v1 backend: one directory per controller hierarchy (plus the unified
hierarchy on hybrid hosts, which the container joins too, as runc does)."""

from __future__ import annotations

import os
import _signal as signal  # the C module: `signal` pulls in enum (5 ms on the start path)
import time

from hutch.cgroups import common, paths   # devices and stats load where used: delete needs neither
from hutch.cgroups.common import Action, Write, read_int, read_or, write_file
from hutch.cgroups.check import BASE, THROTTLES, validate
from hutch.errors import ConfigError, HutchError

# controllers hutch places a container in (when the host mounts them)
CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
               "hugetlb", "net_cls", "net_prio", "rdma", "perf_event", "misc")
NAMED_SYSTEMD = "name=systemd"
_THROTTLE_FILES = {"throttleReadBpsDevice": "blkio.throttle.read_bps_device",
                   "throttleWriteBpsDevice": "blkio.throttle.write_bps_device",
                   "throttleReadIOPSDevice": "blkio.throttle.read_iops_device",
                   "throttleWriteIOPSDevice": "blkio.throttle.write_iops_device"}


def hierarchies(root: str) -> dict[str, str]:
    """{controller: mount directory} found under root ('cpu,cpuacct' dirs serve both)."""
    out: dict[str, str] = {}
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return out
    for name in names:
        full = os.path.join(root, name)
        if not os.path.isdir(full) or name == "unified":
            continue
        for ctl in os.path.basename(os.path.realpath(full)).split(","):
            if ctl in CONTROLLERS and ctl not in out:
                out[ctl] = os.path.realpath(full)
    # the named systemd hierarchy (no controller): runc places containers there too
    named = os.path.join(root, "systemd")
    if os.path.exists(os.path.join(named, "cgroup.procs")):
        out[NAMED_SYSTEMD] = named
    return out


def _child_dirs(d: str) -> list[str]:
    try:
        return [e.path for e in os.scandir(d) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _rt_ratio(d: str):
    """The share of the CPU a cgroup's realtime budget reserves (0 when it has none)."""
    from fractions import Fraction
    try:
        runtime = read_int(os.path.join(d, "cpu.rt_runtime_us"))
        period = read_int(os.path.join(d, "cpu.rt_period_us"))
    except (OSError, ValueError, HutchError):
        return Fraction(0)
    return Fraction(runtime, period) if runtime > 0 and period > 0 else Fraction(0)


def unified_dir(root: str) -> str | None:
    """The cgroup2 mount of a hybrid host (root/unified), if there is one."""
    d = os.path.join(root, "unified")
    return d if os.path.exists(os.path.join(d, "cgroup.procs")) else None


class V1Manager(common.Manager):
    driver = "v1"

    def __init__(self, container_id: str, paths_by_controller: dict[str, str],
                 unified: str | None, root: str, created: list[str] | None = None,
                 rt_raised: list | None = None):
        super().__init__(container_id, root)
        self.paths = dict(paths_by_controller)
        self.unified = unified
        self.created = list(created or [])
        # [[ancestor dir, microseconds added to its cpu.rt_runtime_us], ...] (see
        # _raise_rt_budgets); destroy takes them back.
        self.rt_raised = [list(item) for item in rt_raised or ()]

    @classmethod
    def for_container(cls, container_id: str, cgroups_path: str | None, root: str) -> "V1Manager":
        own = paths.own_cgroups()
        found = hierarchies(root)
        if not found:
            raise HutchError(f"no cgroup v1 hierarchies under {root}", where="cgroup")
        by_ctl = {ctl: paths.join(mount, paths.resolve(container_id, cgroups_path,
                                                        own.get(ctl.removeprefix("name="), "/")))
                  for ctl, mount in found.items()}
        udir = unified_dir(root)
        unified = (paths.join(udir, paths.resolve(container_id, cgroups_path, own.get("", "/")))
                   if udir else None)
        return cls(container_id, by_ctl, unified, root)

    def to_state(self) -> dict:
        data = {"driver": "v1", "id": self.id, "root": self.root, "paths": dict(self.paths),
                "unified": self.unified, "created": list(self.created)}
        if self.rt_raised:
            data["rt_raised"] = [list(item) for item in self.rt_raised]
        return data

    @classmethod
    def from_state(cls, data: dict) -> "V1Manager":
        return cls(data.get("id", ""), data.get("paths", {}), data.get("unified"),
                   data.get("root", paths.DEFAULT_ROOT), data.get("created", []),
                   data.get("rt_raised"))

    def leaf_dirs(self) -> list[str]:
        dirs = sorted(set(self.paths.values()))
        if self.unified:
            dirs.append(self.unified)
        return dirs

    def procs_dir(self) -> str:
        for ctl in ("pids", "freezer", "memory", "cpu"):
            if ctl in self.paths:
                return self.paths[ctl]
        return self.leaf_dirs()[0]

    # -- lifecycle -------------------------------------------------------------------
    def create(self) -> None:
        """mkdir the container's directory in every hierarchy (idempotent)."""
        try:
            for d in self.leaf_dirs():
                common.makedirs_recorded(d, self.created)
            if "cpuset" in self.paths:
                self._fill_cpuset(self.paths["cpuset"])
        except OSError as err:
            self.destroy_quietly()
            raise HutchError(f"cannot create cgroup: {os.strerror(err.errno)}"
                             f" ({getattr(err, 'filename', '')})", where="cgroup") from None

    def destroy_quietly(self) -> None:
        try:
            self.destroy()
        except HutchError:
            pass

    def _fill_cpuset(self, leaf: str) -> None:
        """A new cpuset dir has empty cpus/mems and cannot take tasks: copy the parent's."""
        mount = self._mount_of("cpuset")
        chain = []
        d = leaf
        while d.startswith(mount) and d != mount:
            chain.append(d)
            d = os.path.dirname(d)
        for d in reversed(chain):
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not read_or(os.path.join(d, name)):
                    parent = read_or(os.path.join(os.path.dirname(d), name), "")
                    write_file(os.path.join(d, name), parent)

    def _mount_of(self, ctl: str) -> str:
        return hierarchies(self.root).get(ctl, self.root)

    def add_pid(self, pid: int) -> None:
        """Move pid into the container's cgroup in every hierarchy."""
        for d in self.leaf_dirs():
            try:
                write_file(os.path.join(d, "cgroup.procs"), str(pid))
            except OSError as err:
                raise HutchError(f"cannot add process {pid} to cgroup {d}: "
                                 f"{os.strerror(err.errno)}", where="cgroup") from None

    # -- resources ---------------------------------------------------------------------
    def validate(self, resources: dict) -> dict:
        resources = validate(resources)
        if resources.get("unified"):
            raise ConfigError("cgroup v2 keys (unified) cannot be set on this cgroup v1 host",
                              where=f"{BASE}.unified")
        needs = {"memory": "memory", "pids": "pids", "blockIO": "blkio", "devices": "devices"}
        for key, ctl in needs.items():
            if resources.get(key) is not None and ctl not in self.paths:
                raise common.not_available(ctl, f"{BASE}.{key}", "v1")
        cpu = resources.get("cpu") or {}
        if any(cpu.get(k) is not None for k in ("shares", "quota", "period", "burst",
                                                "realtimeRuntime", "realtimePeriod", "idle")) \
                and "cpu" not in self.paths:
            raise common.not_available("cpu", f"{BASE}.cpu", "v1")
        if (cpu.get("cpus") or cpu.get("mems")) and "cpuset" not in self.paths:
            raise common.not_available("cpuset", f"{BASE}.cpu", "v1")
        if resources.get("hugepageLimits") and "hugetlb" not in self.paths \
                and not self._unified_offers("hugetlb"):
            raise common.not_available("hugetlb", f"{BASE}.hugepageLimits", "v1")
        common.check_hugepage_sizes(resources.get("hugepageLimits"), f"{BASE}.hugepageLimits")
        net = resources.get("network") or {}
        if net.get("classID") is not None and "net_cls" not in self.paths:
            raise common.not_available("net_cls", f"{BASE}.network.classID", "v1")
        if net.get("priorities") and "net_prio" not in self.paths:
            raise common.not_available("net_prio", f"{BASE}.network.priorities", "v1")
        if resources.get("rdma") and "rdma" not in self.paths:
            raise common.not_available("rdma", f"{BASE}.rdma", "v1")
        return resources

    def plan(self, r: dict) -> list:
        steps: list = []
        if r.get("cpu"):
            steps += self._plan_cpu(r["cpu"])
        if r.get("memory"):
            steps += self._plan_memory(r["memory"])
        if r.get("pids") and r["pids"].get("limit"):
            limit = r["pids"]["limit"]
            steps.append(self._w("pids", "pids.max", "max" if limit < 0 else str(limit),
                                 f"{BASE}.pids.limit", "pids limit"))
        if r.get("blockIO"):
            steps += self._plan_blkio(r["blockIO"])
        steps += self._plan_hugetlb(r.get("hugepageLimits") or [])
        net = r.get("network") or {}
        if net.get("classID") is not None:
            steps.append(self._w("net_cls", "net_cls.classid", str(net["classID"]),
                                 f"{BASE}.network.classID", "network class id"))
        for i, prio in enumerate(net.get("priorities") or []):
            steps.append(self._w("net_prio", "net_prio.ifpriomap",
                                 f"{prio['name']} {prio['priority']}",
                                 f"{BASE}.network.priorities[{i}]", "network priority", restore=False))
        for name, rd in (r.get("rdma") or {}).items():
            steps.append(self._w("rdma", "rdma.max", common.rdma_line(name, rd), f"{BASE}.rdma.{name}",
                                 "rdma limit", restore=False))
        if r.get("devices") is not None:
            steps.append(self._plan_devices(r["devices"]))
        return steps

    def _unified_offers(self, ctl: str) -> bool:
        """Hybrid hosts may offer a controller only on the unified hierarchy (hugetlb here)."""
        if not self.unified:
            return False
        offered = read_or(os.path.join(self.root, "unified", "cgroup.controllers"), "") or ""
        return ctl in offered.split()

    def _plan_hugetlb(self, limits: list) -> list:
        if not limits:
            return []
        if "hugetlb" in self.paths:
            return [self._w("hugetlb", f"hugetlb.{hp['pageSize']}.limit_in_bytes", str(hp["limit"]),
                            f"{BASE}.hugepageLimits[{i}].limit", f"hugetlb {hp['pageSize']} limit")
                    for i, hp in enumerate(limits)]
        # hybrid: the v2 files of the unified hierarchy, once the controller reaches our dir
        unified_root = os.path.join(self.root, "unified")
        enabled: list = []
        enable = Action(lambda: enabled.extend(common.enable_controllers(
                            unified_root, self.unified, {"hugetlb"})),
                        lambda: common.disable_controllers(enabled), f"{BASE}.hugepageLimits")
        return [enable] + [Write(os.path.join(self.unified, f"hugetlb.{hp['pageSize']}.max"),
                                 str(hp["limit"]), f"{BASE}.hugepageLimits[{i}].limit",
                                 f"hugetlb {hp['pageSize']} limit")
                           for i, hp in enumerate(limits)]

    def _w(self, ctl: str, name: str, value: str, where: str, label: str, **kw) -> Write:
        return Write(os.path.join(self.paths[ctl], name), value, where, label, **kw)

    def _plan_cpu(self, cpu: dict) -> list:
        w = f"{BASE}.cpu"
        steps = []
        if cpu.get("shares"):
            steps.append(self._w("cpu", "cpu.shares", str(cpu["shares"]), f"{w}.shares",
                                 "cpu shares", check=_check_shares))
        # period before quota (runc's order; quota is checked against the period)
        if cpu.get("period"):
            steps.append(self._w("cpu", "cpu.cfs_period_us", str(cpu["period"]), f"{w}.period",
                                 "cpu period"))
        if cpu.get("quota"):
            steps.append(self._w("cpu", "cpu.cfs_quota_us", str(cpu["quota"]), f"{w}.quota",
                                 "cpu quota"))
        if cpu.get("burst") is not None:
            steps.append(self._w("cpu", "cpu.cfs_burst_us", str(cpu["burst"]), f"{w}.burst",
                                 "cpu burst"))
        if cpu.get("realtimePeriod"):
            steps.append(self._w("cpu", "cpu.rt_period_us", str(cpu["realtimePeriod"]),
                                 f"{w}.realtimePeriod", "realtime period"))
        if cpu.get("realtimeRuntime") and cpu["realtimeRuntime"] > 0:
            # A group's realtime budget must fit in its parent's, and a new parent (the
            # default <hierarchy>/hutch) has none: give the ancestors theirs first.
            budget = (cpu["realtimeRuntime"], cpu.get("realtimePeriod"))
            steps.append(Action(lambda: self._raise_rt_budgets(*budget),
                                self._lower_rt_budgets, f"{w}.realtimeRuntime"))
        if cpu.get("realtimeRuntime"):
            steps.append(self._w("cpu", "cpu.rt_runtime_us", str(cpu["realtimeRuntime"]),
                                 f"{w}.realtimeRuntime", "realtime runtime"))
        if cpu.get("idle") is not None:
            steps.append(self._w("cpu", "cpu.idle", str(cpu["idle"]), f"{w}.idle", "cpu idle"))
        if cpu.get("cpus"):
            steps.append(self._w("cpuset", "cpuset.cpus", cpu["cpus"], f"{w}.cpus", "cpuset cpus"))
        if cpu.get("mems"):
            steps.append(self._w("cpuset", "cpuset.mems", cpu["mems"], f"{w}.mems", "cpuset mems"))
        return steps

    # -- realtime budgets of the ancestors (CONFIG_RT_GROUP_SCHED) -------------------------
    def _rt_ancestors(self) -> list[str]:
        """The cpu directories between the hierarchy's root and the container's, top first."""
        mount = os.path.normpath(self._mount_of("cpu"))
        chain = []
        d = os.path.dirname(os.path.normpath(self.paths["cpu"]))
        while d.startswith(mount + "/"):
            chain.append(d)
            d = os.path.dirname(d)
        return chain[::-1]

    def _raise_rt_budgets(self, runtime: int, period: int | None) -> None:
        """Raise each ancestor's cpu.rt_runtime_us just enough for the container's budget
        on top of its other children's (the kernel compares runtime/period ratios), top
        first, as the kernel checks each write against the parent.  The amounts added are
        kept in rt_raised for destroy."""
        from fractions import Fraction
        leaf = os.path.normpath(self.paths["cpu"])
        if not period:
            period = read_int(os.path.join(leaf, "cpu.rt_period_us"))
        if period <= 0:
            return                                        # no rt files: the write will say so
        need, child = Fraction(runtime, period), leaf
        plan = []
        for d in reversed(self._rt_ancestors()):          # bottom-up: what each must hold
            own_period = read_int(os.path.join(d, "cpu.rt_period_us"))
            have = read_int(os.path.join(d, "cpu.rt_runtime_us"))
            if have < 0 or own_period <= 0:               # -1: unlimited, nothing to raise
                break
            used = sum((_rt_ratio(c) for c in _child_dirs(d) if c != child), Fraction(0))
            wanted = -(-(used + need) * own_period // 1)  # ceil, in microseconds
            if wanted <= have:
                break
            if wanted > own_period:
                raise HutchError(f"the realtime budget {runtime}/{period} does not fit in "
                                 f"{d}: it would need {wanted} of its {own_period} us period",
                                 where=f"{BASE}.cpu.realtimeRuntime")
            plan.append((d, have, wanted))
            need, child = Fraction(wanted, own_period), d
        for d, have, wanted in reversed(plan):            # top-down: each fits its parent
            try:
                write_file(os.path.join(d, "cpu.rt_runtime_us"), str(wanted))
            except OSError as err:
                raise HutchError(f"cannot give {d} the realtime budget {wanted} us the "
                                 f"container needs: {os.strerror(err.errno)}",
                                 where=f"{BASE}.cpu.realtimeRuntime") from None
            self.rt_raised.append([d, wanted - have])

    def _lower_rt_budgets(self) -> None:
        """Take back what _raise_rt_budgets added: the container's own budget first, then
        each ancestor's, deepest first (each gives back at most what it took, so every
        parent keeps enough for its other children).  Done before the container's
        directory goes: a removed group's budget is released only when the kernel frees
        it, well over a second later here."""
        leaf = os.path.join(self.paths["cpu"], "cpu.rt_runtime_us")
        try:
            if os.path.exists(leaf):
                write_file(leaf, "0")   # refused while a realtime task is still inside
        except OSError:
            return
        for item in sorted(self.rt_raised, key=lambda it: it[0].count("/"), reverse=True):
            d, added = item
            path = os.path.join(d, "cpu.rt_runtime_us")
            try:
                current = read_int(path, -1)
                if current >= 0:
                    write_file(path, str(max(0, current - added)))
            except OSError:
                pass             # the directory is gone (the last container removed /hutch)
        self.rt_raised = []

    def destroy(self) -> None:
        if self.rt_raised:
            self._lower_rt_budgets()
        super().destroy()

    def _plan_memory(self, mem: dict) -> list:
        w = f"{BASE}.memory"
        d = self.paths["memory"]
        limit, swap = mem.get("limit") or 0, mem.get("swap") or 0
        if mem.get("checkBeforeUpdate") and limit > 0:
            usage = read_int(os.path.join(d, "memory.usage_in_bytes"))
            if limit < usage:
                raise HutchError(f"cannot set memory limit to {limit}: the cgroup already uses "
                                 f"{usage} bytes (checkBeforeUpdate)", where=f"{w}.limit")
        memsw = os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes"))
        if limit == -1 and swap == 0 and memsw:
            swap = -1          # unlimited memory without a swap value: unlimited swap too (runc)
        lim_step = self._w("memory", "memory.limit_in_bytes", str(limit), f"{w}.limit",
                           "memory limit") if limit else None
        swap_step = self._w("memory", "memory.memsw.limit_in_bytes", str(swap), f"{w}.swap",
                            "memory+swap limit") if swap else None
        steps = []
        if lim_step and swap_step:
            # the kernel wants memsw >= memory at every moment: order the writes for that
            cur = read_int(os.path.join(d, "memory.limit_in_bytes"))
            steps += [swap_step, lim_step] if swap == -1 or cur < swap else [lim_step, swap_step]
        else:
            steps += [s for s in (lim_step, swap_step) if s]
        if mem.get("reservation"):
            steps.append(self._w("memory", "memory.soft_limit_in_bytes", str(mem["reservation"]),
                                 f"{w}.reservation", "memory reservation"))
        if mem.get("kernelTCP"):
            steps.append(self._w("memory", "memory.kmem.tcp.limit_in_bytes", str(mem["kernelTCP"]),
                                 f"{w}.kernelTCP", "kernel TCP memory limit"))
        if mem.get("swappiness") is not None:
            steps.append(self._w("memory", "memory.swappiness", str(mem["swappiness"]),
                                 f"{w}.swappiness", "memory swappiness"))
        if mem.get("disableOOMKiller"):
            steps.append(self._w("memory", "memory.oom_control", "1", f"{w}.disableOOMKiller",
                                 "OOM killer switch", restore=False))
        if mem.get("useHierarchy"):
            steps.append(self._w("memory", "memory.use_hierarchy", "1", f"{w}.useHierarchy",
                                 "memory hierarchy"))
        # memory.kernel (kmem.limit_in_bytes) is ignored, as runc 1.1 does: the kernel dropped it.
        return steps

    def _plan_blkio(self, bio: dict) -> list:
        w = f"{BASE}.blockIO"
        d = self.paths["blkio"]
        bfq = not os.path.exists(os.path.join(d, "blkio.weight")) and \
            os.path.exists(os.path.join(d, "blkio.bfq.weight"))
        weight_file = "blkio.bfq.weight" if bfq else "blkio.weight"
        steps = []
        needs_weight = bio.get("weight") or bio.get("leafWeight") or bio.get("weightDevice")
        if needs_weight and not os.path.exists(os.path.join(d, weight_file)):
            raise HutchError("cannot set block I/O weights: this kernel's blkio controller has no "
                             "weight files (no CFQ/BFQ scheduler)", where=f"{w}.weight")
        if bio.get("weight"):
            steps.append(self._w("blkio", weight_file, str(bio["weight"]), f"{w}.weight",
                                 "block I/O weight"))
        if bio.get("leafWeight"):
            steps.append(self._w("blkio", "blkio.leaf_weight", str(bio["leafWeight"]),
                                 f"{w}.leafWeight", "block I/O leaf weight"))
        for i, dev in enumerate(bio.get("weightDevice") or []):
            dev_id = f"{dev['major']}:{dev['minor']}"
            if dev.get("weight"):
                steps.append(self._w("blkio", weight_file + "_device", f"{dev_id} {dev['weight']}",
                                     f"{w}.weightDevice[{i}].weight", "device weight", restore=False))
            if dev.get("leafWeight"):
                steps.append(self._w("blkio", "blkio.leaf_weight_device",
                                     f"{dev_id} {dev['leafWeight']}",
                                     f"{w}.weightDevice[{i}].leafWeight", "device leaf weight",
                                     restore=False))
        for key in THROTTLES:
            for i, dev in enumerate(bio.get(key) or []):
                steps.append(_throttle_write(d, _THROTTLE_FILES[key], dev, f"{w}.{key}[{i}]"))
        return steps

    def _plan_devices(self, rules: list) -> Action:
        from hutch.cgroups import devices
        d = self.paths["devices"]
        writes = devices.v1_writes(devices.normalize(rules))
        saved: list = []

        def do():
            saved[:] = devices.parse_v1_list(read_or(os.path.join(d, "devices.list"), ""))
            for i, (name, line) in enumerate(writes):
                try:
                    write_file(os.path.join(d, name), line)
                except OSError as err:
                    raise HutchError(f"cannot apply device rule {line!r} ({name}): the kernel "
                                     f"refused it ({os.strerror(err.errno)})",
                                     where=f"{BASE}.devices") from None

        def undo():
            write_file(os.path.join(d, "devices.deny"), "a")
            for rule in saved:
                write_file(os.path.join(d, "devices.allow"), rule.v1_line() if not rule.matches_all
                           else "a")

        return Action(do, undo, f"{BASE}.devices")

    # -- freezer ---------------------------------------------------------------------
    def _freezer(self) -> str:
        if "freezer" not in self.paths:
            raise common.not_available("freezer", "cgroup", "v1")
        return os.path.join(self.paths["freezer"], "freezer.state")

    def freeze(self) -> None:
        """Write FROZEN and wait until the kernel reports FROZEN (re-writing, as runc does)."""
        state = self._freezer()
        for _ in range(1000):
            write_file(state, "FROZEN")
            for _ in range(10):
                if read_or(state) == "FROZEN":
                    return
                time.sleep(0.001)
        self.thaw()
        raise HutchError("cannot freeze the container: its tasks did not stop", where="cgroup")

    def thaw(self) -> None:
        write_file(self._freezer(), "THAWED")

    def is_frozen(self) -> bool:
        return read_or(self._freezer()) == "FROZEN"

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        # Hybrid: the unified hierarchy's cgroup.kill kills everything atomically.
        if sig == signal.SIGKILL and self.unified and \
                os.path.exists(os.path.join(self.unified, "cgroup.kill")):
            try:
                write_file(os.path.join(self.unified, "cgroup.kill"), "1")
                return
            except OSError:
                pass
        self.signal_each(sig)

    def cpu_quota_period(self) -> tuple[int | None, int | None]:
        """The CFS quota (-1: none) and period in force; None where unreadable."""
        d = self.paths.get("cpu")
        if not d:
            return None, None
        quota = read_or(os.path.join(d, "cpu.cfs_quota_us"))
        period = read_or(os.path.join(d, "cpu.cfs_period_us"))
        return (int(quota) if quota else None), (int(period) if period else None)

    # -- stats and events -------------------------------------------------------------
    def stats(self) -> dict:
        from hutch.cgroups import stats as stats_mod
        out = stats_mod.v1_stats(self.paths)
        if "hugetlb" not in self.paths and self.unified and os.path.isdir(self.unified):
            out["hugetlb"] = stats_mod.v2_stats(self.unified)["hugetlb"]
        return out

    def oom_kill_count(self) -> int:
        if "memory" not in self.paths:
            return 0
        return common.read_flat_keyed(os.path.join(self.paths["memory"], "memory.oom_control")) \
            .get("oom_kill", 0)

    def oom_watch(self):
        if "memory" not in self.paths:
            raise common.not_available("memory", "cgroup", "v1")
        return common.EventfdOOMWatch(self.paths["memory"])


def _check_shares(step: Write) -> None:
    """The kernel clamps cpu.shares silently; report it like runc instead."""
    got = read_or(step.path)
    if got is not None and got != step.value:
        want = int(step.value)
        bound = "maximum" if want > int(got) else "minimum"
        step.undo()
        raise HutchError(f"cannot set cpu shares to {want}: the {bound} allowed cpu-shares is {got}",
                         where=step.where)


def _throttle_write(directory: str, name: str, dev: dict, where: str) -> Write:
    """A throttle line; its undo restores the old rate for that device (0 = no limit)."""
    dev_id = f"{dev['major']}:{dev['minor']}"
    path = os.path.join(directory, name)
    step = Write(path, f"{dev_id} {dev['rate']}", where, "block I/O throttle", restore=False)
    old = "0"
    for line in (read_or(path, "") or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == dev_id:
            old = parts[1]
    step._old = f"{dev_id} {old}"
    return step
