"""The seccomp BPF compiler, checked by running its output in a small BPF interpreter."""

from __future__ import annotations

import errno
import functools
import json
import os
import platform
import random
import struct
from types import SimpleNamespace

import pytest

from hutch.errors import ConfigError
from hutch.security import seccomp as sc
from hutch.syscall import numbers

tbl = SimpleNamespace(**{abi: numbers.table(abi) for abi in numbers.ABIS})   # tbl.X86_64["read"]

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64",
                                reason="expectations use x86_64 syscall numbers")

ALLOW = sc.SECCOMP_RET_ALLOW
EPERM = sc.SECCOMP_RET_ERRNO | errno.EPERM
ENOSYS = sc.SECCOMP_RET_ERRNO | errno.ENOSYS
X86_64, I386 = sc.AUDIT_ARCH_X86_64, sc.AUDIT_ARCH_I386


@functools.lru_cache(maxsize=8)
def decode(prog: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack("=HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]


def run_bpf(prog: bytes, nr: int, arch: int = X86_64, args=(0,) * 6) -> int:
    """Execute a classic BPF seccomp program on one struct seccomp_data."""
    args = list(args) + [0] * (6 - len(args))
    data = struct.pack("<iIQ6Q", nr, arch, 0, *args)
    insns = decode(prog)
    pc, acc = 0, 0
    for _ in range(len(insns) + 1):  # no backward jumps: each insn runs at most once
        op, jt, jf, k = insns[pc]
        if op == sc.BPF_LD_W_ABS:
            acc = struct.unpack_from("<I", data, k)[0]
        elif op == sc.BPF_ALU_AND_K:
            acc &= k
        elif op == sc.BPF_RET_K:
            return k
        elif op == sc.BPF_JMP_JA:
            pc += k
        elif op in (sc.BPF_JEQ_K, sc.BPF_JGT_K, sc.BPF_JGE_K, sc.BPF_JSET_K):
            taken = {sc.BPF_JEQ_K: acc == k, sc.BPF_JGT_K: acc > k, sc.BPF_JGE_K: acc >= k,
                     sc.BPF_JSET_K: bool(acc & k)}[op]
            pc += jt if taken else jf
        else:
            raise AssertionError(f"unexpected opcode {op:#x} at {pc}")
        pc += 1
    raise AssertionError("program ran off its end")


def nr(name: str) -> int:
    return tbl.X86_64[name]


def profile(default="SCMP_ACT_ALLOW", syscalls=(), **extra) -> dict:
    return {"defaultAction": default, "syscalls": list(syscalls), **extra}


def test_deny_mkdir_with_errno_ret_allows_the_rest():
    prog = sc.compile_filter(profile(syscalls=[
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES}]))
    assert run_bpf(prog, nr("mkdir")) == sc.SECCOMP_RET_ERRNO | errno.EACCES
    assert run_bpf(prog, nr("mkdirat")) == sc.SECCOMP_RET_ERRNO | errno.EACCES
    assert run_bpf(prog, nr("read")) == ALLOW
    assert run_bpf(prog, 999) == ALLOW  # default ALLOW: no -ENOSYS stub


def test_errno_without_errno_ret_is_eperm_and_default_errno_ret_applies():
    prog = sc.compile_filter(profile("SCMP_ACT_ERRNO", [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["write"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["openat"], "action": "SCMP_ACT_ALLOW"}], defaultErrnoRet=errno.ENXIO))
    assert run_bpf(prog, nr("read")) == ALLOW
    assert run_bpf(prog, nr("write")) == EPERM
    assert run_bpf(prog, nr("close")) == sc.SECCOMP_RET_ERRNO | errno.ENXIO


def test_syscalls_newer_than_the_profile_get_enosys_like_runc():
    prog = sc.compile_filter(profile("SCMP_ACT_ERRNO", [
        {"names": ["read", "write", "openat"], "action": "SCMP_ACT_ALLOW"}]))
    assert run_bpf(prog, nr("openat")) == ALLOW
    assert run_bpf(prog, nr("close")) == EPERM            # known, older: default
    assert run_bpf(prog, nr("clone3")) == ENOSYS          # newer than openat: ENOSYS
    # ... unless the default already is ENOSYS (runc skips the stub then).
    prog = sc.compile_filter(profile("SCMP_ACT_ERRNO", [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"}], defaultErrnoRet=errno.ENOSYS))
    assert run_bpf(prog, nr("clone3")) == ENOSYS


@pytest.mark.parametrize("name,value", [
    ("SCMP_ACT_KILL", sc.SECCOMP_RET_KILL_THREAD),
    ("SCMP_ACT_KILL_THREAD", sc.SECCOMP_RET_KILL_THREAD),
    ("SCMP_ACT_KILL_PROCESS", sc.SECCOMP_RET_KILL_PROCESS),
    ("SCMP_ACT_TRAP", sc.SECCOMP_RET_TRAP),
    ("SCMP_ACT_LOG", sc.SECCOMP_RET_LOG),
    ("SCMP_ACT_TRACE", sc.SECCOMP_RET_TRACE | errno.EPERM),
])
def test_actions(name, value):
    prog = sc.compile_filter(profile(syscalls=[{"names": ["getpid"], "action": name}]))
    assert run_bpf(prog, nr("getpid")) == value
    assert run_bpf(prog, nr("getppid")) == ALLOW


def test_trace_carries_errno_ret_as_message():
    prog = sc.compile_filter(profile(syscalls=[
        {"names": ["getpid"], "action": "SCMP_ACT_TRACE", "errnoRet": 42}]))
    assert run_bpf(prog, nr("getpid")) == sc.SECCOMP_RET_TRACE | 42


def test_other_architectures_are_killed_unless_listed():
    spec = profile(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}])
    prog = sc.compile_filter(spec)
    assert run_bpf(prog, tbl.I386["mkdir"], arch=I386) == sc.SECCOMP_RET_KILL_PROCESS
    assert run_bpf(prog, 3, arch=sc.AUDIT_ARCH_AARCH64) == sc.SECCOMP_RET_KILL_PROCESS
    # x32 syscalls (bit 30) come in with the x86_64 arch value: also refused.
    assert run_bpf(prog, tbl.X32["mkdir"]) == sc.SECCOMP_RET_KILL_PROCESS

    spec["architectures"] = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    prog = sc.compile_filter(spec)
    assert run_bpf(prog, tbl.I386["mkdir"], arch=I386) == EPERM
    assert tbl.I386["mkdir"] != nr("mkdir")
    assert run_bpf(prog, nr("mkdir"), arch=I386) == ALLOW  # 83 is not mkdir on i386
    assert run_bpf(prog, tbl.X32["mkdir"]) == EPERM
    assert run_bpf(prog, tbl.X32["read"]) == ALLOW
    assert run_bpf(prog, nr("mkdir")) == EPERM


def test_unknown_syscall_names_are_ignored():
    prog = sc.compile_filter(profile(syscalls=[
        {"names": ["no_such_call", "mkdir", "socketcall"], "action": "SCMP_ACT_ERRNO"}]))
    assert run_bpf(prog, nr("mkdir")) == EPERM  # socketcall exists on i386 only


def test_rule_with_the_default_action_is_dropped():
    prog = sc.compile_filter(profile(syscalls=[
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO"}]))
    # The ALLOW rule equals the default and disappears; the unconditional ERRNO rule wins.
    assert run_bpf(prog, nr("personality"), args=[0]) == EPERM


def test_unconditional_rule_wins_over_argument_rules():
    prog = sc.compile_filter(profile("SCMP_ACT_ERRNO", [
        {"names": ["personality"], "action": "SCMP_ACT_KILL_PROCESS",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW"}]))
    assert run_bpf(prog, nr("personality"), args=[8]) == ALLOW


def test_personality_argument_filter():
    prog = sc.compile_filter(profile("SCMP_ACT_ALLOW", [
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_NE"}]}]))
    assert run_bpf(prog, nr("personality"), args=[0xFFFFFFFF]) == ALLOW
    assert run_bpf(prog, nr("personality"), args=[0]) == EPERM
    assert run_bpf(prog, nr("personality"), args=[0x1FFFFFFFF]) == EPERM  # high half differs


def test_same_argument_twice_means_any_of_them():
    prog = sc.compile_filter(profile("SCMP_ACT_ERRNO", [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]))
    assert run_bpf(prog, nr("personality"), args=[0]) == ALLOW
    assert run_bpf(prog, nr("personality"), args=[8]) == ALLOW
    assert run_bpf(prog, nr("personality"), args=[9]) == EPERM


def test_different_arguments_are_all_required():
    prog = sc.compile_filter(profile(syscalls=[
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 16, "op": "SCMP_CMP_EQ"},
            {"index": 2, "value": 9, "op": "SCMP_CMP_EQ"}]}]))
    assert run_bpf(prog, nr("socket"), args=[16, 3, 9]) == EPERM
    assert run_bpf(prog, nr("socket"), args=[16, 3, 0]) == ALLOW
    assert run_bpf(prog, nr("socket"), args=[2, 3, 9]) == ALLOW


BOUNDARIES = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000, 0x100000001,
              0x1FFFFFFFF, 0xFFFFFFFF00000000, 0xFFFFFFFFFFFFFFFE, 0xFFFFFFFFFFFFFFFF]
PY_OPS = {
    "SCMP_CMP_EQ": lambda a, v, _: a == v, "SCMP_CMP_NE": lambda a, v, _: a != v,
    "SCMP_CMP_LT": lambda a, v, _: a < v, "SCMP_CMP_LE": lambda a, v, _: a <= v,
    "SCMP_CMP_GT": lambda a, v, _: a > v, "SCMP_CMP_GE": lambda a, v, _: a >= v,
    "SCMP_CMP_MASKED_EQ": lambda a, v, two: a & v == two,
}


@pytest.mark.parametrize("op", sorted(PY_OPS))
def test_64_bit_comparisons_use_both_halves(op):
    rng = random.Random(op)
    values = BOUNDARIES + [rng.getrandbits(64) for _ in range(6)]
    for value in values:
        two = value & rng.getrandbits(64) if op == "SCMP_CMP_MASKED_EQ" else 0
        prog = sc.compile_filter(profile(syscalls=[{"names": ["ioctl"], "action": "SCMP_ACT_ERRNO",
                                                    "args": [{"index": 3, "value": value,
                                                              "valueTwo": two, "op": op}]}]))
        for arg in values + [value, value ^ 1, value ^ (1 << 32), two]:
            arg &= sc.U64
            expected = EPERM if PY_OPS[op](arg, value, two) else ALLOW
            got = run_bpf(prog, nr("ioctl"), args=[0, 0, 0, arg])
            assert got == expected, f"{op} arg={arg:#x} value={value:#x} two={two:#x}"


def test_i386_compares_the_low_half_only():
    prog = sc.compile_filter(profile(architectures=["SCMP_ARCH_X86"], syscalls=[
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_GE"}]}]))
    assert run_bpf(prog, tbl.I386["personality"], arch=I386, args=[8]) == EPERM
    assert run_bpf(prog, tbl.I386["personality"], arch=I386, args=[7]) == ALLOW


def test_many_argument_rules_for_one_syscall_keep_jumps_in_range():
    rules = [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
              "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"},
                       {"index": 1, "value": v, "op": "SCMP_CMP_EQ"}]} for v in range(200)]
    prog = sc.compile_filter(profile("SCMP_ACT_ERRNO", rules))
    assert run_bpf(prog, nr("personality"), args=[150, 150]) == ALLOW
    assert run_bpf(prog, nr("personality"), args=[150, 149]) == EPERM


def reference_action(profile: sc.Profile, table: dict, number: int, args) -> int:
    """What the profile means for one syscall, straight from the OCI semantics
    (runc + libseccomp), without any BPF: the oracle for the generated program."""
    by_number: dict[int, list] = {}
    for names, rule in profile.rules:
        for nr_ in {table[n] for n in names if n in table}:
            by_number.setdefault(nr_, []).append(rule)
    matching = by_number.get(number, [])
    if by_number and number > max(by_number) and sc._enosys_stub_wanted(profile):
        return ENOSYS
    for rule in matching:
        if not rule.conds:
            return rule.action
    for rule in matching:
        if all(PY_OPS[c.op](args[c.index], c.value, c.value_two) for c in rule.conds):
            return rule.action
    return profile.default_action


def containers_common_profile() -> dict:
    path = "/usr/share/containers/seccomp.json"
    if not os.path.exists(path):
        pytest.skip("containers-common's seccomp.json is not installed")
    with open(path) as f:
        source = json.load(f)
    calls = [{k: v for k, v in call.items() if k in ("names", "action", "args", "errnoRet")}
             for call in source["syscalls"]]
    return {"defaultAction": source["defaultAction"],
            "defaultErrnoRet": source.get("defaultErrnoRet"),
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": calls}


def test_every_syscall_number_gets_what_the_profile_says():
    spec = containers_common_profile()
    prog = sc.compile_filter(spec)
    profile = sc.parse_profile(spec)
    rng = random.Random(7)
    arg_sets = [[0] * 6, [8] * 6, [0x7E020000] * 6] + \
        [[rng.choice(BOUNDARIES + [rng.getrandbits(64)]) for _ in range(6)] for _ in range(5)]
    for arch, table, offset in ((X86_64, tbl.X86_64, 0), (I386, tbl.I386, 0),
                                (X86_64, tbl.X32, sc.X32_SYSCALL_BIT)):
        for number in range(offset, offset + 520):
            for args in arg_sets:
                if arch == I386:  # an i386 task's arguments are 32 bits wide
                    args = [a & 0xFFFFFFFF for a in args]
                assert run_bpf(prog, number, arch, args) == \
                    reference_action(profile, table, number, args), (hex(arch), number, args)


def test_docker_style_profile_from_containers_common():
    path = "/usr/share/containers/seccomp.json"
    if not os.path.exists(path):
        pytest.skip("containers-common's seccomp.json is not installed")
    with open(path) as f:
        source = json.load(f)
    calls = [{k: v for k, v in call.items() if k in ("names", "action", "args", "errnoRet")}
             for call in source["syscalls"] if not call.get("includes") and not call.get("excludes")]
    spec = {"defaultAction": source["defaultAction"], "defaultErrnoRet": source.get("defaultErrnoRet"),
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], "syscalls": calls}
    prog = sc.compile_filter(spec)
    assert len(prog) // 8 <= sc.BPF_MAXINSNS
    assert run_bpf(prog, nr("read")) == ALLOW
    assert run_bpf(prog, tbl.I386["read"], arch=I386) == ALLOW
    assert run_bpf(prog, nr("kexec_load")) & 0xFFFF0000 == sc.SECCOMP_RET_ERRNO


@pytest.mark.parametrize("spec,where", [
    (profile("SCMP_ACT_NOPE"), "linux.seccomp.defaultAction"),
    (profile(syscalls=[{"names": ["a"], "action": "SCMP_ACT_ERRNO"}] * 3
             + [{"names": ["b"], "action": "SCMP_ACT_BOGUS"}]), "linux.seccomp.syscalls[3].action"),
    (profile(syscalls=[{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]),
     "linux.seccomp.syscalls[0].action"),
    (profile(syscalls=[{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SIMILAR"}]}]),
     "linux.seccomp.syscalls[0].args[0].op"),
    (profile(syscalls=[{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]),
     "linux.seccomp.syscalls[0].args[0].index"),
    (profile(syscalls=[{"names": [], "action": "SCMP_ACT_ERRNO"}]), "linux.seccomp.syscalls[0].names"),
    (profile(architectures=["SCMP_ARCH_VAX"]), "linux.seccomp.architectures[0]"),
    (profile(architectures=["SCMP_ARCH_AARCH64"]), "linux.seccomp.architectures[0]"),
    (profile(flags=["SECCOMP_FILTER_FLAG_BOGUS"]), "linux.seccomp.flags[0]"),
    (profile(syscalls=[{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": -1}]),
     "linux.seccomp.syscalls[0].errnoRet"),
])
def test_bad_profiles_name_the_json_path(spec, where):
    with pytest.raises(ConfigError) as info:
        sc.compile_filter(spec)
    assert info.value.where == where, str(info.value)


def test_unsupported_compat_arch_is_accepted_and_left_out():
    prog = sc.compile_filter(profile(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_ARM"]))
    assert run_bpf(prog, 0, arch=sc.AUDIT_ARCH_ARM) == sc.SECCOMP_RET_KILL_PROCESS


def test_flags():
    assert sc.filter_flags(profile(flags=["SECCOMP_FILTER_FLAG_LOG",
                                          "SECCOMP_FILTER_FLAG_SPEC_ALLOW"])) == 6


def test_syscall_table_matches_the_kernel_abi():
    assert (nr("read"), nr("execve"), nr("seccomp"), nr("clone3")) == (0, 59, 317, 435)
    assert tbl.AARCH64["openat"] == 56 and "open" not in tbl.AARCH64
    assert tbl.I386["socketcall"] == 102
    assert tbl.X32["read"] == 0x40000000
