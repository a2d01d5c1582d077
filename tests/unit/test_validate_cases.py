"""Invalid config.json cases shared by the unit tests and the runc differential test.

Each case mutates a valid runc-style config (tests/helpers/bundle.py) in one way and
names the exact JSON path hutch must report.  ``runc_accepts`` records, with the
reason, where runc 1.1.5 (Debian 12) creates the container anyway although the
OCI spec (or the kernel, later) forbids the input: the differential test asserts
that runc really does accept those, so a runc change shows up instead of being
silently absorbed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable



@dataclass(frozen=True)
class Case:
    name: str
    where: str
    mutate: Callable[[dict], None]
    runc_accepts: str | None = None   # why runc 1.1 creates the container anyway
    host_risk: bool = False           # never give it to runc: accepting it could change the host


def _set(path: str, value):
    """A mutation setting config[path] (dotted; list indexes as numbers) to value."""
    def mutate(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return mutate


def _del(path: str):
    def mutate(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]
    return mutate


def _append(path: str, value):
    def mutate(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node.setdefault(last, []).append(value)
    return mutate


def _without_ns(kind: str):
    def mutate(config: dict) -> None:
        config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != kind]
    return mutate


def _all(*mutations):
    def mutate(config: dict) -> None:
        for m in mutations:
            m(config)
    return mutate


def _userns(uid_maps=None, gid_maps=None, path=None):
    """A user namespace (joined by path, or new) with the given mappings."""
    def mutate(config: dict) -> None:
        ns = {"type": "user"}
        if path:
            ns["path"] = path
        config["linux"]["namespaces"].append(ns)
        if uid_maps is not None:
            config["linux"]["uidMappings"] = uid_maps
        if gid_maps is not None:
            config["linux"]["gidMappings"] = gid_maps
    return mutate


FULL_MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]
TMPFS = {"destination": "/mnt", "type": "tmpfs", "source": "tmpfs"}
NEW_NS = "linux.namespaces[6]"       # index of a namespace appended to the 6 default ones
IDMAP = [{"containerID": 0, "hostID": 100000, "size": 1}]
# A hook that outlives any timeout runc derives from a bad value: with /bin/true, runc's
# race between the hook's exit and an already-expired timer makes its verdict random.
SLOW_HOOK = {"path": "/bin/sleep", "args": ["sleep", "10"]}


def _syscall(**rule):
    rule.setdefault("names", ["getpid"])
    rule.setdefault("action", "SCMP_ACT_ERRNO")
    return _set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]})


def _arg(**arg):
    return _syscall(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ", **arg}])


NOT_IN_RUNC_1_1 = "runc 1.1 predates this field (runtime-spec 1.2) and ignores it"

CASES = [
    # ociVersion
    Case("oci_major_2", "ociVersion", _set("ociVersion", "2.0.0"), "runc 1.1 never checks ociVersion"),
    Case("oci_not_semver", "ociVersion", _set("ociVersion", "junk"), "runc 1.1 never checks ociVersion"),
    Case("oci_missing", "ociVersion", _del("ociVersion"), "runc 1.1 never checks ociVersion"),
    Case("oci_number", "ociVersion", _set("ociVersion", 1)),
    # process
    Case("process_missing", "process", _del("process")),
    Case("process_not_object", "process", _set("process", "sh")),
    Case("args_empty", "process.args", _set("process.args", [])),
    Case("args_missing", "process.args", _del("process.args")),
    Case("args_item_number", "process.args[1]", _set("process.args", ["true", 1])),
    Case("args_nul_byte", "process.args[0]", _set("process.args", ["tr\0ue"])),
    Case("env_no_equals", "process.env[1]", _set("process.env", ["A=1", "FOO"])),
    Case("env_empty_name", "process.env[0]", _set("process.env", ["=x"])),
    Case("env_not_list", "process.env", _set("process.env", "A=1")),
    Case("cwd_relative", "process.cwd", _set("process.cwd", "tmp")),
    Case("cwd_missing", "process.cwd", _del("process.cwd")),
    Case("terminal_string", "process.terminal", _set("process.terminal", "no")),
    Case("console_size_no_width", "process.consoleSize.width",
         _set("process.consoleSize", {"height": 25}), "runc reads a missing width as 0"),
    Case("uid_negative", "process.user.uid", _set("process.user.uid", -1)),
    Case("uid_too_big", "process.user.uid", _set("process.user.uid", 1 << 32)),
    Case("uid_string", "process.user.uid", _set("process.user.uid", "0")),
    Case("uid_fraction", "process.user.uid", _set("process.user.uid", 0.5)),
    Case("gid_float", "process.user.gid", _set("process.user.gid", 1.0)),
    Case("uid_missing", "process.user.uid", _del("process.user.uid"), "runc reads a missing uid as 0"),
    Case("umask_too_big", "process.user.umask", _set("process.user.umask", 1 << 32)),
    Case("additional_gid_negative", "process.user.additionalGids[1]",
         _set("process.user.additionalGids", [5, -1])),
    Case("rlimit_unknown", "process.rlimits[0].type",
         _set("process.rlimits", [{"type": "RLIMIT_FOO", "soft": 1, "hard": 1}])),
    Case("rlimit_soft_above_hard", "process.rlimits[0].soft",
         _set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 10}])),
    Case("rlimit_duplicate", "process.rlimits[1].type",
         _set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 10}] * 2),
         "runc 1.1 applies both entries; the spec says MUST error"),
    Case("rlimit_no_hard", "process.rlimits[0].hard",
         _set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 10}])),
    Case("rlimit_negative", "process.rlimits[0].soft",
         _set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": -1, "hard": 10}])),
    Case("cap_unknown", "process.capabilities.bounding[2]",
         _set("process.capabilities.bounding", ["CAP_KILL", "CAP_CHOWN", "CAP_FOO"]),
         "runc 1.1 only warns about unknown capabilities; the spec says MUST error"),
    Case("cap_lowercase", "process.capabilities.bounding[1]",
         _set("process.capabilities.bounding", ["CAP_KILL", "cap_chown"]),
         "runc 1.1 only warns about unknown capabilities; the spec says MUST error"),
    Case("cap_number", "process.capabilities.effective[0]", _set("process.capabilities.effective", [1])),
    Case("cap_set_not_list", "process.capabilities.ambient",
         _set("process.capabilities.ambient", "CAP_KILL")),
    Case("no_new_privs_string", "process.noNewPrivileges", _set("process.noNewPrivileges", "yes")),
    Case("oom_score_too_high", "process.oomScoreAdj", _set("process.oomScoreAdj", 1001)),
    Case("oom_score_too_low", "process.oomScoreAdj", _set("process.oomScoreAdj", -1001)),
    Case("apparmor_number", "process.apparmorProfile", _set("process.apparmorProfile", 1)),
    Case("selinux_number", "process.selinuxLabel", _set("process.selinuxLabel", 1)),
    Case("ioprio_class_unknown", "process.ioPriority.class",
         _set("process.ioPriority", {"class": "IOPRIO_CLASS_FOO", "priority": 1}), NOT_IN_RUNC_1_1),
    Case("ioprio_class_missing", "process.ioPriority.class",
         _set("process.ioPriority", {"priority": 1}), NOT_IN_RUNC_1_1),
    Case("ioprio_priority_8", "process.ioPriority.priority",
         _set("process.ioPriority", {"class": "IOPRIO_CLASS_BE", "priority": 8}), NOT_IN_RUNC_1_1),
    Case("sched_policy_unknown", "process.scheduler.policy",
         _set("process.scheduler", {"policy": "SCHED_FOO"}), NOT_IN_RUNC_1_1),
    Case("sched_policy_missing", "process.scheduler.policy",
         _set("process.scheduler", {"nice": 1}), NOT_IN_RUNC_1_1),
    Case("sched_fifo_priority_0", "process.scheduler.priority",
         _set("process.scheduler", {"policy": "SCHED_FIFO"}), NOT_IN_RUNC_1_1),
    Case("sched_other_priority", "process.scheduler.priority",
         _set("process.scheduler", {"policy": "SCHED_OTHER", "priority": 5}), NOT_IN_RUNC_1_1),
    Case("sched_nice_20", "process.scheduler.nice",
         _set("process.scheduler", {"policy": "SCHED_OTHER", "nice": 20}), NOT_IN_RUNC_1_1),
    Case("sched_flag_unknown", "process.scheduler.flags[0]",
         _set("process.scheduler", {"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_FOO"]}),
         NOT_IN_RUNC_1_1),
    Case("sched_deadline_short_runtime", "process.scheduler.runtime",
         _set("process.scheduler", {"policy": "SCHED_DEADLINE", "runtime": 10, "deadline": 100}),
         NOT_IN_RUNC_1_1),
    Case("sched_deadline_period_short", "process.scheduler.period",
         _set("process.scheduler", {"policy": "SCHED_DEADLINE", "runtime": 10000,
                                    "deadline": 20000, "period": 15000}), NOT_IN_RUNC_1_1),
    Case("sched_deadline_before_runtime", "process.scheduler.deadline",
         _set("process.scheduler", {"policy": "SCHED_DEADLINE", "runtime": 20000, "deadline": 10000}),
         NOT_IN_RUNC_1_1),
    Case("cpu_affinity_garbage", "process.execCPUAffinity.initial",
         _set("process.execCPUAffinity", {"initial": "0-a"}), NOT_IN_RUNC_1_1),
    Case("cpu_affinity_backwards", "process.execCPUAffinity.final",
         _set("process.execCPUAffinity", {"final": "3-1"}), NOT_IN_RUNC_1_1),
    # root
    Case("root_missing", "root", _del("root")),
    Case("root_path_missing", "root.path", _set("root", {"readonly": True})),
    Case("root_path_empty", "root.path", _set("root.path", "")),
    Case("root_path_absent_dir", "root.path", _set("root.path", "/nonexistent-hutch-rootfs")),
    Case("root_path_is_file", "root.path", _set("root.path", "/etc/passwd")),
    Case("root_path_relative_absent", "root.path", _set("root.path", "no-such-rootfs")),
    Case("root_readonly_string", "root.readonly", _set("root.readonly", "yes")),
    # hostname, domainname
    Case("hostname_number", "hostname", _set("hostname", 5)),
    Case("hostname_without_uts", "hostname", _without_ns("uts")),
    Case("hostname_too_long", "hostname", _set("hostname", "h" * 65)),
    Case("domainname_without_uts", "domainname",
         _all(_set("hostname", ""), _set("domainname", "example.org"), _without_ns("uts")),
         "runc 1.1 does not require a UTS namespace for the domainname", host_risk=True),
    Case("domainname_number", "domainname", _set("domainname", 5)),
    # mounts
    Case("mounts_not_list", "mounts", _set("mounts", {"destination": "/mnt"})),
    Case("mount_relative_destination", "mounts[7].destination",
         _append("mounts", dict(TMPFS, destination="mnt")),
         "runc 1.1 warns and mounts relative to /; runtime-spec 1.1 says MUST be absolute"),
    Case("mount_no_destination", "mounts[7].destination",
         _append("mounts", {"type": "tmpfs", "source": "tmpfs"})),
    Case("mount_option_number", "mounts[7].options[0]", _append("mounts", dict(TMPFS, options=[1]))),
    Case("mount_type_number", "mounts[7].type", _append("mounts", dict(TMPFS, type=1))),
    Case("mount_uid_map_only", "mounts[7].gidMappings",
         _append("mounts", dict(TMPFS, uidMappings=IDMAP)), NOT_IN_RUNC_1_1),
    Case("mount_map_size_0", "mounts[7].uidMappings[0].size",
         _append("mounts", dict(TMPFS, uidMappings=[dict(IDMAP[0], size=0)], gidMappings=IDMAP)),
         NOT_IN_RUNC_1_1),
    # hooks
    Case("hook_relative_path", "hooks.prestart[0].path", _set("hooks", {"prestart": [{"path": "true"}]})),
    Case("hook_no_path", "hooks.createRuntime[0].path", _set("hooks", {"createRuntime": [{"args": ["x"]}]})),
    Case("hook_timeout_zero", "hooks.prestart[0].timeout",
         _set("hooks", {"prestart": [dict(SLOW_HOOK, timeout=0)]})),
    Case("hook_timeout_negative", "hooks.createRuntime[0].timeout",
         _set("hooks", {"createRuntime": [dict(SLOW_HOOK, timeout=-1)]})),
    Case("hook_arg_number", "hooks.prestart[0].args[1]",
         _set("hooks", {"prestart": [{"path": "/bin/true", "args": ["true", 2]}]})),
    Case("hooks_not_object", "hooks", _set("hooks", [])),
    Case("poststop_relative_path", "hooks.poststop[0].path",
         _set("hooks", {"poststop": [{"path": "true"}]}), "runc runs poststop hooks only at delete"),
    # annotations
    Case("annotation_number", 'annotations["com.example.key"]',
         _set("annotations", {"com.example.key": 1})),
    Case("annotations_list", "annotations", _set("annotations", ["a=b"])),
    Case("annotation_empty_key", "annotations", _set("annotations", {"": "x"}),
         "runc 1.1 does not check annotation keys; the spec says keys MUST NOT be empty"),
    # linux
    Case("linux_not_object", "linux", _set("linux", [])),
    Case("ns_unknown", f"{NEW_NS}.type", _append("linux.namespaces", {"type": "foo"})),
    Case("ns_duplicate", f"{NEW_NS}.type", _append("linux.namespaces", {"type": "pid"})),
    Case("ns_type_missing", f"{NEW_NS}.type", _append("linux.namespaces", {"path": "/proc/1/ns/time"})),
    Case("ns_path_relative", "linux.namespaces[1].path",
         _set("linux.namespaces.1", {"type": "network", "path": "proc/1/ns/net"})),
    Case("ns_path_number", "linux.namespaces[1].path",
         _set("linux.namespaces.1", {"type": "network", "path": 1})),
    Case("userns_no_uid_mappings", "linux.uidMappings", _userns()),
    Case("userns_no_gid_mappings", "linux.gidMappings", _userns(uid_maps=FULL_MAP)),
    Case("mappings_without_userns", "linux.uidMappings",
         _all(_set("linux.uidMappings", FULL_MAP), _set("linux.gidMappings", FULL_MAP)),
         "runc 1.1 ignores mappings when no user namespace is requested"),
    Case("userns_path_with_mappings", "linux.uidMappings",
         _userns(FULL_MAP, FULL_MAP, path="/proc/self/ns/user")),
    Case("mapping_size_0", "linux.uidMappings[0].size",
         _userns([{"containerID": 0, "hostID": 100000, "size": 0}], FULL_MAP)),
    Case("mapping_container_overlap", "linux.uidMappings[1].containerID",
         _userns([{"containerID": 0, "hostID": 100000, "size": 10},
                  {"containerID": 5, "hostID": 200000, "size": 10}], FULL_MAP)),
    Case("mapping_host_overlap", "linux.gidMappings[1].hostID",
         _userns(FULL_MAP, [{"containerID": 0, "hostID": 100000, "size": 10},
                            {"containerID": 10, "hostID": 100005, "size": 10}])),
    Case("mapping_overflow", "linux.uidMappings[0].size",
         _userns([{"containerID": 4294967295, "hostID": 100000, "size": 2}], FULL_MAP)),
    Case("mapping_too_many_lines", "linux.uidMappings",
         _userns([{"containerID": i, "hostID": 100000 + i, "size": 1} for i in range(341)], FULL_MAP)),
    Case("mapping_no_host_id", "linux.uidMappings[0].hostID",
         _userns([{"containerID": 0, "size": 65536}], FULL_MAP), "runc reads a missing hostID as 0"),
    Case("device_type_unknown", "linux.devices[0].type",
         _set("linux.devices", [{"type": "x", "path": "/dev/foo", "major": 1, "minor": 3}])),
    Case("device_path_relative", "linux.devices[0].path",
         _set("linux.devices", [{"type": "c", "path": "dev/foo", "major": 1, "minor": 3}]),
         "runc 1.1 creates the device relative to the rootfs"),
    Case("device_path_missing", "linux.devices[0].path",
         _set("linux.devices", [{"type": "c", "major": 1, "minor": 3}]),
         "runc 1.1 accepts a device without a path"),
    Case("device_no_major", "linux.devices[0].major",
         _set("linux.devices", [{"type": "c", "path": "/dev/foo"}]), "runc reads a missing major as 0"),
    Case("device_mode_negative", "linux.devices[0].fileMode",
         _set("linux.devices", [{"type": "c", "path": "/dev/foo", "major": 1, "minor": 3,
                                 "fileMode": -1}])),
    Case("sysctl_value_number", 'linux.sysctl["net.ipv4.ip_forward"]',
         _set("linux.sysctl", {"net.ipv4.ip_forward": 1})),
    Case("sysctl_not_object", "linux.sysctl", _set("linux.sysctl", ["net.ipv4.ip_forward=1"])),
    Case("cgroups_path_number", "linux.cgroupsPath", _set("linux.cgroupsPath", 5)),
    Case("memory_limit_string", "linux.resources.memory.limit",
         _set("linux.resources.memory", {"limit": "1g"})),
    Case("cpu_shares_negative", "linux.resources.cpu.shares", _set("linux.resources.cpu", {"shares": -1})),
    Case("device_rule_no_allow", "linux.resources.devices[1].allow",
         _append("linux.resources.devices", {"type": "c", "major": 1, "minor": 3, "access": "rwm"}),
         "runc reads a missing allow as false"),
    Case("pids_limit_float", "linux.resources.pids.limit", _set("linux.resources.pids", {"limit": 1.5})),
    Case("unified_value_number", 'linux.resources.unified["memory.max"]',
         _set("linux.resources.unified", {"memory.max": 1})),
    Case("rootfs_propagation_unknown", "linux.rootfsPropagation", _set("linux.rootfsPropagation", "foo")),
    Case("masked_path_relative", "linux.maskedPaths[0]", _set("linux.maskedPaths", ["proc/kcore"]),
         "runc 1.1 masks relative paths; the spec says MUST be absolute"),
    Case("readonly_path_number", "linux.readonlyPaths[0]", _set("linux.readonlyPaths", [1])),
    Case("mount_label_number", "linux.mountLabel", _set("linux.mountLabel", 1)),
    Case("seccomp_default_unknown", "linux.seccomp.defaultAction",
         _set("linux.seccomp", {"defaultAction": "SCMP_ACT_FOO"})),
    Case("seccomp_default_missing", "linux.seccomp.defaultAction",
         _set("linux.seccomp", {"architectures": ["SCMP_ARCH_X86_64"]}),
         "runc 1.1 treats a missing defaultAction as no filter; the schema requires it"),
    Case("seccomp_default_notify", "linux.seccomp.defaultAction",
         _set("linux.seccomp", {"defaultAction": "SCMP_ACT_NOTIFY"})),
    Case("seccomp_default_errno_with_allow", "linux.seccomp.defaultErrnoRet",
         _set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}),
         "runc 1.1 predates defaultErrnoRet (runtime-spec 1.1) and ignores it"),
    Case("seccomp_arch_unknown", "linux.seccomp.architectures[0]",
         _set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_FOO"]})),
    Case("seccomp_flag_unknown", "linux.seccomp.flags[0]",
         _set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FOO"]})),
    Case("seccomp_op_unknown", "linux.seccomp.syscalls[0].args[0].op", _arg(op="SCMP_CMP_FOO")),
    Case("seccomp_arg_index_6", "linux.seccomp.syscalls[0].args[0].index", _arg(index=6)),
    Case("seccomp_arg_no_op", "linux.seccomp.syscalls[0].args[0].op",
         _syscall(args=[{"index": 0, "value": 1}])),
    Case("seccomp_names_empty", "linux.seccomp.syscalls[0].names", _syscall(names=[]),
         "runc 1.1 skips a rule without names; the schema requires one"),
    Case("seccomp_name_empty", "linux.seccomp.syscalls[0].names[1]", _syscall(names=["getpid", ""])),
    Case("seccomp_action_unknown", "linux.seccomp.syscalls[0].action", _syscall(action="SCMP_ACT_FOO")),
    Case("seccomp_errno_with_kill", "linux.seccomp.syscalls[0].errnoRet",
         _syscall(action="SCMP_ACT_KILL", errnoRet=1),
         "runc 1.1 ignores errnoRet on other actions; the spec says MUST error"),
    Case("seccomp_notify_no_listener", "linux.seccomp.syscalls[0].action",
         _syscall(action="SCMP_ACT_NOTIFY")),
    Case("personality_domain_unknown", "linux.personality.domain",
         _set("linux.personality", {"domain": "FOO"}),
         "runc 1.1 parses linux.personality but never applies or checks it"),
    Case("personality_flag_number", "linux.personality.flags[0]",
         _set("linux.personality", {"domain": "LINUX", "flags": [1]})),
    Case("time_offsets_without_timens", "linux.timeOffsets",
         _set("linux.timeOffsets", {"monotonic": {"secs": 1, "nanosecs": 0}}), NOT_IN_RUNC_1_1),
    Case("time_offsets_unknown_clock", "linux.timeOffsets.realtime",
         _set("linux.timeOffsets", {"realtime": {"secs": 1}}), NOT_IN_RUNC_1_1),
    Case("time_offsets_nanosecs_too_big", "linux.timeOffsets.boottime.nanosecs",
         _set("linux.timeOffsets", {"boottime": {"secs": 1, "nanosecs": 1_000_000_000}}),
         NOT_IN_RUNC_1_1),
    Case("intel_rdt", "linux.intelRdt", _set("linux.intelRdt", {"closID": "hutch"}),
         "runc 1.1 accepts a closID alone even without RDT; hutch has no RDT support"),
]


def test_case_names_are_unique():
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))


def test_every_case_mutates_the_config():
    import copy
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from helpers.bundle import make_config
    base = make_config(["true"])
    for case in CASES:
        config = copy.deepcopy(base)
        case.mutate(config)
        assert config != base, case.name

