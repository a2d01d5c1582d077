"""hutch.syscall.numbers: one table for every raw syscall, no guessing on other machines."""

from __future__ import annotations

import ast
import errno
import os
from pathlib import Path

import pytest

from hutch.errors import SysCallError
from hutch.syscall import numbers

SYSCALL_PKG = Path(__file__).resolve().parents[2] / "src" / "hutch" / "syscall"


def raw_syscalls_used() -> set[str]:
    """Names passed to syscall("name", ...) or number("name") anywhere in hutch.syscall."""
    names = set()
    for path in SYSCALL_PKG.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            first = node.args[0]
            if func in ("syscall", "number") and isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
    return names


def test_the_syscall_package_uses_raw_syscalls():
    assert {"pivot_root", "capset", "seccomp", "bpf", "sched_setattr", "mount_setattr"} <= raw_syscalls_used()


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_every_raw_syscall_has_a_number(machine, monkeypatch):
    table = numbers.table(numbers.NATIVE_ABIS[machine])
    missing = sorted(raw_syscalls_used() - set(table))
    assert not missing, f"no {machine} number for {missing}"
    monkeypatch.setattr(numbers, "MACHINE", machine)
    for name in raw_syscalls_used():
        assert numbers.number(name) == table[name]


def test_known_numbers():
    x86_64, aarch64 = numbers.table("X86_64"), numbers.table("AARCH64")
    assert (x86_64["bpf"], x86_64["sched_setattr"], x86_64["pivot_root"]) == (321, 314, 155)
    assert (aarch64["bpf"], aarch64["sched_setattr"], aarch64["pivot_root"]) == (280, 274, 41)
    assert x86_64["mount_setattr"] == aarch64["mount_setattr"] == 442


def test_unknown_architecture_is_refused(monkeypatch):
    monkeypatch.setattr(numbers, "MACHINE", "riscv64")
    with pytest.raises(numbers.NoSyscallNumber) as info:
        numbers.number("bpf")
    assert str(info.value) == "syscall bpf: no number known for architecture riscv64"
    assert info.value.errno == errno.ENOSYS and isinstance(info.value, SysCallError)


def test_unknown_architecture_is_refused_at_the_call(monkeypatch):
    """The wrappers look the number up when called, not at import: no x86_64 fallback."""
    from hutch.syscall import bpf, sched
    monkeypatch.setattr(numbers, "MACHINE", "s390x")
    with pytest.raises(numbers.NoSyscallNumber, match="^syscall sched_getattr: no number known "
                       "for architecture s390x$"):
        sched.sched_getattr()
    with pytest.raises(numbers.NoSyscallNumber, match="^syscall bpf: "):
        bpf.prog_fd_by_id(1)


def test_a_name_the_abi_lacks_is_refused(monkeypatch):
    monkeypatch.setattr(numbers, "MACHINE", "aarch64")
    with pytest.raises(numbers.NoSyscallNumber, match="^syscall open: no number known for "
                       "architecture aarch64$"):
        numbers.number("open")


def test_the_machine_is_read_once(monkeypatch):
    """personality(LINUX32) in the container makes uname say i686; the numbers stay native."""
    native = numbers.number("close_range")
    fake = os.uname_result(os.uname()[:4] + ("i686",))
    monkeypatch.setattr(os, "uname", lambda: fake)
    assert numbers.number("close_range") == native


def test_tables_hold_every_abi():
    for abi in numbers.ABIS:
        table = numbers.table(abi)
        assert len(table) > 300 and table["read"] in (0, 3, 63, 0x40000000)


def test_the_generator_can_find_its_part_of_numbers_py():
    from hutch.syscall import gen_syscall_table
    text = Path(numbers.__file__).read_text()
    assert text.count(gen_syscall_table.MARKER) == 1
    assert text.rstrip().endswith('"""') and text.index(gen_syscall_table.MARKER) < text.index('X86_64 = """')
