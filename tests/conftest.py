"""Shared fixtures: a busybox root filesystem, OCI bundles, the runtime under test,
and a leak scan that fails the session when tests leave things on the machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import leaks  # noqa: E402
from helpers.bundle import make_bundle  # noqa: E402
from helpers.rootfs import build_busybox_rootfs  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Skip root-only directories with a reason when not root."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (priv/ and integration/ use the real kernel)")
    for item in items:
        if "/priv/" in str(item.fspath) or "/integration/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory) -> Path:
    """A read-only-safe busybox tree; tests must not write into it (copy it first)."""
    return build_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture
def rootfs(busybox_rootfs, tmp_path) -> Path:
    """A private, writable copy of the busybox rootfs for one test."""
    dest = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, dest, symlinks=True)
    return dest


@pytest.fixture
def bundle(rootfs, tmp_path):
    """Factory: bundle(args, **config_overrides) -> bundle directory with config.json."""
    def factory(args, **overrides):
        return make_bundle(tmp_path, rootfs, args, **overrides)
    return factory


@pytest.fixture(scope="session")
def hutch_bin() -> str:
    exe = Path(sys.executable).parent / "hutch"
    return str(exe) if exe.exists() else shutil.which("hutch")


@pytest.fixture(scope="session")
def runtime(hutch_bin) -> str:
    """The OCI runtime the integration tests drive: hutch, or HUTCH_TEST_RUNTIME (e.g. runc)
    to prove that a test checks real behaviour."""
    return os.environ.get("HUTCH_TEST_RUNTIME") or hutch_bin


@pytest.fixture(scope="session")
def runc_bin() -> str:
    path = shutil.which("runc")
    if not path:
        pytest.skip("runc is not installed")
    return path


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 60)
    return subprocess.run(cmd, **kw)


_before: dict | None = None


def pytest_sessionstart(session):
    global _before
    _before = leaks.snapshot() if os.geteuid() == 0 else None


def pytest_sessionfinish(session, exitstatus):
    if _before is None or os.environ.get("HUTCH_SKIP_LEAK_SCAN"):
        return
    found = leaks.new_since(_before, leaks.snapshot())
    if found:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "LEAK SCAN: tests left these behind:\n" + "\n".join(f"  {k}: {v}" for k, v in found.items())
        if reporter:
            reporter.write_line(text, red=True)
        else:
            print(text, file=sys.stderr)
        session.exitstatus = 1
