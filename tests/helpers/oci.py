"""A small black-box driver for an OCI runtime binary (hutch or runc), used exactly as
engines use runc: ``RUNTIME --root DIR VERB [OPTIONS] ID``.

Every method returns a ``subprocess.CompletedProcess`` with text stdout/stderr.  The
runtime's output goes to temporary files, never to pipes: a detached container inherits
the runtime's stdio, and a pipe it holds open would make ``communicate()`` wait for the
container to exit.

Fixtures (import them into a test module: ``from helpers.oci import oci, ref_oci``):

- ``oci``: a :class:`Runtime` for the runtime under test with its own ``--root`` temp dir;
  at teardown every container left in that root is force-deleted.
- ``ref_oci``: the same for runc when the runtime under test is not runc (``None`` when it
  is runc or runc is missing), for differential tests.

A fixture's teardown also fails the test when any command printed a Python traceback.
``HUTCH_OCI_TIMEOUT`` (seconds, default 20) bounds every command, so a hanging runtime
fails a test instead of stalling the suite.

Run the suite against runc to prove it checks real behaviour:
``HUTCH_TEST_RUNTIME=/usr/sbin/runc .venv/bin/pytest tests/integration/test_oci_*.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

try:  # the driver is also used by bench/oci, which may run without pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

DEFAULT_TIMEOUT = float(os.environ.get("HUTCH_OCI_TIMEOUT", "20"))  # per command, seconds


def new_id(prefix: str = "hutch-test") -> str:
    """A unique container id; the prefix lets the session leak scan spot strays."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _read(f) -> str:
    f.seek(0)
    return f.read().decode(errors="replace")


class Runtime:
    """Drive one OCI runtime binary with its own state root."""

    def __init__(self, path: str, root: str | Path, global_args: tuple[str, ...] = ()):
        self.path = str(path)
        self.root = str(root)
        self.global_args = tuple(global_args)
        self.tracebacks: list[str] = []   # commands whose stderr held a Python traceback

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def is_runc(self) -> bool:
        return self.name == "runc"

    def argv(self, *args: str) -> list[str]:
        return [self.path, "--root", self.root, *self.global_args, *map(str, args)]

    # -- the one place a command is run -------------------------------------------------
    def cmd(self, *args, timeout: float = DEFAULT_TIMEOUT, stdin=subprocess.DEVNULL,
            pass_fds=(), input: str | None = None, env=None, cwd=None) -> subprocess.CompletedProcess:
        """Run ``RUNTIME --root ROOT *args``; stdout/stderr captured through files."""
        argv = self.argv(*args)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            if input is not None:
                stdin = subprocess.PIPE
            proc = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err,
                                    pass_fds=pass_fds, env=env, cwd=cwd)
            try:
                if input is not None:
                    proc.communicate(input.encode(), timeout=timeout)
                else:
                    proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
            res = subprocess.CompletedProcess(argv, proc.returncode, _read(out), _read(err))
        if "Traceback (most recent call last)" in res.stderr:
            self.tracebacks.append(f"{' '.join(argv[3:])}:\n{res.stderr}")
        return res

    def popen(self, *args, **kw) -> subprocess.Popen:
        """Start a command without waiting (for races and foreground runs)."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        return subprocess.Popen(self.argv(*args), **kw)

    # -- the verbs ------------------------------------------------------------------------
    def create(self, cid: str, bundle, *opts, **kw):
        return self.cmd("create", "--bundle", str(bundle), *opts, cid, **kw)

    def start(self, cid: str, **kw):
        return self.cmd("start", cid, **kw)

    def run(self, cid: str, bundle, *opts, **kw):
        return self.cmd("run", "--bundle", str(bundle), *opts, cid, **kw)

    def state(self, cid: str, **kw):
        return self.cmd("state", cid, **kw)

    def kill(self, cid: str, sig: str | int | None = None, *opts, **kw):
        args = ["kill", *opts, cid]
        if sig is not None:
            args.append(str(sig))
        return self.cmd(*args, **kw)

    def delete(self, cid: str, force: bool = False, **kw):
        return self.cmd("delete", *(["--force"] if force else []), cid, **kw)

    def exec(self, cid: str, *args, opts=(), **kw):
        """``exec [opts] ID [args]``."""
        return self.cmd("exec", *opts, cid, *args, **kw)

    def list(self, fmt: str | None = None, **kw):
        return self.cmd("list", *(["--format", fmt] if fmt else []), **kw)

    def ps(self, cid: str, fmt: str | None = None, *ps_args, **kw):
        return self.cmd("ps", *(["--format", fmt] if fmt else []), cid, *ps_args, **kw)

    # -- conveniences built on the verbs ----------------------------------------------------
    def state_json(self, cid: str) -> dict:
        res = self.state(cid)
        assert res.returncode == 0, f"{self.name} state {cid}: rc={res.returncode} {res.stderr!r}"
        return json.loads(res.stdout)

    def status(self, cid: str) -> str | None:
        """The container's status, or None when the runtime does not know it."""
        res = self.state(cid)
        if res.returncode != 0:
            return None
        return json.loads(res.stdout).get("status")

    def wait_status(self, cid: str, want: str, timeout: float = 10) -> str | None:
        """Poll ``state`` until the status is ``want`` (or timeout); returns the last status."""
        deadline = time.monotonic() + timeout
        status = self.status(cid)
        while status != want and time.monotonic() < deadline:
            time.sleep(0.05)
            status = self.status(cid)
        return status

    def ids(self) -> list[str]:
        """Container ids the runtime lists, plus directories in the root (a fallback
        when ``list`` itself is broken)."""
        found: list[str] = []
        try:
            res = self.list("json", timeout=10)
            if res.returncode == 0 and res.stdout.strip() not in ("", "null"):
                found = [c["id"] for c in json.loads(res.stdout)]
        except (ValueError, KeyError, TypeError, subprocess.TimeoutExpired):
            pass
        root = Path(self.root)
        if root.is_dir():
            for entry in root.iterdir():
                if entry.is_dir() and not entry.name.startswith(".") and entry.name not in found:
                    found.append(entry.name)
        return found

    def force_cleanup(self) -> list[str]:
        """Force-delete every container in this root; kill what the runtime could not.
        Returns the ids that needed a fallback (for diagnostics)."""
        stubborn = []
        for cid in self.ids():
            pid = _pid_of(self, cid)
            try:
                res = self.delete(cid, force=True, timeout=10)
                ok = res.returncode == 0
            except subprocess.TimeoutExpired:
                ok = False
            if not ok or (pid and _alive(pid)):
                stubborn.append(cid)
                if pid:
                    kill_pid(pid)
                try:
                    self.delete(cid, force=True, timeout=10)
                except subprocess.TimeoutExpired:
                    pass
                remove_cgroups_named(cid)
        return stubborn


def _pid_of(rt: Runtime, cid: str) -> int | None:
    try:
        res = rt.state(cid, timeout=10)
        if res.returncode != 0:
            return None
        return int(json.loads(res.stdout).get("pid") or 0) or None
    except (ValueError, subprocess.TimeoutExpired):
        return None


def cgroups_named(cid: str) -> list[Path]:
    """Cgroup directories named after the (unique) container id, at any depth a runtime
    uses.  Another test's cgroup may vanish while we look: then look again."""
    root = Path("/sys/fs/cgroup")
    for _attempt in range(5):
        try:
            return [p for depth in ("*/*", "*/*/*", "*/*/*/*", "*/*/*/*/*") for p in root.glob(depth)
                    if cid in p.name and p.is_dir()]
        except FileNotFoundError:
            continue
    raise AssertionError("the cgroup tree kept changing under the scan")


def processes_mentioning(text: str) -> list[int]:
    """Pids (not ours) whose command line contains text: a container id, a marker."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def remove_cgroups_named(cid: str) -> None:
    """Last resort when the runtime could not delete: kill what is left in cgroups named
    after this (unique) container id and remove them, deepest first."""
    dirs = cgroups_named(cid)
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        try:
            for pid in (d / "cgroup.procs").read_text().split():
                kill_pid(int(pid))
        except OSError:
            pass
    time.sleep(0.1)
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_pid(pid: int) -> None:
    """SIGKILL one process (never a group, never pid <= 1)."""
    if not isinstance(pid, int) or pid <= 1:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def process_alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    return _alive(pid)


def wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def wait_for(predicate, timeout: float = 10, interval: float = 0.05):
    """Poll predicate() until it returns a truthy value or timeout; returns the last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def stderr_lines(res: subprocess.CompletedProcess) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.strip()]


# -- console socket ------------------------------------------------------------------------
class ConsoleSocket:
    """A unix socket that receives the pty master over SCM_RIGHTS, as conmon does."""

    def __init__(self, directory: Path):
        self.path = str(Path(directory) / "console.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.sock.settimeout(DEFAULT_TIMEOUT)
        self.master: int | None = None

    def receive(self) -> int:
        """Accept one connection and return the fd it carries."""
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(DEFAULT_TIMEOUT)
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
        assert fds, "no file descriptor received on the console socket"
        for extra in fds[1:]:
            os.close(extra)
        self.master = fds[0]
        return self.master

    def read_until_eof(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Read the master until the slave side closes (EIO) or timeout."""
        import select
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:  # EIO: every slave fd closed
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks).decode(errors="replace")

    def close(self) -> None:
        if self.master is not None:
            os.close(self.master)
            self.master = None
        self.sock.close()


# -- fixtures ----------------------------------------------------------------------------
def _runtime_fixture(path: str, tmp_path_factory):
    root = tmp_path_factory.mktemp("ocistate")
    rt = Runtime(path, root)
    try:
        yield rt
    finally:
        rt.force_cleanup()
        shutil.rmtree(root, ignore_errors=True)
    # Bad input must give one line, never a traceback: checked for every command run.
    if rt.tracebacks and pytest is not None:
        pytest.fail(f"{rt.name} printed a traceback:\n" + "\n".join(rt.tracebacks), pytrace=False)


def _oci(runtime, tmp_path_factory):
    """The runtime under test with a private --root; containers force-deleted at teardown."""
    yield from _runtime_fixture(runtime, tmp_path_factory)


def _ref_oci(runtime, tmp_path_factory):
    """runc as the reference for differential tests, or None when the runtime under test
    already is runc (or runc is missing)."""
    runc = shutil.which("runc")
    if not runc or os.path.realpath(runc) == os.path.realpath(runtime):
        yield None
        return
    yield from _runtime_fixture(runc, tmp_path_factory)


def runtimes(oci: Runtime, ref_oci: Runtime | None) -> list[Runtime]:
    """The runtime under test first, then runc when it is a different binary."""
    return [oci] + ([ref_oci] if ref_oci is not None else [])


if pytest is not None:
    oci = pytest.fixture(_oci, name="oci")
    ref_oci = pytest.fixture(_ref_oci, name="ref_oci")


# -- mount namespace inspection --------------------------------------------------------------
def count_mounts_in_namespace(pid: int) -> int | None:
    """Every mount in pid's mount namespace, also those hidden beneath its root (the
    listmount(2) syscall with NS_GET_MNTNS_ID, Linux >= 6.10); None when unsupported.
    /proc/PID/mountinfo only shows mounts reachable from the process root, so comparing
    the two tells whether the old root was detached (pivot_root) or is still there."""
    import ctypes
    import errno
    import fcntl
    import struct
    ns_get_mntns_id = 0x8008B705          # _IOR(0xb7, 5, __u64)
    sys_listmount, lsmt_root = 458, 0xFFFFFFFFFFFFFFFF
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, ns_get_mntns_id, buf)
    except OSError:
        return None
    finally:
        os.close(fd)
    ns_id = struct.unpack("Q", buf)[0]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    total, last = 0, 0
    while True:
        req = struct.pack("IIQQQ", 32, 0, lsmt_root, last, ns_id)  # struct mnt_id_req, VER1
        out = (ctypes.c_uint64 * 256)()
        n = libc.syscall(ctypes.c_long(sys_listmount), ctypes.c_char_p(req), out,
                         ctypes.c_size_t(256), ctypes.c_uint(0))
        if n < 0:
            if ctypes.get_errno() in (errno.ENOSYS, errno.EINVAL):
                return None
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        total += n
        if n < 256:
            return total
        last = out[n - 1]


def count_visible_mounts(pid: int) -> int:
    with open(f"/proc/{pid}/mountinfo") as f:
        return sum(1 for _ in f)
