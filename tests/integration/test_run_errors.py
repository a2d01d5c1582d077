"""`hutch run` bad input: one `hutch:` line on stderr, the documented exit status, and
nothing left behind on the host (mounts, cgroups, processes, state, files)."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from helpers import leaks
from helpers.run import all_pids, cmdline, hutch_executable, hutch_run, one_hutch_line

pytestmark = pytest.mark.priv

STATE_ROOT = "/run/hutch"


def snapshot() -> dict:
    """leaks.snapshot(), retried: other suites create and remove cgroups concurrently and a
    directory vanishing mid-scan raises FileNotFoundError."""
    for attempt in range(5):
        try:
            return leaks.snapshot()
        except FileNotFoundError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def state_entries() -> set[str]:
    try:
        return set(os.listdir(STATE_ROOT))
    except FileNotFoundError:
        return set()


def my_children() -> set[int]:
    me = str(os.getpid())
    out = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2:].split()[1] == me:
            out.add(int(pid))
    return out


def processes_using(path: str) -> list[str]:
    """Processes whose command line names path: a hutch left running for this test's
    rootfs or volume (its argv carries them)."""
    found = []
    for pid in all_pids():
        argv = cmdline(pid) or []
        if any(path in arg for arg in argv):
            found.append(f"{pid} {' '.join(argv)[:100]}")
    return found


PR_SET_CHILD_SUBREAPER = 36


def set_child_subreaper(on: bool) -> None:
    """While on, orphans of hutch (a container it failed to clean up) become our children."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)


def reap(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


@pytest.fixture
def nothing_left_behind(tmp_path):
    """Snapshot the host before the call; after it, assert nothing new remains.

    Other suites may run concurrently on this machine, so only what can be ours counts:
    mounts naming this test's tmp_path (its rootfs lives there) or hutch's state root,
    processes naming it, cgroups and state entries of `hutch run` containers (ids
    `run-...`), and our children: this test process is made a child subreaper, so any
    container process hutch leaves orphaned is reparented to it."""
    mine = str(tmp_path)
    before = snapshot()
    state_before = state_entries()
    children_before = my_children()
    set_child_subreaper(True)
    try:
        yield
        found = leaks.new_since(before, snapshot())
        leftover_children = sorted(my_children() - children_before)
        ours = {
            "mounts": [m for m in found.get("mounts", []) if mine in m or STATE_ROOT in m],
            "processes": processes_using(mine),
            "cgroups": [c for c in found.get("cgroups", []) if "/run-" in c],
            "state": sorted(e for e in state_entries() - state_before if e.lstrip(".").startswith("run-")),
            "children": [f"{pid} {' '.join(cmdline(pid) or [])}" for pid in leftover_children],
        }
        reap(leftover_children)
        assert not any(ours.values()), f"left behind: { {k: v for k, v in ours.items() if v} }"
    finally:
        set_child_subreaper(False)


def assert_hutch_error(result, expected_status: int, *words: str) -> str:
    assert result.returncode == expected_status, (result.returncode, result.stderr)
    line = one_hutch_line(result.stderr)
    for word in words:
        assert word.lower() in line.lower(), f"{word!r} not named in {line!r}"
    return line


def test_missing_rootfs(nothing_left_behind, tmp_path):
    missing = tmp_path / "no-such-rootfs"
    result = hutch_run(["--rootfs", missing, "--", "/bin/true"])
    assert_hutch_error(result, 125, str(missing))


def test_rootfs_is_a_file(nothing_left_behind, tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert_hutch_error(hutch_run(["--rootfs", not_a_dir, "--", "/bin/true"]), 125, str(not_a_dir))


def test_rootfs_without_the_command(nothing_left_behind, tmp_path):
    empty = tmp_path / "empty-rootfs"
    empty.mkdir()
    result = hutch_run(["--rootfs", empty, "--", "/bin/true"])
    assert_hutch_error(result, 127, "/bin/true")


def test_unknown_option(nothing_left_behind, rootfs):
    assert_hutch_error(hutch_run(["--rootfs", rootfs, "--bogus-flag", "--", "true"]), 125, "--bogus-flag")


def test_no_command(nothing_left_behind, rootfs):
    assert_hutch_error(hutch_run(["--rootfs", rootfs, "--"]), 125)


@pytest.mark.parametrize("args,word", [
    (["--uidmap", "0:abc:10"], "--uidmap"),
    (["--uidmap", "0:100000"], "--uidmap"),
    (["--uidmap", "0:100000:0"], "--uidmap"),
    (["--gidmap", "-1:100000:10"], "--gidmap"),
])
def test_invalid_id_map_syntax(nothing_left_behind, rootfs, args, word):
    assert_hutch_error(hutch_run(["--rootfs", rootfs, "--userns", *args, "--", "true"]), 125, word)


def test_overlapping_uid_maps_refused_by_the_kernel(nothing_left_behind, rootfs):
    """Overlaps pass a syntax check but the kernel refuses to write the map: the child
    already exists by then and must be cleaned up."""
    result = hutch_run(["--rootfs", rootfs, "--userns", "--uidmap", "0:100000:10",
                        "--uidmap", "5:200000:10", "--gidmap", "0:100000:10", "--", "true"])
    assert_hutch_error(result, 125)


def test_bind_mount_onto_read_only_target(nothing_left_behind, tmp_path):
    """In the default root the host's /usr is read-only: a mount point cannot be created
    there, and it must certainly not be created on the host."""
    target = f"/usr/hutch-test-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "src"
    src.mkdir()
    try:
        result = hutch_run(["-v", f"{src}:{target}", "--", "true"])
        assert_hutch_error(result, 125, target)
        assert not os.path.exists(target), "hutch created a directory in the host's /usr"
    finally:
        if os.path.isdir(target):
            os.rmdir(target)


def test_bind_mount_onto_read_only_rootfs(nothing_left_behind, rootfs, tmp_path):
    """A bind target below a read-only bind mount cannot be created."""
    ro = tmp_path / "ro"
    ro.mkdir()
    result = hutch_run(["--rootfs", rootfs, "-v", f"{ro}:/ro:ro", "-v", f"{tmp_path}:/ro/sub",
                        "--", "true"])
    assert_hutch_error(result, 125, "/ro/sub")
    assert not (ro / "sub").exists()


def test_missing_bind_source(nothing_left_behind, rootfs, tmp_path):
    missing = tmp_path / "missing"
    assert_hutch_error(hutch_run(["--rootfs", rootfs, "-v", f"{missing}:/data", "--", "true"]),
                       125, str(missing))


@pytest.mark.parametrize("args,word", [
    (["-v", "novolume"], "-v"),
    (["-v", "/tmp:relative"], "relative"),
    (["--cap-add", "CAP_BOGUS"], "CAP_BOGUS"),
    (["--ulimit", "nofile=abc"], "--ulimit"),
    (["--ulimit", "bogus=1:1"], "bogus"),
    (["--net", "bridge0"], "bridge0"),
    (["--share", "bogus"], "bogus"),
    (["--join-ns", "net:/nonexistent/ns"], "/nonexistent/ns"),
    (["--time-offset", "realtime=5"], "realtime"),
    (["--propagation", "sideways"], "sideways"),
    (["-u", "abc:def"], "abc"),
])
def test_invalid_option_values(nothing_left_behind, rootfs, args, word):
    assert_hutch_error(hutch_run(["--rootfs", rootfs, *args, "--", "true"]), 125, word)


def test_ulimit_above_hard_limit(nothing_left_behind, rootfs):
    """Root here lacks CAP_SYS_RESOURCE: raising nofile above the hard limit must fail cleanly."""
    hard = int(open("/proc/self/limits").read().split("Max open files")[1].split()[1])
    result = hutch_run(["--rootfs", rootfs, "--ulimit", f"nofile={hard * 4}:{hard * 4}", "--", "true"])
    if result.returncode == 0:
        pytest.skip("this root can raise rlimits (has CAP_SYS_RESOURCE)")
    assert_hutch_error(result, 125, "nofile")


def test_non_root_without_userns(nothing_left_behind, rootfs):
    """A non-root user without --userns: one line, 125."""
    probe = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                            hutch_executable(), "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"hutch's interpreter is not usable by uid 65534 here: {probe.stderr.strip()[:120]}")
    result = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                             hutch_executable(), "run", "--rootfs", str(rootfs), "--", "true"],
                            capture_output=True, text=True, timeout=60)
    assert_hutch_error(result, 125)


def test_userns_rootfs_unreachable_by_mapped_ids(nothing_left_behind, rootfs):
    """pytest's tmp dirs are mode 0700: container root mapped to an unprivileged host uid
    cannot reach the rootfs.  One line naming the rootfs, 125, no state left."""
    result = hutch_run(["--rootfs", rootfs, "--userns", "--", "true"])
    assert_hutch_error(result, 125, str(rootfs))
