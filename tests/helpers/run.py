"""Helpers for the `hutch run` integration tests: run the binary, watch the processes it
starts from the host side, and read kernel state the same way inside and outside.

Everything here observes the kernel independently of hutch (ps-like /proc scans,
namespace inodes, capability masks computed from our own table) so a test using it
fails when a feature is missing, whatever hutch itself reports."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.host import kill_pids

# docker's default capability set, written out here independently of hutch's own table.
DOCKER_DEFAULT_CAPS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
    "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29,
    "CAP_SETFCAP": 31,
}
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_CHOWN = 0

def mask(bits) -> int:
    out = 0
    for bit in bits:
        out |= 1 << bit
    return out


DOCKER_DEFAULT_MASK = mask(DOCKER_DEFAULT_CAPS.values())


def hutch_executable() -> str:
    """The hutch console script next to the running interpreter (the project's venv), or
    HUTCH_TEST_HUTCH: e.g. a shim that runs the command with no isolation, to check that
    the tests fail without the features they claim to test.  Such a shim runs the test
    commands on the host itself; the tests are written to stay harmless then (hostname
    written back unchanged, addresses only added after checking the netns, host files
    they might create removed), but run that check on a scratch machine."""
    if os.environ.get("HUTCH_TEST_HUTCH"):
        return os.environ["HUTCH_TEST_HUTCH"]
    exe = Path(sys.executable).parent / "hutch"
    if exe.exists():
        return str(exe)
    import shutil
    found = shutil.which("hutch")
    if not found:
        pytest.skip("the hutch command is not installed")
    return found


def hutch_run(args, *, input=None, timeout=60, text=True, env=None) -> subprocess.CompletedProcess:
    """`hutch run ARGS...`, capturing stdout and stderr."""
    cmd = [hutch_executable(), "run", *[str(a) for a in args]]
    return subprocess.run(cmd, input=input, capture_output=True, text=text, timeout=timeout,
                          env=env, stdin=None if input is not None else subprocess.DEVNULL)


def start_hutch(args, **kw) -> subprocess.Popen:
    """Start `hutch run ARGS...` in the background with stdout piped (text)."""
    cmd = [hutch_executable(), "run", *[str(a) for a in args]]
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(cmd, text=True, **kw)


def read_line_until(proc: subprocess.Popen, marker: str, timeout: float = 30) -> list[str]:
    """Read proc's stdout lines until one equals marker; fail the test on EOF or timeout.

    Reads the pipe's file descriptor directly (not the buffered text stream) so that
    select() never waits on data already buffered; leftovers stay in proc.pending."""
    fd = proc.stdout.fileno()
    pending = getattr(proc, "pending", b"")
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            lines.append(line.decode(errors="replace"))
            if lines[-1] == marker:
                proc.pending = pending
                return lines
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no {marker!r} line from the container within {timeout}s; got {lines}")
        if not select.select([fd], [], [], left)[0]:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            status = proc.wait()
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"container output ended before {marker!r}: {lines} {pending!r}; "
                        f"status {status}; stderr {err!r}")
        pending += chunk


def rest_of_output(proc: subprocess.Popen, timeout: float = 30) -> tuple[str, int]:
    """The rest of proc's stdout (after read_line_until) and its exit status."""
    fd = proc.stdout.fileno()
    data = getattr(proc, "pending", b"")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([fd], [], [], deadline - time.monotonic())[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                proc.pending = b""
                return data.decode(errors="replace"), proc.wait(timeout=timeout)
            data += chunk
    pytest.fail(f"container did not finish within {timeout}s; output so far {data!r}")


# --- processes seen from the host -------------------------------------------------------

def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def cmdline(pid: int) -> list[str] | None:
    data = _read(f"/proc/{pid}/cmdline")
    return None if data is None else data.split("\0")[:-1]


def parent_pid(pid: int) -> int | None:
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[1])


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(pid: int) -> list[int]:
    """All live descendants of pid (children first), from /proc/*/stat parent links."""
    children: dict[int, list[int]] = {}
    for p in all_pids():
        ppid = parent_pid(p)
        if ppid is not None:
            children.setdefault(ppid, []).append(p)
    out, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            out.append(child)
            queue.append(child)
    return out


def processes_with_cmdline(argv: list[str]) -> list[int]:
    """Host pids whose command line is exactly argv (used with unique marker commands)."""
    return [p for p in all_pids() if cmdline(p) == argv]


def wait_for_process(argv: list[str], timeout: float = 30) -> int:
    """The host pid of the (single) process running argv, waiting for it to appear."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = processes_with_cmdline(argv)
        if found:
            return found[0]
        time.sleep(0.02)
    pytest.fail(f"no process {argv} appeared on the host within {timeout}s")


def status_field(pid: int | str, name: str) -> str:
    """One field of /proc/PID/status (e.g. Uid, CapEff)."""
    for line in (_read(f"/proc/{pid}/status") or "").splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    raise KeyError(f"{name} not in /proc/{pid}/status")


def kill_tree(proc: subprocess.Popen, *markers: list[str]) -> None:
    """Stop a background hutch the gentle way first: SIGKILL the container's processes (its
    descendants, and any process running a marker command line in case hutch let one escape
    its tree) so hutch sees its container end and cleans up; SIGKILL hutch itself only if it
    does not exit then.  Finally reap it and close its pipes."""
    kill_pids(descendants(proc.pid) + [p for argv in markers for p in processes_with_cmdline(argv)])
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        kill_pids([proc.pid, *descendants(proc.pid)])
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


@pytest.fixture
def restore_host_names():
    """Safety net for tests that set a hostname or domainname: if a broken hutch did it in
    the host's UTS namespace, put the host's names back (the test has failed anyway)."""
    names = {f: open(f"/proc/sys/kernel/{f}").read() for f in ("hostname", "domainname")}
    yield
    for f, value in names.items():
        if open(f"/proc/sys/kernel/{f}").read() != value:
            with open(f"/proc/sys/kernel/{f}", "w") as out:
                out.write(value)


# --- kernel state parsed the same way inside and outside ----------------------------------

def host_ns(kind: str) -> str:
    """`kind:[inode]` of the test process's own namespace."""
    return os.readlink(f"/proc/self/ns/{kind}")


def parse_keyed(text: str) -> dict[str, str]:
    """`key=value` lines printed by a container script."""
    out = {}
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq:
            out[key.strip()] = value.strip()
    return out


def proc_states(stat_text: str) -> dict[int, str]:
    """pid -> state letter from concatenated /proc/PID/stat lines."""
    out = {}
    for line in stat_text.splitlines():
        if ")" not in line:
            continue
        pid = line.split(" ", 1)[0]
        rest = line[line.rindex(")") + 2:].split()
        if pid.isdigit() and rest:
            out[int(pid)] = rest[0]
    return out


def net_devices(proc_net_dev: str) -> set[str]:
    """Interface names from the text of /proc/net/dev."""
    return {line.split(":", 1)[0].strip() for line in proc_net_dev.splitlines()[2:] if ":" in line}


def one_hutch_line(stderr: str) -> str:
    """Assert stderr is exactly one line starting with `hutch:` and return it."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line on stderr, got {lines!r}"
    assert lines[0].startswith("hutch:"), f"error line must start with 'hutch:': {lines[0]!r}"
    assert "Traceback" not in stderr
    return lines[0]


def ipcmk_queue() -> int:
    """Create a SysV message queue on the host with util-linux ipcmk; returns its id."""
    out = subprocess.run(["ipcmk", "-Q"], capture_output=True, text=True, check=True).stdout
    return int(out.strip().rsplit(":", 1)[1])


def ipcrm_queue(qid: int) -> None:
    subprocess.run(["ipcrm", "-q", str(qid)], capture_output=True)


def unknown_option(result: subprocess.CompletedProcess, option: str) -> bool:
    """True when hutch rejected option as unknown (a feature that has not landed yet)."""
    return result.returncode == 125 and option in result.stderr and (
        any(w in result.stderr.lower() for w in ("unknown", "unrecognized", "not defined")))
