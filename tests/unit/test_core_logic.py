"""Pure logic of the core: id maps, run options -> spec, flags, exec lookup, tables, signals."""

import os
import stat

import pytest

from hutch.cli.flags import Flag, parse
from hutch.cli.oci import format_table
from hutch.errors import ConfigError, HutchError
from hutch.ns import idmap
from hutch.oci.container import parse_signal
from hutch.oci.execproc import build_exec_process
from hutch.oci.process import exec_environment, find_executable, home_for
from hutch.engine.runspec import HOST_ROOT, RunOptions, build_spec
from hutch.oci.state import validate_id


# --- id maps ----------------------------------------------------------------------

def test_parse_mapping():
    assert idmap.parse_mapping("0:100000:65536", "--uidmap") == idmap.IdMapping(0, 100000, 65536)


@pytest.mark.parametrize("text", ["0:1", "a:1:2", "0:1:0", "0:4294967295:2", "-1:0:1"])
def test_parse_mapping_rejects(text):
    with pytest.raises(ConfigError) as exc:
        idmap.parse_mapping(text, "--uidmap")
    assert exc.value.where == "--uidmap"


def test_overlapping_maps_rejected_with_path():
    entries = [{"containerID": 0, "hostID": 1000, "size": 10}, {"containerID": 5, "hostID": 5000, "size": 10}]
    with pytest.raises(ConfigError) as exc:
        idmap.from_oci(entries, "linux.uidMappings")
    assert exc.value.where == "linux.uidMappings"
    with pytest.raises(ConfigError) as exc:
        idmap.from_oci([{"containerID": 0, "hostID": "x", "size": 1}], "linux.gidMappings")
    assert exc.value.where == "linux.gidMappings[0]"


def test_host_id_lookup():
    maps = [idmap.IdMapping(0, 100000, 1000), idmap.IdMapping(1000, 5000, 10)]
    assert idmap.host_id(maps, 0) == 100000
    assert idmap.host_id(maps, 1005) == 5005
    assert idmap.host_id(maps, 2000) is None


# --- hutch run options -> OCI spec -------------------------------------------------

def ns_types(spec):
    return {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]}


def test_default_run_spec_isolates_everything_but_user():
    spec = build_spec(RunOptions(args=["true"]), "c1")
    assert set(ns_types(spec)) == {"pid", "network", "ipc", "uts", "mount", "cgroup"}
    assert spec["root"] == {"path": HOST_ROOT, "readonly": False}
    assert spec["hostname"] == "c1"
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]
    assert "CAP_SYS_ADMIN" not in spec["process"]["capabilities"]["effective"]
    assert "CAP_NET_RAW" in spec["process"]["capabilities"]["bounding"]
    assert {m["destination"] for m in spec["mounts"]} >= {"/proc", "/dev", "/sys", "/tmp", "/run"}


def test_share_join_userns_and_time():
    spec = build_spec(RunOptions(args=["true"], share=["pid,net"], join_ns=["ipc:/proc/1/ns/ipc"],
                                 userns=True, time_offset=["monotonic=100"]), "c")
    types = ns_types(spec)
    assert "pid" not in types and "network" not in types
    assert types["ipc"] == "/proc/1/ns/ipc"
    assert "user" in types and "time" in types
    assert spec["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 100000, "size": 65536}]
    assert spec["linux"]["timeOffsets"] == {"monotonic": {"secs": 100, "nanosecs": 0}}


def test_caps_add_drop_privileged():
    caps = lambda **kw: build_spec(RunOptions(args=["x"], **kw), "c")["process"]["capabilities"]["effective"]
    assert "CAP_SYS_ADMIN" in caps(cap_add=["sys_admin"])
    assert "CAP_CHOWN" not in caps(cap_drop=["CHOWN"])
    assert caps(cap_drop=["ALL"]) == []
    from hutch.security.caps import runtime_permitted_mask, to_names
    assert set(caps(privileged=True)) == set(to_names(runtime_permitted_mask()))
    assert "CAP_SYS_ADMIN" in caps(privileged=True)
    with pytest.raises(ConfigError):
        caps(cap_add=["CAP_BOGUS"])


def test_non_root_user_gets_no_effective_caps():
    process = build_spec(RunOptions(args=["x"], user="1000:1000"), "c")["process"]
    assert process["user"] == {"uid": 1000, "gid": 1000}
    assert process["capabilities"]["effective"] == []


@pytest.mark.parametrize("opts,where", [
    ({"args": []}, "command"),
    ({"share": ["bogus"]}, "--share"),
    ({"join_ns": ["net"]}, "--join-ns"),
    ({"uidmap": ["0:1:1"]}, "--uidmap"),
    ({"ulimits": ["nofile=10:5"]}, "--ulimit"),
    ({"ulimits": ["bogus=1"]}, "--ulimit"),
    ({"volumes": ["/nonexistent-hutch:/x"]}, "--volume[0]"),
    ({"volumes": ["/tmp:rel"]}, "--volume[0]"),
    ({"net": "host", "networks": ["web"]}, "--network"),
    ({"user": "bob"}, "--user"),
    ({"time_offset": ["realtime=1"]}, "--time-offset"),
])
def test_bad_run_options_name_the_option(opts, where):
    opts = {"args": ["true"], **opts}
    with pytest.raises(ConfigError) as exc:
        build_spec(RunOptions(**opts), "c")
    assert exc.value.where == where


def test_ulimit_and_env():
    spec = build_spec(RunOptions(args=["x"], ulimits=["nofile=100:200"], env=["A=1", "PATH=/bin"]), "c")
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]
    assert "A=1" in spec["process"]["env"] and "PATH=/bin" in spec["process"]["env"]
    assert sum(e.startswith("PATH=") for e in spec["process"]["env"]) == 1


# --- flags -------------------------------------------------------------------------

def test_flags_runc_style():
    flags = [Flag("bundle", ("b",), value=True), Flag("detach", ("d",)), Flag("env", ("e",), value=True, repeat=True)]
    opts, pos = parse(["-b", "/x", "--detach", "-e", "A=1", "--env=B=2", "id"], flags)
    assert opts == {"bundle": "/x", "detach": True, "env": ["A=1", "B=2"]}
    assert pos == ["id"]
    opts, pos = parse(["id", "--detach"], flags, interspersed=True)
    assert opts["detach"] and pos == ["id"]
    opts, pos = parse(["sh", "-c", "x"], flags)
    assert pos == ["sh", "-c", "x"]
    with pytest.raises(ConfigError):
        parse(["--nope"], flags)
    with pytest.raises(ConfigError):
        parse(["--bundle"], flags)


# --- exec lookup, env ----------------------------------------------------------------

def test_find_executable(tmp_path):
    (tmp_path / "bin").mkdir()
    exe = tmp_path / "bin" / "tool"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    plain = tmp_path / "bin" / "data"
    plain.write_text("x")
    env = {"PATH": "/bin"}
    assert find_executable("tool", env, root=str(tmp_path)) == "/bin/tool"
    with pytest.raises(HutchError) as exc:
        find_executable("missing", env, root=str(tmp_path))
    assert exc.value.exit_code == 127
    with pytest.raises(HutchError) as exc:
        find_executable("/bin/data", env, root=str(tmp_path))
    assert exc.value.exit_code == 126


def test_home_from_passwd(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n")
    assert home_for(1000, str(passwd)) == "/home/bob"
    assert home_for(5, str(passwd)) == "/"
    assert exec_environment({"env": ["HOME=/x"]})["HOME"] == "/x"


def test_exec_process_overrides():
    base = {"args": ["sh"], "env": ["A=1", "B=2"], "cwd": "/", "user": {"uid": 0, "gid": 0},
            "capabilities": {"bounding": ["CAP_KILL"]}}
    opts = {"env": ["B=3"], "cwd": "/tmp", "user": "5:6", "cap": ["CAP_CHOWN"], "tty": True}
    p = build_exec_process(base, opts, ["id"])
    assert p["args"] == ["id"] and p["env"] == ["A=1", "B=3"] and p["cwd"] == "/tmp"
    assert p["user"]["uid"] == 5 and p["user"]["gid"] == 6 and p["terminal"] is True
    assert "CAP_CHOWN" in p["capabilities"]["bounding"] and "CAP_CHOWN" in p["capabilities"]["ambient"]
    assert base["env"] == ["A=1", "B=2"]  # the container's own process is not changed
    with pytest.raises(ConfigError):
        build_exec_process(base, {}, [])
    with pytest.raises(ConfigError):
        build_exec_process(base, {"cap": ["CAP_NOPE"]}, ["id"])


# --- ids, signals, tables -------------------------------------------------------------

@pytest.mark.parametrize("bad", ["", "a/b", "..", ".", "a b", "x\n"])
def test_invalid_ids(bad):
    with pytest.raises(ConfigError):
        validate_id(bad)


@pytest.mark.parametrize("text,number", [("9", 9), ("KILL", 9), ("SIGKILL", 9), ("term", 15), ("SIGUSR1", 10)])
def test_parse_signal(text, number):
    assert parse_signal(text) == number


@pytest.mark.parametrize("bad", ["0", "65", "BOGUS", "SIG"])
def test_parse_signal_rejects(bad):
    with pytest.raises(ConfigError):
        parse_signal(bad)


def test_table_like_go_tabwriter():
    text = format_table([["ID", "PID"], ["a-long-container-id", "1"]])
    lines = text.splitlines()
    assert lines[0] == "ID".ljust(len("a-long-container-id") + 3) + "PID"
    assert format_table([["ID", "PID"]]) == "ID          PID\n"
