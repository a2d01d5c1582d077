"""The Python API `hutch.run([...], rootfs=..., hostname=..., ...)`: same power as the
CLI, returning a subprocess.CompletedProcess-like result.  Every claim is checked
against the kernel (namespace inodes, /proc inside vs outside), not hutch's own view."""

from __future__ import annotations

import os
import socket

import pytest

from helpers.run import DOCKER_DEFAULT_MASK, host_ns, parse_keyed, restore_host_names  # noqa: F401 (fixture)

pytestmark = [pytest.mark.priv, pytest.mark.usefixtures("restore_host_names")]


@pytest.fixture
def hutch_api():
    import hutch
    if not hasattr(hutch, "run"):
        pytest.fail("hutch.run is missing from the package's API")
    return hutch


def test_result_has_returncode_stdout_stderr(hutch_api, rootfs):
    result = hutch_api.run(["sh", "-c", "echo out; echo err >&2; exit 3"], rootfs=str(rootfs),
                           capture_output=True)
    assert result.returncode == 3
    assert result.stdout == b"out\n"
    assert result.stderr == b"err\n"


def test_args_are_kept_on_the_result(hutch_api, rootfs):
    result = hutch_api.run(["true"], rootfs=str(rootfs))
    assert list(result.args) == ["true"]
    assert result.returncode == 0


def test_without_capture_output_goes_to_our_stdout(hutch_api, rootfs, capfd):
    result = hutch_api.run(["echo", "passthrough"], rootfs=str(rootfs))
    assert result.returncode == 0
    assert result.stdout is None
    assert "passthrough" in capfd.readouterr().out


def test_input_is_fed_to_stdin(hutch_api, rootfs):
    result = hutch_api.run(["cat"], rootfs=str(rootfs), input=b"from python\n", capture_output=True)
    assert result.stdout == b"from python\n"


def test_hostname_and_namespaces(hutch_api, rootfs):
    script = ("echo name=$(hostname); echo self=$$; "
              + "; ".join(f"echo {k}=$(readlink /proc/self/ns/{k})" for k in ("uts", "pid", "net", "mnt", "ipc")))
    result = hutch_api.run(["sh", "-c", script], rootfs=str(rootfs), hostname="api-box", init=False,
                           capture_output=True)
    out = parse_keyed(result.stdout.decode())
    assert out["name"] == "api-box" != socket.gethostname()
    assert out["self"] == "1"
    for kind in ("uts", "pid", "net", "mnt", "ipc"):
        assert out[kind] != host_ns(kind), kind


def test_default_root_without_rootfs(hutch_api):
    result = hutch_api.run(["python3", "-c", "print(6 * 7)"], capture_output=True)
    assert result.stdout == b"42\n"


def test_default_caps_and_options(hutch_api, rootfs):
    result = hutch_api.run(["sh", "-c", "grep CapEff /proc/self/status; echo foo=$FOO; pwd; id -u"],
                           rootfs=str(rootfs), env=["FOO=bar"], workdir="/tmp", user="1000",
                           cap_drop=["ALL"], capture_output=True)
    lines = result.stdout.decode().splitlines()
    assert int(lines[0].split()[1], 16) == 0
    assert lines[1:] == ["foo=bar", "/tmp", "1000"]


def test_default_caps_through_the_api(hutch_api, rootfs):
    result = hutch_api.run(["grep", "CapEff", "/proc/self/status"], rootfs=str(rootfs),
                           capture_output=True)
    assert int(result.stdout.split()[1], 16) == DOCKER_DEFAULT_MASK


def test_check_raises_on_failure(hutch_api, rootfs):
    import subprocess
    with pytest.raises(subprocess.CalledProcessError) as info:
        hutch_api.run(["sh", "-c", "exit 4"], rootfs=str(rootfs), check=True)
    assert info.value.returncode == 4


def test_killed_by_signal(hutch_api, rootfs):
    result = hutch_api.run(["sh", "-c", "kill -9 $$"], rootfs=str(rootfs))
    # as the CLI (and docker): 128+N for a container killed by signal N
    assert result.returncode == 137


def test_bad_input_raises_hutch_error(hutch_api, tmp_path):
    from hutch.errors import HutchError
    with pytest.raises(HutchError) as info:
        hutch_api.run(["true"], rootfs=str(tmp_path / "missing"))
    assert "missing" in str(info.value)


def test_not_found_command(hutch_api, rootfs):
    from hutch.errors import HutchError
    try:
        result = hutch_api.run(["/no/such/cmd"], rootfs=str(rootfs), capture_output=True)
    except HutchError as err:
        assert err.exit_code == 127
    else:
        assert result.returncode == 127


def test_no_process_left_after_run(hutch_api, rootfs):
    before = set(os.listdir("/proc"))
    hutch_api.run(["sh", "-c", "sleep 1000 & exit 0"], rootfs=str(rootfs))
    new = {p for p in set(os.listdir("/proc")) - before if p.isdigit()}
    alive = []
    for pid in new:
        try:
            if "sleep" in open(f"/proc/{pid}/cmdline").read():
                alive.append(pid)
        except OSError:
            pass
    assert not alive, f"container processes survived run(): {alive}"
