"""What bench/net/start.py and bench/net/throughput.py share: the peers' setup (a private
podman on runc, hutch with a private --root), a pidfd-timed command runner, peak RSS."""

from __future__ import annotations

import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
    # the test helpers import hutch itself: run in the project's venv
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), sys.argv[0], *sys.argv[1:]])
sys.path.insert(0, str(REPO / "tests"))

from helpers.engines import Podman  # noqa: E402
from helpers.netpeers import hutch_networking  # noqa: E402,F401
from helpers.rootfs import build_busybox_rootfs  # noqa: E402

TIME = "/usr/bin/time"
HUTCH = str(REPO / ".venv/bin/hutch")


def require_root(name: str) -> None:
    if os.geteuid() != 0:
        sys.exit(f"{name}: needs root")


def run_timed(argv: list[str], timeout: float = 60, env: dict | None = None) -> float:
    """Seconds argv took, waiting on a pidfd (Popen.wait(timeout)'s doubling sleeps would
    round every time up to 8/16/32/64 ms).  Raises RuntimeError on a non-zero exit."""
    import time
    with tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, env=env)
        fd = os.pidfd_open(proc.pid)
        try:
            if not select.select([fd], [], [], timeout)[0]:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"timed out after {timeout}s: {' '.join(argv)}")
        finally:
            os.close(fd)
        took = time.perf_counter() - began
        if proc.wait() != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv[-8:])}: exit {proc.returncode}: "
                               f"{err.read().decode(errors='replace').strip()[-1500:]}")
    return took


def peak_rss_kib(argv: list[str], env: dict | None = None) -> int | None:
    """Peak RSS of argv (its largest process, as /usr/bin/time -v reports it)."""
    if not os.path.exists(TIME):
        return None
    res = subprocess.run([TIME, "-v", *argv], capture_output=True, text=True, timeout=60,
                         env=env)
    for line in res.stderr.splitlines():
        if "Maximum resident set size" in line:
            return int(line.rsplit(":", 1)[1])
    return None


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


@contextmanager
def workdir(prefix: str):
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def busybox(work: Path) -> Path:
    return build_busybox_rootfs(work / "rootfs")


@contextmanager
def private_podman(work: Path, rootfs: Path):
    """podman with private storage/run/network dirs driving runc (its default runtime on
    Debian; crun refuses this machine's hybrid cgroups), the busybox image imported.
    Everything it made is removed on exit (containers, networks, netavark's leftovers)."""
    if not (shutil.which("podman") and shutil.which("runc")):
        raise RuntimeError("podman or runc not installed")
    engine = Podman(base=work / "podman", runtime=shutil.which("runc"))
    try:
        engine.setup(rootfs)
        yield engine
    finally:
        engine.cleanup()


class Hutch:
    """hutch with a private state root (its networks live under ROOT/.net)."""

    def __init__(self, binary: str, root: Path):
        self.binary, self.root = binary, root

    def argv(self, *args) -> list[str]:
        return [self.binary, "--root", str(self.root), *map(str, args)]

    def __call__(self, *args, check: bool = True, timeout: float = 60):
        res = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise RuntimeError(f"hutch {' '.join(map(str, args))}: exit {res.returncode}: "
                               f"{res.stderr.strip()[-1500:]}")
        return res


@contextmanager
def hutch_network(hutch: Hutch, name: str, cidr: str):
    """A hutch network with a bridge of its own name (hutch's pick, the first free hutchN,
    could be another session's whose bridge is not up yet)."""
    hutch("network", "create", name, "--subnet", cidr, "--bridge", name)
    try:
        yield name
    finally:
        hutch("network", "rm", name, check=False)
