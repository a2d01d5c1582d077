"""config.json validation: every error path names its exact JSON path; valid configs pass."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))

from helpers.bundle import make_config  # noqa: E402
from test_validate_cases import CASES  # noqa: E402

from hutch.errors import ConfigError  # noqa: E402
from hutch.oci.spec import default_spec  # noqa: E402
from hutch.oci.validate import load_config, rootfs_path, validate_config  # noqa: E402


@pytest.fixture
def bundle_dir(tmp_path) -> Path:
    """A bundle with an empty rootfs/ directory (validation only stats it)."""
    (tmp_path / "rootfs").mkdir()
    return tmp_path


def valid_config(**overrides) -> dict:
    config = make_config(["true"], **overrides)
    config["root"]["path"] = "rootfs"
    return config


def expect_error(config: dict, bundle_dir: Path, where: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        validate_config(config, str(bundle_dir))
    assert info.value.where == where, info.value.message
    assert info.value.exit_code == 1
    assert "\n" not in str(info.value)
    return info.value


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_invalid_config_names_the_json_path(case, bundle_dir):
    config = valid_config()
    case.mutate(config)
    expect_error(config, bundle_dir, case.where)


# --- valid documents -------------------------------------------------------------------------

def test_runc_style_config_is_valid_and_gets_defaults(bundle_dir):
    config = valid_config()
    del config["process"]["terminal"]
    del config["root"]["readonly"]
    result = validate_config(config, str(bundle_dir))
    assert result is config
    assert config["process"]["terminal"] is False
    assert config["root"]["readonly"] is False


@pytest.mark.parametrize("rootless", [False, True])
def test_default_spec_is_valid(bundle_dir, rootless):
    validate_config(default_spec(rootless), str(bundle_dir))


@pytest.mark.parametrize("version", ["1.0.0", "1.0.2-dev", "1.2.0", "1.3.0-rc.1+build.5", "1.0"])
def test_any_1x_oci_version_is_accepted(bundle_dir, version):
    validate_config(valid_config(ociVersion=version), str(bundle_dir))


def test_null_values_count_as_absent(bundle_dir):
    config = valid_config(hostname=None)
    config["process"]["rlimits"] = None
    config["process"]["capabilities"]["inheritable"] = None
    config["linux"]["seccomp"] = None
    config["annotations"] = None
    validate_config(config, str(bundle_dir))


def test_unknown_properties_are_ignored(bundle_dir):
    config = valid_config()
    config["vendorThing"] = {"x": [1, 2]}
    config["process"]["futureField"] = 1
    config["linux"]["netDevices"] = {"eth0": {}}
    validate_config(config, str(bundle_dir))


def test_full_linux_config_is_valid(bundle_dir):
    """Every field in use with good values, including the runtime-spec 1.2 additions."""
    config = valid_config()
    process = config["process"]
    process.update(
        terminal=True, consoleSize={"height": 25, "width": 80},
        user={"uid": 1000, "gid": 1000, "umask": 0o22, "additionalGids": [5, 6]},
        oomScoreAdj=-1000, apparmorProfile="p", selinuxLabel="l",
        ioPriority={"class": "IOPRIO_CLASS_IDLE", "priority": 7},
        scheduler={"policy": "SCHED_DEADLINE", "runtime": 10_000, "deadline": 20_000,
                   "period": 30_000, "flags": ["SCHED_FLAG_RESET_ON_FORK"]},
        execCPUAffinity={"initial": "0-1, 3", "final": "0"},
    )
    process["capabilities"]["inheritable"] = ["CAP_CHECKPOINT_RESTORE"]
    process["rlimits"].append({"type": "RLIMIT_CORE", "soft": 0, "hard": 2**64 - 1})
    config["domainname"] = "example.org"
    config["mounts"].append({"destination": "/data", "type": "none", "source": "data",
                             "options": ["rbind", "rro", "idmap", "mode=700"],
                             "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                             "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]})
    config["hooks"] = {name: [{"path": "/bin/true", "args": ["true"], "env": ["A=1"], "timeout": 5}]
                       for name in ("prestart", "createRuntime", "createContainer",
                                    "startContainer", "poststart", "poststop")}
    config["annotations"] = {"com.example.key": "", "x": "y"}
    linux = config["linux"]
    linux["namespaces"] += [{"type": "user"}, {"type": "time"}]
    linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 1000},
                            {"containerID": 1000, "hostID": 1000, "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["devices"] = [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229,
                         "fileMode": 0o666, "uid": 0, "gid": 0},
                        {"type": "p", "path": "/dev/fifo"}]
    linux["sysctl"] = {"net.ipv4.ip_forward": "1"}
    linux["cgroupsPath"] = "/hutch/test"
    linux["resources"].update(
        memory={"limit": 1 << 30, "swap": -1, "disableOOMKiller": False},
        cpu={"shares": 1024, "quota": -1, "cpus": "0-1"}, pids={"limit": 100},
        blockIO={"weight": 100, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1}]},
        hugepageLimits=[{"pageSize": "2MB", "limit": 0}], unified={"memory.high": "max"},
        network={"classID": 1, "priorities": [{"name": "eth0", "priority": 1}]},
        rdma={"mlx5_0": {"hcaHandles": 3}},
    )
    linux.update(rootfsPropagation="rslave", mountLabel="l", personality={"domain": "LINUX32"},
                 timeOffsets={"monotonic": {"secs": -5, "nanosecs": 0}, "boottime": {"secs": 1}})
    linux["seccomp"] = {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"], "listenerPath": "/run/listener.sock",
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["chmod"], "action": "SCMP_ACT_TRACE", "errnoRet": 1,
             "args": [{"index": 5, "value": 1, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]},
        ],
    }
    before = copy.deepcopy(config)
    assert validate_config(config, str(bundle_dir)) == before


def test_joined_user_namespace_needs_no_mappings(bundle_dir):
    config = valid_config()
    config["linux"]["namespaces"].append({"type": "user", "path": "/proc/1/ns/user"})
    validate_config(config, str(bundle_dir))


def test_empty_hostname_needs_no_uts_namespace(bundle_dir):
    config = valid_config(hostname="")
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "uts"]
    validate_config(config, str(bundle_dir))


def test_joined_time_namespace_cannot_take_offsets(bundle_dir):
    config = valid_config()
    config["linux"]["namespaces"].append({"type": "time", "path": "/proc/1/ns/time"})
    config["linux"]["timeOffsets"] = {"monotonic": {"secs": 1}}
    expect_error(config, bundle_dir, "linux.timeOffsets")


def test_root_path_is_relative_to_the_bundle_not_the_cwd(bundle_dir, tmp_path_factory, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(elsewhere)                 # no rootfs/ here
    config = valid_config()
    validate_config(config, str(bundle_dir))
    assert rootfs_path(config, str(bundle_dir)) == str(bundle_dir / "rootfs")
    (elsewhere / "rootfs").mkdir()
    expect_error(valid_config(), elsewhere / "nobundle", "root.path")


def test_root_path_error_names_the_resolved_path(bundle_dir):
    config = valid_config()
    config["root"]["path"] = "missing"
    err = expect_error(config, bundle_dir, "root.path")
    assert str(bundle_dir / "missing") in err.message


def test_top_level_must_be_an_object(bundle_dir):
    with pytest.raises(ConfigError) as info:
        validate_config([], str(bundle_dir))
    assert info.value.where == "config.json"


# --- load_config -------------------------------------------------------------------------------

def write(bundle_dir: Path, text) -> None:
    data = text if isinstance(text, bytes) else text.encode()
    (bundle_dir / "config.json").write_bytes(data)


def test_load_config_reads_the_document(bundle_dir):
    write(bundle_dir, json.dumps(valid_config()))
    assert load_config(str(bundle_dir)) == valid_config()


def test_malformed_json_names_file_line_and_column(bundle_dir):
    write(bundle_dir, '{\n  "ociVersion": "1.0.2"\n  "process": {}\n}')
    with pytest.raises(ConfigError) as info:
        load_config(str(bundle_dir))
    assert info.value.where == str(bundle_dir / "config.json")
    assert "line 3, column 3" in info.value.message
    assert info.value.exit_code == 1


@pytest.mark.parametrize("text, words", [
    ('{"ociVersion": NaN}', "NaN"),
    ("[1, 2]", "must hold a JSON object"),
    ("", "line 1, column 1"),
    (b'{"a": "\xff"}', "UTF-8"),
])
def test_bad_documents_are_config_errors(bundle_dir, text, words):
    write(bundle_dir, text)
    with pytest.raises(ConfigError) as info:
        load_config(str(bundle_dir))
    assert words in info.value.message
    assert info.value.where == str(bundle_dir / "config.json")


def test_unreadable_config_json(bundle_dir):
    (bundle_dir / "config.json").mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(str(bundle_dir))
    assert info.value.where == str(bundle_dir / "config.json")
    assert "cannot read" in info.value.message


def test_missing_config_json(bundle_dir):
    with pytest.raises(ConfigError) as info:
        load_config(str(bundle_dir))
    assert info.value.where == str(bundle_dir / "config.json")
    assert "no such file" in info.value.message


# --- staying light on the create path -------------------------------------------------------------

def test_import_is_light():
    """json and os only: no ctypes, argparse, subprocess or capability table at import time."""
    code = "import sys, hutch.oci.validate; print('\\n'.join(sys.modules))"
    modules = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout.split())
    heavy = {"ctypes", "argparse", "subprocess", "threading", "hutch.syscall", "hutch.security.caps",
             "dataclasses", "fcntl"}
    assert not heavy & modules
