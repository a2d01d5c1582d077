"""One rlimit table (hutch.syscall.constants.RLIMITS) for validation, --ulimit and setrlimit."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from helpers.bundle import make_config  # noqa: E402

from hutch.engine.runspec import RunOptions, build_spec  # noqa: E402
from hutch.errors import ConfigError  # noqa: E402
from hutch.oci.validate import validate_config  # noqa: E402
from hutch.security import process as proc  # noqa: E402
from hutch.syscall.constants import RLIMITS  # noqa: E402

NOT_OCI = {"RLIMIT_OFILE"}   # Python's BSD alias of RLIMIT_NOFILE; no OCI name


def test_table_matches_the_resource_module():
    python = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}
    assert set(python) - NOT_OCI <= set(RLIMITS)
    for name, number in RLIMITS.items():
        assert python.get(name, number) == number, name
    assert RLIMITS["RLIMIT_LOCKS"] == 10   # Linux has it; Python's resource does not
    assert sorted(RLIMITS.values()) == list(range(16))


def _validates(name: str, bundle_dir: Path) -> bool:
    config = make_config(["true"])
    config["root"]["path"] = "rootfs"
    config["process"]["rlimits"] = [{"type": name, "soft": 1, "hard": 2}]
    try:
        validate_config(config, str(bundle_dir))
    except ConfigError as err:
        assert err.where == "process.rlimits[0].type", err
        return False
    return True


def _plans(name: str) -> bool:
    try:
        plan = proc.parse_rlimits([{"type": name, "soft": 1, "hard": 2}])
    except ConfigError as err:
        assert err.where == "process.rlimits[0].type", err
        return False
    assert plan[0].resource == RLIMITS[name]
    return True


def _ulimit(name: str) -> str | None:
    """The OCI type `hutch run --ulimit name=1:2` asks for, None when refused."""
    try:
        spec = build_spec(RunOptions(args=["x"], ulimits=[f"{name}=1:2"]), "c")
    except ConfigError as err:
        assert err.where == "--ulimit", err
        return None
    return spec["process"]["rlimits"][0]["type"]


@pytest.mark.parametrize("name", sorted(RLIMITS) + ["RLIMIT_OFILE", "RLIMIT_BOGUS"])
def test_every_user_accepts_exactly_the_table(name, tmp_path):
    (tmp_path / "rootfs").mkdir()
    known = name in RLIMITS
    assert _validates(name, tmp_path) is known
    assert _plans(name) is known
    short = name.removeprefix("RLIMIT_").lower()
    assert _ulimit(short) == (name if known else None)


def test_ulimit_names_are_lower_case():
    assert _ulimit("NOFILE") is None and _ulimit("nofile") == "RLIMIT_NOFILE"
