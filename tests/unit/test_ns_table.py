"""The one namespace table (hutch.syscall.constants.NAMESPACES) against the kernel and
<sched.h>, and every view of it the rest of hutch uses."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from hutch.engine import runspec
from hutch.errors import HutchError
from hutch.ns import join, names
from hutch.oci import validate
from hutch.syscall import constants as C
from hutch.tools import nsenter

# <sched.h> (linux/sched.h, glibc's bits/sched.h): the values, written out once more here
# on purpose, so that a typo in the table cannot also be in the expectation.
SCHED_H = {
    "CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000, "CLONE_NEWTIME": 0x00000080,
}
FLAG_OF = {"mount": "CLONE_NEWNS", "cgroup": "CLONE_NEWCGROUP", "uts": "CLONE_NEWUTS",
           "ipc": "CLONE_NEWIPC", "user": "CLONE_NEWUSER", "pid": "CLONE_NEWPID",
           "network": "CLONE_NEWNET", "time": "CLONE_NEWTIME"}


def test_table_has_every_type_once():
    oci = [row[0] for row in C.NAMESPACES]
    assert sorted(oci) == sorted(FLAG_OF)
    for column in range(5):
        values = [row[column] for row in C.NAMESPACES]
        assert len(set(values)) == len(values), f"column {column} repeats a value"


def test_clone_flags_match_sched_h():
    for oci, flag, *_ in C.NAMESPACES:
        assert flag == SCHED_H[FLAG_OF[oci]] == getattr(C, FLAG_OF[oci]), oci


@pytest.mark.parametrize("header", ["/usr/include/linux/sched.h",
                                    "/usr/include/x86_64-linux-gnu/bits/sched.h"])
def test_clone_flags_match_the_installed_header(header):
    if not Path(header).exists():
        pytest.skip(f"no {header}")
    found = dict(re.findall(r"#\s*define\s+(CLONE_NEW\w+)\s+(0x[0-9a-fA-F]+)", Path(header).read_text()))
    assert found, header
    for name, value in found.items():
        assert int(value, 16) == SCHED_H[name], name


def test_proc_names_exist_in_proc_self_ns():
    entries = set(os.listdir("/proc/self/ns"))
    for oci, _flag, proc, *_ in C.NAMESPACES:
        assert proc in entries, f"{oci}: no /proc/self/ns/{proc}"
    # and the kernel has no namespace type the table lacks
    kinds = {e.removesuffix("_for_children") for e in entries}
    assert kinds <= {row[2] for row in C.NAMESPACES}


def test_join_order_user_first_mount_last():
    order = C.NAMESPACE_JOIN_ORDER
    assert order[0] == "user" and order[-1] == "mount"
    assert order == ("user", "cgroup", "ipc", "uts", "network", "pid", "time", "mount")
    assert tuple(C.NAMESPACE_FLAGS) == tuple(C.NAMESPACE_PROC_NAMES) == order
    assert join.ENTER_ORDER[0] == "user" and join.ENTER_ORDER[-1] == "mnt"


def test_views_derive_from_the_table():
    assert C.NAMESPACE_PROC_NAMES["mount"] == "mnt" and C.NAMESPACE_PROC_NAMES["network"] == "net"
    assert names.ALIASES == {"mount": "mnt", "network": "net"}
    assert names.CLONE_FLAGS["mnt"] == C.CLONE_NEWNS and names.FLAG_TYPES[C.CLONE_NEWNET] == "net"
    assert set(join.REVERSIBLE) == {"net", "uts", "ipc", "cgroup", "pid", "time"}
    # nsenter's own letters and long options
    assert nsenter.NS_OPTIONS == {"m": "mnt", "u": "uts", "i": "ipc", "n": "net", "p": "pid",
                                  "U": "user", "C": "cgroup", "T": "time"}
    assert nsenter.LONG_NS == {"mount": "m", "uts": "u", "ipc": "i", "net": "n", "pid": "p",
                               "user": "U", "cgroup": "C", "time": "T"}
    assert runspec.SHARE_ALIASES == {"net": "network", "mnt": "mount"}
    # validate keeps its own literal (it may not import hutch.syscall): it must agree
    assert set(validate.NAMESPACE_TYPES) == set(C.NAMESPACE_FLAGS)


def test_namespace_path_takes_either_vocabulary():
    assert join.namespace_path(7, "network") == join.namespace_path(7, "net") == "/proc/7/ns/net"
    assert join.namespace_path("/run/netns/x", "net") == "/run/netns/x"


# --- become_root_in_userns: the setgroups rule (the real kernel: tests/priv) ---------

@pytest.fixture
def calls(monkeypatch):
    done = []
    monkeypatch.setattr(join.os, "setresgid", lambda *a: done.append("setresgid"))
    monkeypatch.setattr(join.os, "setresuid", lambda *a: done.append("setresuid"))
    return done


def _refuse(*_a):
    raise PermissionError(1, "Operation not permitted")


def test_become_root_accepts_setgroups_denied_by_the_namespace(monkeypatch, calls):
    monkeypatch.setattr(join.os, "setgroups", _refuse)
    monkeypatch.setattr(join, "setgroups_denied", lambda fd=None: True)
    join.become_root_in_userns()
    assert calls == ["setresgid", "setresuid"]


def test_become_root_refuses_other_setgroups_failures(monkeypatch, calls):
    monkeypatch.setattr(join.os, "setgroups", _refuse)
    monkeypatch.setattr(join, "setgroups_denied", lambda fd=None: False)
    with pytest.raises(HutchError, match=r"setgroups\(\[\]\).*does not deny"):
        join.become_root_in_userns()
    assert calls == ["setresgid"]          # never went on to setresuid


def test_become_root_refuses_unmapped_root(monkeypatch, calls):
    def unmapped(*_a):
        raise OSError(22, "Invalid argument")
    monkeypatch.setattr(join.os, "setresgid", unmapped)
    with pytest.raises(HutchError, match=r"setresgid\(0\): Invalid argument"):
        join.become_root_in_userns()


def test_setgroups_denied_reads_proc(tmp_path):
    (tmp_path / "setgroups").write_text("deny\n")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert join.setgroups_denied(fd)
        (tmp_path / "setgroups").write_text("allow\n")
        assert not join.setgroups_denied(fd)
        os.unlink(tmp_path / "setgroups")
        assert not join.setgroups_denied(fd)      # unreadable: not "deny"
    finally:
        os.close(fd)
