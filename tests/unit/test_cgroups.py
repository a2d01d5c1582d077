"""Pure cgroup logic: unit parsing, v1<->v2 conversions (as runc), validation with JSON
paths, cgroupsPath resolution, device rules and the eBPF device program."""

from __future__ import annotations

import struct

import pytest

import hutch.cgroups as cg
from hutch.cgroups import convert, devices, paths
from hutch.errors import ConfigError, HutchError


# --- units and conversions ---------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("256m", 256 << 20), ("1g", 1 << 30), ("1G", 1 << 30), ("512k", 512 << 10), ("100", 100),
    ("64mb", 64 << 20), ("2MiB", 2 << 20), ("1.5g", 3 << 29), (4096, 4096)])
def test_parse_size(text, expected):
    assert convert.parse_size(text, "--memory") == expected


@pytest.mark.parametrize("text", ["", "abc", "12x", "-5", "1.2.3m", "m"])
def test_parse_size_rejects_with_option_name(text):
    with pytest.raises(ConfigError) as exc:
        convert.parse_size(text, "--memory")
    assert exc.value.where == "--memory"


def test_parse_size_unlimited():
    assert convert.parse_size("-1", "--memory-swap", allow_unlimited=True) == -1


def test_cpus_to_quota():
    assert convert.cpus_to_quota("0.5") == (50000, 100000)
    assert convert.cpus_to_quota("2") == (200000, 100000)
    assert convert.cpus_to_quota("1.5", period=50000) == (75000, 50000)
    for bad in ("0", "-1", "x", "nan"):
        with pytest.raises(ConfigError):
            convert.cpus_to_quota(bad)


@pytest.mark.parametrize("shares,weight", [(0, 0), (2, 1), (1024, 39), (262144, 10000), (512, 20)])
def test_shares_to_weight_matches_runc(shares, weight):
    # runc: 1 + ((shares-2)*9999)/262142
    assert convert.shares_to_weight(shares) == weight


def test_weight_to_shares_round_trip_at_the_ends():
    assert convert.weight_to_shares(1) == 2
    assert convert.weight_to_shares(10000) == 262144


@pytest.mark.parametrize("blkio,io", [(0, 0), (10, 1), (1000, 10000), (500, 4950)])
def test_blkio_weight_to_io_weight_matches_runc(blkio, io):
    assert convert.blkio_weight_to_io_weight(blkio) == io
    if blkio:
        assert abs(convert.io_weight_to_blkio_weight(io) - blkio) <= 1


def test_memory_swap_to_v2_cases_from_runc():
    assert convert.memory_swap_to_v2(0, -1) == -1          # unlimited memory, swap unset
    assert convert.memory_swap_to_v2(-1, 100) == -1
    assert convert.memory_swap_to_v2(0, 100) == 0
    assert convert.memory_swap_to_v2(300, 100) == 200
    assert convert.memory_swap_to_v2(100, 100) == 0
    with pytest.raises(ConfigError):
        convert.memory_swap_to_v2(50, 100)                  # swap < memory
    with pytest.raises(ConfigError):
        convert.memory_swap_to_v2(100, 0)                   # swap without memory


def test_cpu_max_and_limits():
    assert convert.cpu_max(50000, 100000) == "50000 100000"
    assert convert.cpu_max(-1, None) == "max 100000"
    assert convert.v2_limit(-1) == "max" and convert.v2_limit(5) == "5"


def test_hugepage_sizes():
    assert convert.hugepage_size_to_bytes("2MB", "x") == 2 << 20
    assert convert.bytes_to_hugepage_size(1 << 30) == "1GB"
    with pytest.raises(ConfigError):
        convert.hugepage_size_to_bytes("2M", "x")


def test_parse_duration():
    assert convert.parse_duration("5s", "--interval") == 5
    assert convert.parse_duration("500ms", "--interval") == 0.5
    assert convert.parse_duration("1m", "--interval") == 60
    with pytest.raises(ConfigError):
        convert.parse_duration("soon", "--interval")


# --- validation --------------------------------------------------------------------------

@pytest.mark.parametrize("resources,where", [
    ({"memory": {"limit": -5}}, "linux.resources.memory.limit"),
    ({"memory": {"limit": "256m"}}, "linux.resources.memory.limit"),
    ({"memory": {"swappiness": 101}}, "linux.resources.memory.swappiness"),
    ({"memory": {"limit": 200, "swap": 100}}, "linux.resources.memory.swap"),
    ({"memory": {"disableOOMKiller": "yes"}}, "linux.resources.memory.disableOOMKiller"),
    ({"memory": {"limt": 1}}, "linux.resources.memory.limt"),
    ({"cpu": {"quota": 10}}, "linux.resources.cpu.quota"),
    ({"cpu": {"period": 10}}, "linux.resources.cpu.period"),
    ({"cpu": {"cpus": "0-x"}}, "linux.resources.cpu.cpus"),
    ({"cpu": {"mems": "3-1"}}, "linux.resources.cpu.mems"),
    ({"cpu": {"idle": 2}}, "linux.resources.cpu.idle"),
    ({"pids": {"limit": -2}}, "linux.resources.pids.limit"),
    ({"blockIO": {"weight": 5}}, "linux.resources.blockIO.weight"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0}]}},
     "linux.resources.blockIO.throttleReadBpsDevice[0]"),
    ({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]}, "linux.resources.hugepageLimits[0].pageSize"),
    ({"devices": [{"allow": True, "type": "x"}]}, "linux.resources.devices[0].type"),
    ({"devices": [{"allow": True, "access": "rwx"}]}, "linux.resources.devices[0].access"),
    ({"devices": [{"access": "r"}]}, "linux.resources.devices[0]"),
    ({"network": {"classID": -1}}, "linux.resources.network.classID"),
    ({"unified": {"memory/../x": "1"}}, "linux.resources.unified.memory/../x"),
    ({"unified": {"memory.max": 5}}, "linux.resources.unified.memory.max"),
    ({"unified": {"cgroup.procs": "1"}}, "linux.resources.unified.cgroup.procs"),
    ({"bogus": {}}, "linux.resources.bogus"),
])
def test_validate_names_the_json_path(resources, where):
    with pytest.raises(ConfigError) as exc:
        cg.validate(resources)
    assert exc.value.where == where


def test_validate_accepts_a_full_spec():
    cg.validate({
        "memory": {"limit": 1 << 28, "reservation": 1 << 27, "swap": 1 << 29, "swappiness": 0,
                   "disableOOMKiller": False, "useHierarchy": True, "checkBeforeUpdate": True,
                   "kernel": -1, "kernelTCP": -1},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "realtimeRuntime": 0,
                "realtimePeriod": 0, "cpus": "0-1", "mems": "0", "idle": 0, "burst": 0},
        "pids": {"limit": 100},
        "blockIO": {"weight": 500, "leafWeight": 300,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 600}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
        "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1,
                                                         "minor": 3, "access": "rw"}],
        "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
        "unified": {"memory.high": "max"},
    })


# --- options ---------------------------------------------------------------------------------

def test_resources_from_options():
    r = cg.resources_from_options(memory="256m", cpus="0.5", pids_limit="100")
    assert r == {"memory": {"limit": 256 << 20}, "cpu": {"quota": 50000, "period": 100000},
                 "pids": {"limit": 100}}
    r = cg.resources_from_options(memory_swap="-1", cpu_shares="512", cpuset_cpus="0",
                                  blkio_weight="300")
    assert r == {"memory": {"swap": -1}, "cpu": {"shares": 512, "cpus": "0"},
                 "blockIO": {"weight": 300}}
    assert cg.resources_from_options() == {}


@pytest.mark.parametrize("kw,where", [
    ({"memory": "lots"}, "--memory"), ({"pids_limit": "x"}, "--pids-limit"),
    ({"cpus": "0"}, "--cpus"), ({"blkio_weight": "5"}, "--blkio-weight"),
    ({"cpu_quota": "10"}, "--cpu-quota"), ({"cpuset_cpus": "a"}, "--cpuset-cpus"),
    ({"memory": "1m", "memory_swap": "512k"}, "--memory-swap")])
def test_resources_from_options_errors_name_the_flag(kw, where):
    with pytest.raises(ConfigError) as exc:
        cg.resources_from_options(**kw)
    assert exc.value.where == where


# --- paths -------------------------------------------------------------------------------------

def test_resolve_cgroups_path():
    assert paths.resolve("c1", None) == "/hutch/c1"
    assert paths.resolve("c1", "") == "/hutch/c1"
    assert paths.resolve("c1", "/a/b") == "/a/b"
    assert paths.resolve("c1", "a/b", own="/user.slice") == "/user.slice/a/b"
    assert paths.resolve("c1", "//a/./b/") == "/a/b"
    for bad in ("/a/../../etc", "../x", "/"):
        with pytest.raises(ConfigError) as exc:
            paths.resolve("c1", bad)
        assert exc.value.where == "linux.cgroupsPath"


def test_parse_proc_cgroup():
    text = "9:name=systemd:/\n4:memory:/x/y\n2:cpu,cpuacct:/z\n0::/u\n"
    assert paths.parse_proc_cgroup(text) == {"systemd": "/", "memory": "/x/y", "cpu": "/z",
                                             "cpuacct": "/z", "": "/u"}


def test_systemd_paths():
    assert paths.parse_systemd_path("c1", "machine.slice:hutch:c1") == ("machine.slice", "hutch", "c1")
    with pytest.raises(ConfigError):
        paths.parse_systemd_path("c1", "/not/systemd")


def test_systemd_driver_refused_clearly_without_systemd(monkeypatch):
    monkeypatch.setattr(paths, "systemd_running", lambda: False)
    with pytest.raises(HutchError) as exc:
        cg.for_container("c1", "system.slice:hutch:c1", systemd=True)
    assert "systemd is not running" in str(exc.value)


def test_from_state_without_cgroup():
    with pytest.raises(HutchError):
        cg.from_state({})


# --- devices -----------------------------------------------------------------------------------

def test_device_rules_v1_lines():
    rules = devices.normalize([{"allow": False, "access": "rwm"},
                               {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "wr"},
                               {"allow": True, "type": "a", "major": 8, "access": "r"}],
                              with_defaults=False)
    assert devices.v1_writes(rules) == [("devices.deny", "a"), ("devices.allow", "c 1:3 rw"),
                                        ("devices.allow", "b 8:* r"), ("devices.allow", "c 8:* r")]


def test_default_rules_follow_config_rules():
    rules = devices.normalize([{"allow": False, "access": "rwm"}])
    assert rules[0].matches_all and not rules[0].allow
    assert devices.Rule(True, "c", 1, 3, "rwm") in rules
    assert devices.Rule(True, "c", 136, -1, "rwm") in rules


def _run_bpf(program: bytes, dtype: int, access: int, major: int, minor: int) -> int:
    """A tiny interpreter for the instructions devices.bpf_program emits."""
    insns = [struct.unpack("<BBhi", program[i:i + 8]) for i in range(0, len(program), 8)]
    ctx = [(access << 16) | dtype, major, minor]
    reg = [0] * 11
    pc = 0
    while True:
        code, regs, off, imm = insns[pc]
        dst, src = regs & 0xF, regs >> 4
        pc += 1
        if code == 0x61:
            reg[dst] = ctx[off // 4]
        elif code == 0x54:
            reg[dst] &= imm & 0xFFFFFFFF
        elif code == 0x74:
            reg[dst] = (reg[dst] & 0xFFFFFFFF) >> imm
        elif code == 0xB4:
            reg[dst] = imm & 0xFFFFFFFF
        elif code == 0xBC:
            reg[dst] = reg[src] & 0xFFFFFFFF
        elif code == 0x55:
            if reg[dst] != imm:
                pc += off
        elif code == 0x5D:
            if reg[dst] != reg[src]:
                pc += off
        elif code == 0x95:
            return reg[0]
        else:
            raise AssertionError(f"unknown opcode {code:#x}")


@pytest.mark.parametrize("spec", [
    [{"allow": False, "access": "rwm"}],
    [{"allow": True, "access": "rwm"}, {"allow": False, "type": "b", "major": 254, "access": "w"}],
    [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 4, "access": "r"},
     {"allow": False, "type": "c", "major": 4, "minor": 1, "access": "rwm"}],
])
def test_bpf_program_agrees_with_rule_semantics(spec):
    rules = devices.normalize(spec)
    program = devices.bpf_program(rules)
    types = {"b": devices.BPF_DEVCG_DEV_BLOCK, "c": devices.BPF_DEVCG_DEV_CHAR}
    bits = {"r": 2, "w": 4, "m": 1}
    for dtype in "bc":
        for major, minor in ((1, 3), (1, 4), (4, 1), (4, 2), (136, 7), (254, 0), (5, 2)):
            for access in ("r", "w", "m", "rw", "rwm"):
                want = devices.emulate(rules, dtype, major, minor, access)
                got = _run_bpf(program, types[dtype], sum(bits[a] for a in access), major, minor)
                assert bool(got) == want, (dtype, major, minor, access)


def test_bpf_program_has_no_dead_code_after_catch_all():
    program = devices.bpf_program(devices.normalize([{"allow": True, "access": "rwm"}],
                                                    with_defaults=False))
    assert len(program) == 8 * 8      # 6 prologue + mov + exit


def test_device_rules_for_linux_devices():
    rules = cg.device_rules_for([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
                                 {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0},
                                 {"path": "/dev/p", "type": "p"}])
    assert rules == [{"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
                     {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "rwm"}]
    cg.validate({"devices": rules})


def test_run_plan_undoes_done_steps_newest_first(tmp_path):
    from hutch.cgroups.common import Action, Write, run_plan
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("old-a")
    b.write_text("old-b")
    log = []
    steps = [Write(str(a), "new-a", "x.a"), Action(lambda: log.append("do"), lambda: log.append("undo")),
             Write(str(b), "new-b", "x.b"), Write(str(tmp_path / "missing"), "v", "x.c", "thing")]
    with pytest.raises(HutchError) as exc:
        run_plan(steps)
    assert exc.value.where == "x.c" and "thing" in exc.value.message
    assert a.read_text() == "old-a" and b.read_text() == "old-b"
    assert log == ["do", "undo"]
