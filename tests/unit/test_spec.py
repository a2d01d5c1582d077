"""`hutch spec`: the same bytes `runc spec` writes, and runc's refusal to overwrite."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from hutch.errors import ConfigError
from hutch.oci.spec import default_spec, parse_spec_args, render_spec, spec_command


@pytest.fixture(scope="module")
def runc_path() -> str:
    path = shutil.which("runc") or ("/usr/sbin/runc" if os.path.exists("/usr/sbin/runc") else None)
    if not path:
        pytest.skip("runc is not installed")
    return path


def runc_spec(runc_path: str, directory, *args) -> subprocess.CompletedProcess:
    return subprocess.run([runc_path, "spec", *args], cwd=directory, capture_output=True,
                          text=True, timeout=30)


@pytest.mark.parametrize("rootless", [False, True])
def test_default_spec_matches_runc_byte_for_byte(runc_path, tmp_path, rootless):
    result = runc_spec(runc_path, tmp_path, *(["--rootless"] if rootless else []))
    assert result.returncode == 0, result.stderr
    expected = (tmp_path / "config.json").read_text()
    assert render_spec(default_spec(rootless)) == expected
    # And the dict itself, in runc's key order (json.loads keeps document order).
    assert list(json.loads(expected)) == list(default_spec(rootless))


@pytest.mark.parametrize("argv", [[], ["--rootless"]])
def test_spec_command_writes_what_runc_writes(runc_path, tmp_path, argv):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    assert spec_command(["--bundle", str(ours), *argv]) == 0
    assert runc_spec(runc_path, theirs, *argv).returncode == 0
    assert (ours / "config.json").read_bytes() == (theirs / "config.json").read_bytes()
    assert (os.stat(ours / "config.json").st_mode & 0o777
            == os.stat(theirs / "config.json").st_mode & 0o777)


def test_spec_defaults_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert spec_command([]) == 0
    assert json.loads((tmp_path / "config.json").read_text())["process"]["terminal"] is True


def test_existing_config_is_never_overwritten_like_runc(runc_path, tmp_path):
    (tmp_path / "config.json").write_text("mine")
    with pytest.raises(ConfigError) as info:
        spec_command(["-b", str(tmp_path)])
    assert info.value.exit_code == 1
    assert (tmp_path / "config.json").read_text() == "mine"
    runc = runc_spec(runc_path, tmp_path)
    assert runc.returncode == info.value.exit_code
    assert info.value.message in runc.stderr       # "File config.json exists. Remove it first"
    assert (tmp_path / "config.json").read_text() == "mine"


def test_missing_bundle_directory_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        spec_command(["--bundle", str(tmp_path / "absent")])
    assert info.value.where == str(tmp_path / "absent")
    assert info.value.exit_code == 1


@pytest.mark.parametrize("argv, where", [
    (["extra"], "spec"),
    (["--bogus"], "--bogus"),
    (["--bundle"], "--bundle"),
    (["--rootless=maybe"], "--rootless"),
])
def test_bad_usage_is_an_error_as_in_runc(runc_path, tmp_path, argv, where):
    with pytest.raises(ConfigError) as info:
        spec_command(argv)
    assert info.value.where == where
    assert info.value.exit_code == 1
    assert runc_spec(runc_path, tmp_path, *argv).returncode == 1
    assert not (tmp_path / "config.json").exists()


@pytest.mark.parametrize("argv, expected", [
    (["--bundle=/b", "--rootless"], ("/b", True)),
    (["-b", "/b", "--rootless=false"], ("/b", False)),
    (["-bundle", "/b"], ("/b", False)),
    (["--rootless=true"], (".", True)),
    (["--help"], None),
])
def test_parse_spec_args(argv, expected):
    assert parse_spec_args(argv) == expected


def test_help_prints_usage(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert spec_command(["-h"]) == 0
    assert "--rootless" in capsys.readouterr().out
    assert not (tmp_path / "config.json").exists()
