"""Engine fixtures for the end-to-end tests: a private podman and a private containerd,
both driving the runtime under test (`runtime` from the root conftest: hutch, or
HUTCH_TEST_RUNTIME=/usr/sbin/runc).  Session scope: the image import and the daemon start
are paid once; each test removes its own containers (function-scoped fixtures below)."""

from __future__ import annotations

import os
import shutil

import pytest

from helpers.engines import Containerd, Podman


def _require(*binaries: str) -> None:
    missing = [b for b in binaries if not shutil.which(b)]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (apt-get install podman containerd)")


def _require_runtime(runtime: str | None) -> None:
    if not runtime or not os.access(runtime, os.X_OK):
        pytest.skip(f"runtime under test not found: {runtime!r}")


@pytest.fixture(scope="session")
def podman_engine(tmp_path_factory, busybox_rootfs, runtime):
    """podman + conmon with private storage, runroot, tmpdir and network config."""
    _require("podman", "conmon", "nft")
    _require_runtime(runtime)
    engine = Podman(base=tmp_path_factory.mktemp("podman"), runtime=runtime)
    try:
        engine.setup(busybox_rootfs)
        yield engine
    finally:
        engine.cleanup()


@pytest.fixture
def podman(podman_engine):
    """The session's podman; every container a test made is force-removed afterwards."""
    yield podman_engine
    podman_engine.remove_containers()


@pytest.fixture(scope="session")
def containerd_engine(tmp_path_factory, busybox_rootfs, runtime):
    """containerd on a private socket/root/state, CRI disabled, image imported."""
    _require("containerd", "ctr", "containerd-shim-runc-v2")
    _require_runtime(runtime)
    engine = Containerd(base=tmp_path_factory.mktemp("containerd"), runtime=runtime)
    try:
        engine.start(busybox_rootfs)
        yield engine
    finally:
        engine.stop()


@pytest.fixture
def containerd(containerd_engine):
    """The session's containerd; every task and container a test made is removed after."""
    yield containerd_engine
    containerd_engine.remove_all()


@pytest.fixture
def net(tmp_path):
    """hutch with a private --root for the networking tests (helpers/net.py); afterwards
    every container and network it made is removed and no link of that root is left."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from helpers.net import Net
    n = Net(str(tmp_path / "root"))
    try:
        yield n
    finally:
        n.cleanup()
    assert not n.links(), "links left behind"
