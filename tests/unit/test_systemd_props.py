"""The pure half of the systemd cgroup driver: unit/slice names and OCI resources and
annotations as transient-unit properties, checked against runc's own numbers and tables
(libcontainer/cgroups/systemd: ExpandSlice, getUnitName, addCpuQuota, RangeToBits,
genV1/V2ResourcesProperties, unifiedResToSystemdProps; devices/systemd.go and the devices
emulator; specconv initSystemdProps)."""

from __future__ import annotations

import pytest

from hutch.cgroups import devices, systemd_props as sp
from hutch.errors import ConfigError

INF = (1 << 64) - 1
RESET = ("DeviceAllow", "a(ss)", [])
STRICT = ("DevicePolicy", "s", "strict")
DENY_ALL = [{"allow": False, "access": "rwm"}]          # what `runc spec` writes

# runc's default device rules seen by systemd, after a deny-all config rule: sorted by
# (major, minor, type) with wildcards first, as the emulator lists them.
RUNC_DEFAULT_ALLOW = [
    ("block-*", "m"), ("char-*", "m"),
    ("/dev/char/1:3", "rwm"), ("/dev/char/1:5", "rwm"), ("/dev/char/1:7", "rwm"),
    ("/dev/char/1:8", "rwm"), ("/dev/char/1:9", "rwm"), ("/dev/char/5:0", "rwm"),
    ("/dev/char/5:2", "rwm"), ("/dev/char/10:200", "rwm"), ("char-136", "rwm"),
]
DEFAULT_DEVICE_PROPS = [STRICT, RESET, ("DeviceAllow", "a(ss)", RUNC_DEFAULT_ALLOW)]


def without_devices(props):
    return [p for p in props if p[0] not in ("DevicePolicy", "DeviceAllow")]


# --- names and paths -------------------------------------------------------------------

@pytest.mark.parametrize("name,path", [
    ("-.slice", "/"),
    ("system.slice", "/system.slice"),
    ("a-b-c.slice", "/a.slice/a-b.slice/a-b-c.slice"),
    ("test-a-b.slice", "/test.slice/test-a.slice/test-a-b.slice"),
    ("system-runc_test_pods.slice", "/system.slice/system-runc_test_pods.slice"),
    ("machine.slice", "/machine.slice"),
    ("a:b.slice", "/a:b.slice"),
])
def test_expand_slice(name, path):
    assert sp.expand_slice(name) == path


@pytest.mark.parametrize("name", [
    "system", "system.scope", ".slice", "-a.slice", "a-.slice", "a--b.slice", "--.slice",
    "a/b.slice", "/system.slice", "a b.slice", "a@b.slice", "x" * 250 + ".slice", "",
])
def test_expand_slice_refuses(name):
    with pytest.raises(ConfigError) as exc:
        sp.expand_slice(name)
    assert exc.value.where == "linux.cgroupsPath"


@pytest.mark.parametrize("prefix,name,unit", [
    ("runc", "abc", "runc-abc.scope"),
    ("hutch", "c1", "hutch-c1.scope"),
    ("docker", "0123456789abcdef", "docker-0123456789abcdef.scope"),
    ("", "abc", "-abc.scope"),                    # plain concatenation, as runc
    ("p", "x.scope", "p-x.scope.scope"),          # runc has no .scope special case
    ("ignored", "pod-a.slice", "pod-a.slice"),    # a slice unit keeps its name
    ("k", "a:b_c.d", "k-a:b_c.d.scope"),
])
def test_unit_name(prefix, name, unit):
    assert sp.unit_name(prefix, name) == unit


@pytest.mark.parametrize("prefix,name", [
    ("runc", "a b"), ("runc", "a/b"), ("runc", "é"), ("r@c", "x"), ("runc", "x" * 250),
    ("x", "-bad.slice"), ("x", "a--b.slice"),
])
def test_unit_name_refuses(prefix, name):
    with pytest.raises(ConfigError) as exc:
        sp.unit_name(prefix, name)
    assert exc.value.where == "linux.cgroupsPath"


@pytest.mark.parametrize("slice_,unit,path", [
    ("system.slice", "hutch-c1.scope", "/system.slice/hutch-c1.scope"),
    ("a-b.slice", "p-c.scope", "/a.slice/a-b.slice/p-c.scope"),
    ("-.slice", "p-c.scope", "/p-c.scope"),
    # a slice unit is placed by its own name, whatever the parent it Wants=
    ("system.slice", "pod-x.slice", "/pod.slice/pod-x.slice"),
    ("system.slice", "system-pods.slice", "/system.slice/system-pods.slice"),
])
def test_unit_cgroup_path(slice_, unit, path):
    assert sp.unit_cgroup_path(slice_, unit) == path


def test_unit_cgroup_path_refuses_a_bad_slice():
    with pytest.raises(ConfigError):
        sp.unit_cgroup_path("bad", "p-c.scope")


@pytest.mark.parametrize("text,version", [
    ("252.38-1~deb12u1", 252), ("v245.4-1.fc32", 245), ("245", 245), ("v245-1.fc32", 245),
    ('"245-1.fc32"', 245), ("", -1), ("systemd", -1),
])
def test_parse_systemd_version(text, version):
    assert sp.parse_systemd_version(text) == version


# --- cpu quota ---------------------------------------------------------------------------

@pytest.mark.parametrize("quota,period,props", [
    (50000, 100000, [("CPUQuotaPeriodUSec", "t", 100000), ("CPUQuotaPerSecUSec", "t", 500000)]),
    (1234, 100000, [("CPUQuotaPeriodUSec", "t", 100000), ("CPUQuotaPerSecUSec", "t", 20000)]),
    (33333, 100000, [("CPUQuotaPeriodUSec", "t", 100000), ("CPUQuotaPerSecUSec", "t", 340000)]),
    (150000, 100000, [("CPUQuotaPeriodUSec", "t", 100000), ("CPUQuotaPerSecUSec", "t", 1500000)]),
    (50000, 200000, [("CPUQuotaPeriodUSec", "t", 200000), ("CPUQuotaPerSecUSec", "t", 250000)]),
    (50000, None, [("CPUQuotaPerSecUSec", "t", 500000)]),      # default period assumed
    (50000, 0, [("CPUQuotaPerSecUSec", "t", 500000)]),
    (-1, None, [("CPUQuotaPerSecUSec", "t", INF)]),
    (-1, 100000, [("CPUQuotaPeriodUSec", "t", 100000), ("CPUQuotaPerSecUSec", "t", INF)]),
    (0, 100000, [("CPUQuotaPeriodUSec", "t", 100000), ("CPUQuotaPerSecUSec", "t", INF)]),
    (0, 0, []),
    (None, None, []),
])
def test_cpu_quota_properties(quota, period, props):
    assert sp.cpu_quota_properties(quota, period) == props


def test_cpu_quota_period_needs_systemd_242():
    assert sp.cpu_quota_properties(50000, 100000, systemd_version=241) == [
        ("CPUQuotaPerSecUSec", "t", 500000)]
    assert sp.cpu_quota_properties(50000, 100000, systemd_version=242)[0] == (
        "CPUQuotaPeriodUSec", "t", 100000)
    # unknown version (-1): runc skips what needs a version
    assert sp.cpu_quota_properties(0, 100000, systemd_version=-1) == [
        ("CPUQuotaPerSecUSec", "t", INF)]


# --- cpusets ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text,bits", [
    # runc's TestRangeToBits table (same masks, systemd's little-endian byte order)
    ("0", b"\x01"), ("1", b"\x02"), ("0-1", b"\x03"), ("0,1", b"\x03"), (",0,1,", b"\x03"),
    ("0-3", b"\x0f"), ("0,1,2-3", b"\x0f"), ("4-7", b"\xf0"), ("0-7", b"\xff"),
    ("0-15", b"\xff\xff"), ("16", b"\x00\x00\x01"), ("0-3,32-33", b"\x0f\x00\x00\x00\x03"),
    ("1, 2, 1-2", b"\x06"), ("    , 1   , 3  ,  5-7,\t", b"\xea"),
    ("128-130,1", b"\x02" + b"\x00" * 15 + b"\x07"),
    # the brief's examples
    ("5", b"\x20"), ("8", b"\x00\x01"), ("0-3,5", b"\x2f"),
])
def test_cpuset_bits(text, bits):
    assert sp.cpuset_bits(text, "w") == bits


@pytest.mark.parametrize("text", [
    "", ",", " , ", "-", "1-", "-3", "54-53", "1 - 2", "a", "+1", "1-2-3", "0x1", "1.5",
    "70000", None, 3,
])
def test_cpuset_bits_refuses(text):
    with pytest.raises(ConfigError) as exc:
        sp.cpuset_bits(text, "linux.resources.cpu.cpus")
    assert exc.value.where == "linux.resources.cpu.cpus"


# --- devices --------------------------------------------------------------------------------

def test_runc_default_rules_become_a_strict_allow_list():
    assert sp.device_properties(DENY_ALL) == DEFAULT_DEVICE_PROPS


def test_default_rules_are_added_without_config_rules_too():
    # runc's specconv appends its defaults to whatever the config has (even nothing);
    # the emulator starts deny-all, so the result is the same list.
    assert sp.device_properties(None) == DEFAULT_DEVICE_PROPS
    assert sp.device_properties([]) == DEFAULT_DEVICE_PROPS


def test_no_rules_without_defaults_is_deny_all():
    assert sp.device_properties([], with_defaults=False) == [STRICT, RESET,
                                                             ("DeviceAllow", "a(ss)", [])]


def test_allow_all_is_policy_auto():
    rules = [{"allow": True, "access": "rwm"}]
    assert sp.device_properties(rules) == [("DevicePolicy", "s", "auto"), RESET]


def test_allow_all_then_deny_one_is_temporary_deny_all_as_runc():
    # systemd has no deny list: runc asks for strict + empty and leaves the real rules
    # to its cgroupfs code, which runs after systemd
    rules = [{"allow": True, "access": "rwm"},
             {"allow": False, "type": "c", "major": 4, "minor": 1, "access": "rwm"}]
    assert sp.device_properties(rules) == [STRICT, RESET]


def test_a_default_rule_undoes_a_deny_exception():
    # defaults come after the config: allowing /dev/null again removes the exception,
    # leaving "allow everything"
    rules = [{"allow": True, "access": "rwm"},
             {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]
    assert sp.device_properties(rules) == [("DevicePolicy", "s", "auto"), RESET]


@pytest.mark.parametrize("rules,entries", [
    # concrete char and block devices
    ([{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
      {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "rw"}],
     [("/dev/char/1:3", "rwm"), ("/dev/block/8:0", "rw")]),
    # sorted by (major, minor, type); access letters merge and come out in rwm order
    ([{"allow": True, "type": "c", "major": 5, "minor": 1, "access": "m"},
      {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "r"},
      {"allow": True, "type": "b", "major": 5, "minor": 1, "access": "w"},
      {"allow": True, "type": "c", "major": 2, "minor": 9, "access": "wr"}],
     [("/dev/char/2:9", "rw"), ("/dev/block/5:1", "w"), ("/dev/char/5:1", "rm")]),
    # wildcards: *:* and M:*; *:m has no systemd form and is skipped
    ([{"allow": True, "type": "b", "access": "r"},
      {"allow": True, "type": "c", "major": 180, "access": "rw"},
      {"allow": True, "type": "c", "minor": 5, "access": "rw"}],
     [("block-*", "r"), ("char-180", "rw")]),
    # a deny takes letters away from the exactly matching allow
    ([{"allow": True, "type": "c", "major": 4, "minor": 1, "access": "rwm"},
      {"allow": False, "type": "c", "major": 4, "minor": 1, "access": "w"},
      {"allow": True, "type": "c", "major": 4, "minor": 2, "access": "r"},
      {"allow": False, "type": "c", "major": 4, "minor": 2, "access": "rwm"}],
     [("/dev/char/4:1", "rm")]),
    # a deny-all in the middle forgets what came before
    ([{"allow": True, "type": "c", "major": 4, "minor": 1, "access": "rwm"},
      {"allow": False, "access": "rwm"},
      {"allow": True, "type": "c", "major": 4, "minor": 2, "access": "rwm"}],
     [("/dev/char/4:2", "rwm")]),
    # any type-'a' rule switches the mode, whatever its access (runc's emulator)
    ([{"allow": True, "type": "c", "major": 4, "minor": 1, "access": "rwm"},
      {"allow": False, "type": "a", "access": "r"}],
     []),
])
def test_device_allow_lists(rules, entries):
    assert sp.device_properties(rules, with_defaults=False) == [
        STRICT, RESET, ("DeviceAllow", "a(ss)", entries)]


def test_major_glob_needs_systemd_240():
    rules = [{"allow": True, "type": "c", "major": 136, "access": "rwm"},
             {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]
    old = sp.device_properties(rules, systemd_version=239, with_defaults=False)
    assert old[-1] == ("DeviceAllow", "a(ss)", [("/dev/char/1:3", "rwm")])
    new = sp.device_properties(rules, systemd_version=240, with_defaults=False)
    assert new[-1] == ("DeviceAllow", "a(ss)", [("/dev/char/1:3", "rwm"), ("char-136", "rwm")])


def test_punching_a_hole_in_a_wildcard_is_refused_naming_the_rule():
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "c", "access": "rw"},
             {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "r"}]
    with pytest.raises(ConfigError) as exc:
        sp.device_properties(rules)
    assert exc.value.where == "linux.resources.devices[2]"
    assert "c *:* rw" in exc.value.message


def test_a_default_rule_that_cannot_apply_is_named_as_a_default():
    # allow all, then deny every char device: the default "allow c 1:3" would punch a
    # hole in that wildcard deny (runc refuses this config with systemd too)
    rules = [{"allow": True, "access": "rwm"},
             {"allow": False, "type": "c", "access": "rwm"}]
    with pytest.raises(ConfigError) as exc:
        sp.device_properties(rules)
    assert exc.value.where == "linux.resources.devices"
    assert "default rule" in exc.value.message


def test_emulator_modes():
    emu = devices.emulate_rules([{"allow": True, "access": "rwm"}], with_defaults=False)
    assert emu.is_blacklist and emu.allows_all
    emu = devices.emulate_rules(DENY_ALL)
    assert not emu.is_blacklist
    assert ("c", 136, -1, "rwm") in emu.final_rules()


# --- resources ---------------------------------------------------------------------------------

FULL = {
    "devices": DENY_ALL,
    "memory": {"limit": 268435456, "reservation": 134217728, "swap": 536870912},
    "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-3", "mems": "0"},
    "pids": {"limit": 100},
    "blockIO": {"weight": 300},
}


def test_v1_properties_in_runc_order():
    props = sp.resource_properties(FULL, v2=False)
    assert props[:3] == DEFAULT_DEVICE_PROPS
    assert props[3:] == [
        ("MemoryLimit", "t", 268435456),
        ("CPUShares", "t", 1024),
        ("CPUQuotaPeriodUSec", "t", 100000),
        ("CPUQuotaPerSecUSec", "t", 500000),
        ("BlockIOWeight", "t", 300),
        ("TasksMax", "t", 100),
        ("AllowedCPUs", "ay", b"\x0f"),
        ("AllowedMemoryNodes", "ay", b"\x01"),
    ]


def test_v2_properties_in_runc_order():
    props = sp.resource_properties(FULL, v2=True)
    assert props[:3] == DEFAULT_DEVICE_PROPS
    assert props[3:] == [
        ("MemoryMax", "t", 268435456),
        ("MemoryLow", "t", 134217728),
        ("MemorySwapMax", "t", 268435456),          # memory+swap 512M - memory 256M
        ("CPUWeight", "t", 39),                     # shares 1024 (runc's conversion)
        ("CPUQuotaPeriodUSec", "t", 100000),
        ("CPUQuotaPerSecUSec", "t", 500000),
        ("TasksMax", "t", 100),
        ("AllowedCPUs", "ay", b"\x0f"),
        ("AllowedMemoryNodes", "ay", b"\x01"),
    ]


@pytest.mark.parametrize("v2", [False, True])
def test_absent_and_zero_values_give_no_property(v2):
    assert without_devices(sp.resource_properties({}, v2)) == []
    assert without_devices(sp.resource_properties(None, v2)) == []
    zeros = {"memory": {"limit": 0, "reservation": 0, "swap": 0},
             "cpu": {"shares": 0, "quota": 0, "period": 0, "cpus": "", "mems": ""},
             "pids": {"limit": 0}, "blockIO": {"weight": 0}}
    assert without_devices(sp.resource_properties(zeros, v2)) == []


@pytest.mark.parametrize("v2,name", [(False, "MemoryLimit"), (True, "MemoryMax")])
def test_unlimited_values_are_infinity(v2, name):
    props = without_devices(sp.resource_properties(
        {"memory": {"limit": -1}, "pids": {"limit": -1}, "cpu": {"quota": -1}}, v2))
    assert (name, "t", INF) in props
    assert ("TasksMax", "t", INF) in props
    assert ("CPUQuotaPerSecUSec", "t", INF) in props
    if v2:      # unlimited memory and no swap given: swap unlimited too (runc)
        assert ("MemorySwapMax", "t", INF) in props


def test_v2_swap_without_a_memory_limit_is_refused():
    with pytest.raises(ConfigError) as exc:
        sp.resource_properties({"memory": {"swap": 1 << 30}}, v2=True)
    assert exc.value.where == "linux.resources.memory.swap"


def test_v2_swap_minus_one_is_infinity():
    props = sp.resource_properties({"memory": {"limit": 1 << 28, "swap": -1}}, v2=True)
    assert ("MemorySwapMax", "t", INF) in props


def test_v2_cpu_idle_wins_over_shares():
    res = {"cpu": {"shares": 1024, "idle": 1}}
    assert without_devices(sp.resource_properties(res, v2=True)) == [("CPUWeight", "t", 0)]
    # before systemd 252 there is no idle weight: the shares convert as usual
    assert without_devices(sp.resource_properties(res, v2=True, systemd_version=251)) == [
        ("CPUWeight", "t", 39)]
    assert without_devices(sp.resource_properties({"cpu": {"idle": 0}}, v2=True)) == []


def test_v1_ignores_what_only_v2_sets_and_v2_ignores_v1_only():
    v1 = without_devices(sp.resource_properties(
        {"memory": {"reservation": 1 << 20}, "cpu": {"idle": 1}}, v2=False))
    assert v1 == []
    v2 = without_devices(sp.resource_properties({"blockIO": {"weight": 500}}, v2=True))
    assert v2 == []


def test_cpuset_needs_systemd_244():
    res = {"cpu": {"cpus": "0-1", "mems": "0"}}
    assert without_devices(sp.resource_properties(res, v2=False, systemd_version=243)) == []
    assert without_devices(sp.resource_properties(res, v2=False, systemd_version=244)) == [
        ("AllowedCPUs", "ay", b"\x03"), ("AllowedMemoryNodes", "ay", b"\x01")]


def test_bad_cpuset_names_its_field():
    with pytest.raises(ConfigError) as exc:
        sp.resource_properties({"cpu": {"mems": "1-0"}}, v2=True)
    assert exc.value.where == "linux.resources.cpu.mems"


def test_unified_on_v1_is_refused():
    with pytest.raises(ConfigError) as exc:
        sp.resource_properties({"unified": {"memory.high": "1"}}, v2=False)
    assert exc.value.where == "linux.resources.unified"


def test_device_properties_can_leave_out_the_defaults():
    props = sp.resource_properties({"devices": DENY_ALL}, v2=True, default_devices=False)
    assert props == [STRICT, RESET, ("DeviceAllow", "a(ss)", [])]


# --- unified ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,props", [
    ("cpu.max", "max", [("CPUQuotaPeriodUSec", "t", 100000), ("CPUQuotaPerSecUSec", "t", INF)]),
    ("cpu.max", "50000", [("CPUQuotaPeriodUSec", "t", 100000),
                          ("CPUQuotaPerSecUSec", "t", 500000)]),
    ("cpu.max", " 50000  200000 ", [("CPUQuotaPeriodUSec", "t", 200000),
                                    ("CPUQuotaPerSecUSec", "t", 250000)]),
    ("cpu.max", "max 50000", [("CPUQuotaPeriodUSec", "t", 50000),
                              ("CPUQuotaPerSecUSec", "t", INF)]),
    ("cpu.max", "1234 100000", [("CPUQuotaPeriodUSec", "t", 100000),
                                ("CPUQuotaPerSecUSec", "t", 20000)]),
    ("cpu.weight", "100", [("CPUWeight", "t", 100)]),
    ("cpuset.cpus", "0-3,5", [("AllowedCPUs", "ay", b"\x2f")]),
    ("cpuset.mems", "0", [("AllowedMemoryNodes", "ay", b"\x01")]),
    ("memory.high", "1073741824", [("MemoryHigh", "t", 1073741824)]),
    ("memory.low", "max", [("MemoryLow", "t", INF)]),
    ("memory.min", "4096", [("MemoryMin", "t", 4096)]),
    ("memory.max", "max", [("MemoryMax", "t", INF)]),
    ("memory.swap.max", "0", [("MemorySwapMax", "t", 0)]),
    ("pids.max", "max", [("TasksMax", "t", INF)]),
    ("pids.max", " 42\n", [("TasksMax", "t", 42)]),
    # no systemd form: left to the cgroupfs backend
    ("memory.oom.group", "1", []),
    ("io.weight", "default 100", []),
    ("cpu.idle", "1", []),
])
def test_unified_properties(key, value, props):
    assert sp.unified_properties({key: value}) == props
    # and through resource_properties, after the devices
    assert without_devices(sp.resource_properties({"unified": {key: value}}, v2=True)) == props


@pytest.mark.parametrize("key,value", [
    ("memory/max", "1"), ("../cpu.max", "1"), ("memory", "1"),
    ("cpu.max", ""), ("cpu.max", "1 2 3"), ("cpu.max", "x"), ("cpu.max", "1000 -1"),
    ("cpu.max", "1000 max"), ("cpu.weight", "max"), ("cpu.weight", "-1"),
    ("memory.max", "-1"), ("memory.high", "1G"), ("memory.low", "1.5"), ("pids.max", "abc"),
    ("pids.max", str(1 << 64)), ("cpuset.cpus", "3-1"), ("cpuset.mems", ""),
])
def test_unified_refuses_naming_the_key(key, value):
    with pytest.raises(ConfigError) as exc:
        sp.unified_properties({key: value})
    assert exc.value.where == f"linux.resources.unified.{key}"


def test_unified_cpuset_needs_systemd_244_but_is_still_checked():
    assert sp.unified_properties({"cpuset.cpus": "0"}, systemd_version=243) == []
    with pytest.raises(ConfigError):
        sp.unified_properties({"cpuset.cpus": "x"}, systemd_version=243)


def test_unified_comes_after_the_plain_fields():
    props = without_devices(sp.resource_properties(
        {"memory": {"limit": 1 << 30}, "unified": {"memory.max": "max"}}, v2=True))
    assert props == [("MemoryMax", "t", 1 << 30), ("MemoryMax", "t", INF)]


# --- the unit --------------------------------------------------------------------------------

def test_base_properties_of_a_v2_scope():
    assert sp.base_properties("hutch-c1.scope", "system.slice", "hutch container c1", 4242,
                              v2=True) == [
        ("Description", "s", "hutch container c1"),
        ("Slice", "s", "system.slice"),
        ("Delegate", "b", True),
        ("PIDs", "au", [4242]),
        ("MemoryAccounting", "b", True),
        ("CPUAccounting", "b", True),
        ("IOAccounting", "b", True),
        ("TasksAccounting", "b", True),
        ("DefaultDependencies", "b", False),
    ]


@pytest.mark.parametrize("pid", [None, -1])
def test_base_properties_of_a_v1_slice_without_pid(pid):
    assert sp.base_properties("pod-a.slice", "pod.slice", "d", pid, v2=False) == [
        ("Description", "s", "d"),
        ("Wants", "as", ["pod.slice"]),
        ("MemoryAccounting", "b", True),
        ("CPUAccounting", "b", True),
        ("BlockIOAccounting", "b", True),
        ("TasksAccounting", "b", True),
        ("DefaultDependencies", "b", False),
    ]


# --- annotations ------------------------------------------------------------------------------

P = "org.systemd.property."


@pytest.mark.parametrize("name,text,prop", [
    ("CollectMode", "'inactive-or-failed'", ("CollectMode", "s", "inactive-or-failed")),
    ("CollectMode", '"inactive-or-failed"', ("CollectMode", "s", "inactive-or-failed")),
    ("Description", r"'it\'s \"x\"\n'", ("Description", "s", "it's \"x\"\n")),
    ("Delegate", "true", ("Delegate", "b", True)),
    ("SendSIGKILL", " false ", ("SendSIGKILL", "b", False)),
    ("TimeoutStopUSec", "uint64 123456789", ("TimeoutStopUSec", "t", 123456789)),
    ("TasksMax", "uint64 18446744073709551615", ("TasksMax", "t", INF)),
    ("KillSignal", "int32 9", ("KillSignal", "i", 9)),
    ("KillSignal", "9", ("KillSignal", "i", 9)),              # GVariant's default int
    ("CPUWeight", "uint32 5", ("CPUWeight", "u", 5)),
    ("Foo", "int64 -5", ("Foo", "x", -5)),
    ("Foo", "int16 -5", ("Foo", "n", -5)),
    ("Foo", "uint16 5", ("Foo", "q", 5)),
    ("Foo", "byte 255", ("Foo", "y", 255)),
    ("Foo", "@t 7", ("Foo", "t", 7)),
    ("Foo", "double 0.5", ("Foo", "d", 0.5)),
    ("Foo", "2.5", ("Foo", "d", 2.5)),
    # names systemd only takes as t: an untyped number is sent as t
    ("MemoryMax", "1073741824", ("MemoryMax", "t", 1073741824)),
    ("TasksMax", "12", ("TasksMax", "t", 12)),
    ("RuntimeMaxUSec", "5000000", ("RuntimeMaxUSec", "t", 5000000)),
    ("StartLimit", "3", ("StartLimit", "t", 3)),
    # ...Sec is renamed ...USec and converted from seconds (runc convertSecToUSec)
    ("TimeoutStopSec", "5", ("TimeoutStopUSec", "t", 5_000_000)),
    ("TimeoutStopSec", "uint64 2", ("TimeoutStopUSec", "t", 2_000_000)),
    ("RuntimeMaxSec", "1.5", ("RuntimeMaxUSec", "t", 1_500_000)),
    ("RuntimeMaxSec", "double 0.25", ("RuntimeMaxUSec", "t", 250_000)),
])
def test_annotation_properties(name, text, prop):
    assert sp.annotation_properties({P + name: text}) == [prop]


def test_annotations_keep_their_order_and_ignore_others():
    annotations = {"org.opencontainers.image.os": "linux", P + "CollectMode": "'inactive'",
                   "org.systemd.propertyX": "1", P + "TimeoutStopSec": "1"}
    assert sp.annotation_properties(annotations) == [
        ("CollectMode", "s", "inactive"), ("TimeoutStopUSec", "t", 1_000_000)]
    assert sp.annotation_properties(None) == []
    assert sp.annotation_properties({}) == []


@pytest.mark.parametrize("name,text", [
    # names: ASCII letters only, at least 3 (runc checkPropertyName)
    ("ab", "true"), ("Tasks1Max", "1"), ("Foo_Bar", "true"), ("", "true"), ("Fo.o", "true"),
    ("Ünicode", "true"),
    # values outside the supported subset, or malformed
    ("Foo", "[1, 2]"), ("Foo", "('a', 1)"), ("Foo", "uint8 3"), ("Foo", "byte 300"),
    ("Foo", "uint64 -1"), ("Foo", "int32 1 2"), ("Foo", "int32 99999999999"),
    ("Foo", "'unterminated"), ("Foo", "'a' 'b'"), ("Foo", r"'\u00e9'"), ("Foo", "yes"),
    ("Foo", ""), ("Foo", "99999999999"), ("Foo", "double x"), ("TasksMax", "-1"),
    # a ...Sec value must be a non-negative number of seconds
    ("TimeoutStopSec", "'5s'"), ("TimeoutStopSec", "true"), ("TimeoutStopSec", "-5"),
])
def test_annotation_properties_refuse_naming_the_annotation(name, text):
    with pytest.raises(ConfigError) as exc:
        sp.annotation_properties({P + name: text})
    assert exc.value.where == f"annotations.{P}{name}"


def test_annotation_value_must_be_a_string():
    with pytest.raises(ConfigError) as exc:
        sp.annotation_properties({P + "TasksMax": 5})
    assert exc.value.where == f"annotations.{P}TasksMax"
