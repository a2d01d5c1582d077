"""Differential: the invalid configs of tests/unit/test_validate_cases.py against `runc create`.

For each case hutch's validate_config must refuse the config (exact JSON path, exit
code 1) and runc must refuse it too (non-zero exit), except for the cases marked
``runc_accepts``: there the test asserts runc really creates the container, so a
change in runc shows up here instead of silently changing expectations.

The last test drives the runtime under test (`hutch`, or HUTCH_TEST_RUNTIME=runc)
through `create` with the same bundles: exit 1, one line naming the path, and no
container left behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))

from helpers.bundle import make_config  # noqa: E402
from test_validate_cases import CASES  # noqa: E402

from hutch.errors import ConfigError  # noqa: E402
from hutch.oci.validate import load_config, validate_config  # noqa: E402

pytestmark = [pytest.mark.priv, pytest.mark.peer]

RUNC_CASES = [case for case in CASES if not case.host_risk]


@pytest.fixture(scope="module")
def private_rootfs(busybox_rootfs, tmp_path_factory) -> Path:
    """A writable copy: runc creates mount points (e.g. /mnt) inside the rootfs."""
    dest = tmp_path_factory.mktemp("validate-rootfs") / "rootfs"
    shutil.copytree(busybox_rootfs, dest, symlinks=True)
    return dest


@pytest.fixture(scope="module")
def state_root(tmp_path_factory):
    """A private --root for the runtimes; anything left in it is deleted at the end."""
    root = tmp_path_factory.mktemp("validate-state")
    yield root
    for runtime in {shutil.which("runc"), os.environ.get("HUTCH_TEST_RUNTIME")} - {None}:
        for cid in listed(runtime, root):
            subprocess.run([runtime, "--root", str(root), "delete", "-f", cid], capture_output=True)


def write_bundle(parent: Path, name: str, rootfs: Path, mutate=None, text: str | None = None) -> Path:
    bundle = parent / name
    bundle.mkdir(parents=True, exist_ok=True)
    config = make_config(["true"])
    config["root"]["path"] = str(rootfs)
    if mutate:
        mutate(config)
    (bundle / "config.json").write_text(text if text is not None else json.dumps(config))
    return bundle


def listed(runtime: str, root: Path) -> list[str]:
    listing = subprocess.run([runtime, "--root", str(root), "list", "-q"], capture_output=True,
                             text=True, timeout=60)
    return listing.stdout.split()


def create(runtime: str, root: Path, bundle: Path, cid: str, before_delete=None):
    """`RUNTIME --root ROOT create --bundle B ID`, then delete whatever it created.

    The container's stdio must not be our pipes (a created container keeps them open),
    so stdout goes to /dev/null and stderr to a file read after the runtime exits.
    `before_delete(result)` runs before the cleanup, to look at what was left."""
    err_path = bundle / "stderr.txt"
    try:
        with open(err_path, "w") as err:
            result = subprocess.run([runtime, "--root", str(root), "create", "--bundle", str(bundle),
                                     cid], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err, timeout=60)
        result.stderr = err_path.read_text()
        if before_delete:
            before_delete(result)
    finally:
        subprocess.run([runtime, "--root", str(root), "delete", "-f", cid], capture_output=True,
                       timeout=60)
    return result


def container_id(name: str) -> str:
    return "hutch-val-" + name.replace("_", "-")


def test_runc_and_hutch_accept_the_valid_baseline(runc_bin, private_rootfs, state_root, tmp_path):
    bundle = write_bundle(tmp_path, "valid", private_rootfs)
    validate_config(load_config(str(bundle)), str(bundle))
    result = create(runc_bin, state_root, bundle, container_id("baseline"))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("case", RUNC_CASES, ids=lambda c: c.name)
def test_runc_agrees_on_invalid_config(case, runc_bin, private_rootfs, state_root, tmp_path):
    bundle = write_bundle(tmp_path, case.name, private_rootfs, case.mutate)
    with pytest.raises(ConfigError) as info:
        validate_config(load_config(str(bundle)), str(bundle))
    assert info.value.where == case.where
    assert info.value.exit_code == 1

    result = create(runc_bin, state_root, bundle, container_id(case.name))
    if case.runc_accepts:
        # Known divergence, hutch follows the spec: prove runc still behaves this way.
        assert result.returncode == 0, f"runc now rejects {case.name}: update runc_accepts\n{result.stderr}"
    else:
        assert result.returncode != 0, f"runc accepted {case.name}"


def test_runc_agrees_on_malformed_json(runc_bin, private_rootfs, state_root, tmp_path):
    bundle = write_bundle(tmp_path, "malformed", private_rootfs, text='{"ociVersion": "1.0.2",}')
    with pytest.raises(ConfigError) as info:
        load_config(str(bundle))
    assert "line 1, column 24" in info.value.message
    assert create(runc_bin, state_root, bundle, container_id("malformed")).returncode != 0


def _hutch_create_available() -> bool:
    return importlib.util.find_spec("hutch.cli.oci") is not None


@pytest.mark.parametrize("case", RUNC_CASES, ids=lambda c: c.name)
def test_runtime_create_refuses_invalid_config(case, runtime, hutch_bin, private_rootfs, state_root,
                                               tmp_path):
    """The runtime under test, driven as an engine would: exit 1, one line, nothing created."""
    is_hutch = runtime == hutch_bin
    if is_hutch and not _hutch_create_available():
        pytest.skip("hutch create is not wired yet (hutch.cli.oci is missing)")
    if not is_hutch and case.runc_accepts:
        pytest.skip(f"runc accepts this: {case.runc_accepts}")
    bundle = write_bundle(tmp_path, case.name, private_rootfs, case.mutate)
    cid = container_id(case.name)

    def nothing_created(result):
        assert cid not in listed(runtime, state_root)

    result = create(runtime, state_root, bundle, cid, before_delete=nothing_created)
    assert result.returncode == 1, result.stderr
    if is_hutch:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and case.where in lines[0], result.stderr
