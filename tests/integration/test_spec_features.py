"""`hutch features` and `hutch spec` against runc: same shape, same bytes, same refusals."""

from __future__ import annotations

import json
import subprocess

import pytest

from hutch.errors import ConfigError
from hutch.oci import validate
from hutch.oci.features import features, features_command, render_features
from hutch.security.caps import CAPABILITIES

pytestmark = pytest.mark.peer


def run(cmd, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def runc_features(runc_bin) -> dict:
    result = run([runc_bin, "features"])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def key_tree(value):
    """The nested key structure of a document (dict keys only; lists and scalars are leaves)."""
    if isinstance(value, dict):
        return {key: key_tree(item) for key, item in value.items()}
    return type(value).__name__


def test_features_has_runcs_shape(runc_features):
    ours = features()
    theirs_tree, ours_tree = key_tree(runc_features), key_tree(ours)
    # annotations are free-form per runtime; every other key must match exactly.
    theirs_tree.pop("annotations")
    ours_tree.pop("annotations")
    assert ours_tree == theirs_tree
    assert all(isinstance(v, str) for v in ours["annotations"].values())


def test_features_values_describe_hutch(runc_features):
    ours = features()
    assert ours["hooks"] == runc_features["hooks"]
    assert set(runc_features["linux"]["namespaces"]) <= set(ours["linux"]["namespaces"])
    assert ours["linux"]["capabilities"] == sorted(CAPABILITIES, key=CAPABILITIES.get)
    assert ours["linux"]["apparmor"] == {"enabled": False}
    assert ours["linux"]["selinux"] == {"enabled": False}
    assert ours["linux"]["seccomp"]["operators"] == runc_features["linux"]["seccomp"]["operators"]
    assert set(runc_features["mountOptions"]) <= set(ours["mountOptions"])


def compiles(seccomp_config: dict) -> bool:
    from hutch.security.seccomp import compile_filter
    try:
        compile_filter(seccomp_config)
    except ConfigError:
        return False
    return True


def test_seccomp_features_are_what_hutch_can_compile(runc_features):
    """An action or arch is advertised exactly when hutch's filter compiler handles it."""
    ours = features()["linux"]["seccomp"]
    for action in runc_features["linux"]["seccomp"]["actions"]:
        profile = {"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["getpid"], "action": action}]}
        assert (action in ours["actions"]) == compiles(profile), action
    for arch in ours["archs"]:
        assert compiles({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch],
                         "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}]}), arch
    assert set(ours["archs"]) <= set(runc_features["linux"]["seccomp"]["archs"])


def test_features_agree_with_the_validator(tmp_path):
    """What features advertises, validate_config accepts."""
    doc = features()
    (tmp_path / "rootfs").mkdir()
    from helpers.bundle import make_config
    config = make_config(["true"], ociVersion=doc["ociVersionMax"])
    config["root"]["path"] = "rootfs"
    config["linux"]["namespaces"] = [{"type": t} for t in doc["linux"]["namespaces"]]
    config["linux"]["uidMappings"] = config["linux"]["gidMappings"] = [
        {"containerID": 0, "hostID": 100000, "size": 65536}]
    config["process"]["capabilities"]["bounding"] = doc["linux"]["capabilities"]
    config["hooks"] = {name: [{"path": "/bin/true"}] for name in doc["hooks"]}
    config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": doc["linux"]["seccomp"]["archs"],
        "listenerPath": "/run/notify.sock",
        "syscalls": [{"names": ["getpid"], "action": action,
                      "args": [{"index": 0, "value": 0, "op": op}]}
                     for action in doc["linux"]["seccomp"]["actions"]
                     for op in doc["linux"]["seccomp"]["operators"]]}
    validate.validate_config(config, str(tmp_path))


def test_features_command_prints_like_runc(capsys):
    assert features_command([]) == 0
    out = capsys.readouterr().out
    assert out == render_features(features())
    assert out.endswith("}\n") and '\n    "ociVersionMin"' in out     # runc: 4 spaces, final newline


def test_features_with_arguments_is_a_usage_error(runc_bin):
    with pytest.raises(ConfigError) as info:
        features_command(["extra"])
    assert info.value.exit_code == 1
    assert run([runc_bin, "features", "extra"]).returncode == 1


# --- through the hutch binary ----------------------------------------------------------------------

def test_hutch_features_binary(hutch_bin, runc_features):
    result = run([hutch_bin, "features"])
    assert result.returncode == 0, result.stderr
    assert key_tree(json.loads(result.stdout)).keys() == key_tree(runc_features).keys()


@pytest.mark.parametrize("flags", [[], ["--rootless"]])
def test_hutch_spec_binary_writes_runcs_file(hutch_bin, runc_bin, tmp_path, flags):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    assert run([hutch_bin, "spec", "--bundle", str(ours), *flags]).returncode == 0
    assert run([runc_bin, "spec", "--bundle", str(theirs), *flags]).returncode == 0
    assert (ours / "config.json").read_bytes() == (theirs / "config.json").read_bytes()


def test_hutch_spec_binary_refuses_to_overwrite(hutch_bin, runc_bin, tmp_path):
    (tmp_path / "config.json").write_text("keep")
    ours = run([hutch_bin, "spec"], cwd=tmp_path)
    theirs = run([runc_bin, "spec"], cwd=tmp_path)
    assert ours.returncode == theirs.returncode == 1
    assert len(ours.stderr.strip().splitlines()) == 1
    assert "File config.json exists. Remove it first" in ours.stderr
    assert (tmp_path / "config.json").read_text() == "keep"


def test_generated_spec_runs_under_hutch_validation(hutch_bin, tmp_path):
    """`hutch spec` output is a config hutch itself accepts (once a rootfs is there)."""
    assert run([hutch_bin, "spec"], cwd=tmp_path).returncode == 0
    (tmp_path / "rootfs").mkdir()
    validate.validate_config(validate.load_config(str(tmp_path)), str(tmp_path))
