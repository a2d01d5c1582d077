"""`hutch run` tells runc's OCI `run [flags] ID` apart from `hutch run [OPTIONS] -- CMD`."""

from __future__ import annotations

import pytest

from hutch.cli.run import is_oci_run


@pytest.mark.parametrize("argv", [
    ["--preserve-fds", "0", "ctr"], ["--preserve-fds=0", "ctr"], ["-preserve-fds", "2", "ctr"],
    ["--bundle", "/b", "ctr"], ["-b", "/b", "ctr"], ["--bundle=/b", "ctr"],
    ["--pid-file", "/p", "ctr"], ["--pid-file=/p", "ctr"],
    ["--console-socket", "/s", "ctr"], ["--console-socket=/s", "ctr"],
    ["--detach", "ctr"], ["-d", "ctr"], ["--no-pivot", "ctr"], ["--keep", "ctr"],
    ["--no-subreaper", "ctr"], ["--no-new-keyring", "ctr"],
])
def test_oci_run_flags_mean_oci_run(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # no config.json here: the flags alone decide
    assert is_oci_run(argv)


@pytest.mark.parametrize("argv", [
    ["--", "sh"], ["--rootfs", "/r", "--", "sh", "-c", "x"], ["sh"], ["--rootfs", "/r", "sh"],
    ["-e", "A=B", "sh"], ["--net", "host", "true"],
])
def test_hutch_run_without_config_is_hutch_run(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not is_oci_run(argv)


def test_one_positional_with_config_json_is_oci_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert is_oci_run(["ctr"])
    assert is_oci_run(["-e", "A=B", "ctr"]) is True     # -e's value is not a positional
    assert not is_oci_run(["sh", "-c", "true"])
    assert not is_oci_run(["--", "ctr"])
