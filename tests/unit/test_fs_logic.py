"""Pure filesystem logic: mount options, sysctl and /proc rules, device specs, path
resolution inside a root (openat2 works unprivileged)."""

from __future__ import annotations

import os

import pytest

from hutch.errors import ConfigError, SysCallError
from hutch.fs import options as o
from hutch.fs.devices import parse_devices
from hutch.fs.mounts import check_proc_mount
from hutch.fs.resolve import resolve_in_root, safe_join, open_root
from hutch.fs.rootfs import check_sysctls, needs_dev_setup, validate_fs
from hutch.syscall import constants as c
from hutch.syscall import mountapi as ma


# --- options ------------------------------------------------------------------

def test_flag_words_set_and_clear_in_order():
    opts = o.parse_options(["ro", "nosuid", "nodev", "rw", "suid"], "mounts[0]")
    assert opts.flags == c.MS_NODEV
    assert not opts.readonly


def test_rbind_is_bind_and_recursive():
    opts = o.parse_options(["rbind", "ro"], "mounts[2]")
    assert opts.is_bind and opts.recursive and opts.readonly


def test_unknown_words_become_filesystem_data_in_order():
    opts = o.parse_options(["nosuid", "mode=755", "size=65536k"], "mounts[1]")
    assert opts.data_string == "mode=755,size=65536k"
    assert opts.flags == c.MS_NOSUID


def test_propagation_words_are_kept_in_order():
    opts = o.parse_options(["rprivate", "shared"], "mounts[0]")
    assert opts.propagation == [c.MS_PRIVATE | c.MS_REC, c.MS_SHARED]


def test_recursive_attributes_map_to_mount_setattr():
    opts = o.parse_options(["rbind", "rro", "rnosuid", "rnoatime"], "mounts[0]")
    assert opts.attr_set == ma.MOUNT_ATTR_RDONLY | ma.MOUNT_ATTR_NOSUID | ma.MOUNT_ATTR_NOATIME
    assert opts.attr_clr & ma.MOUNT_ATTR__ATIME == ma.MOUNT_ATTR__ATIME
    later = o.parse_options(["rro", "rrw"], "mounts[0]")
    assert later.attr_set == 0 and later.attr_clr == ma.MOUNT_ATTR_RDONLY


def test_unknown_bind_option_is_data_the_kernel_ignores():
    """runc 1.1.5 passes words it does not know as data, on binds too (mode=755 in a bind)."""
    opts = o.parse_options(["rbind", "ro", "mode=755", "bogus", "z", "nocopy"], "mounts[3]", bind_type=True)
    assert opts.flags == c.MS_BIND | c.MS_REC | c.MS_RDONLY
    assert opts.data == ["mode=755", "bogus", "z", "nocopy"]


def test_empty_words_add_nothing():
    opts = o.parse_options(["", "mode=700", ""], "mounts[0]")
    assert opts.data == ["mode=700"] and opts.flags == 0


def test_comma_word_is_data_on_a_filesystem_mount():
    assert o.parse_options(["size=1k,mode=700"], "mounts[0]").data == ["size=1k,mode=700"]
    assert o.parse_options(["ro,nosuid"], "mounts[0]").flags == 0   # data: the fs decides


def test_comma_word_hiding_flags_on_a_bind_is_refused():
    with pytest.raises(ConfigError) as info:
        o.parse_options(["rbind", "ro,nosuid"], "mounts[2]", bind_type=True)
    assert info.value.where == "mounts[2].options[1]"
    assert "ro, nosuid" in info.value.message
    with pytest.raises(ConfigError):
        o.parse_options(["bind", "x,rprivate"], "mounts[2]")      # a bind word makes it a bind
    assert o.parse_options(["rbind", "a,b"], "mounts[2]", bind_type=True).data == ["a,b"]


def test_idmap_words_are_extensions():
    assert o.parse_options(["rbind", "ridmap"], "mounts[0]", bind_type=True).extensions == {"ridmap"}


@pytest.mark.parametrize("bad,idx", [(["ro", 5], 1), (["a\0b"], 0)])
def test_malformed_options_are_config_errors(bad, idx):
    with pytest.raises(ConfigError) as info:
        o.parse_options(bad, "mounts[1]")
    assert info.value.where == f"mounts[1].options[{idx}]"


def test_options_must_be_a_list():
    with pytest.raises(ConfigError) as info:
        o.parse_options("ro", "mounts[0]")
    assert info.value.where == "mounts[0].options"


def test_root_propagation_values():
    assert o.propagation_flag("rslave", "x") == c.MS_SLAVE | c.MS_REC
    with pytest.raises(ConfigError) as info:
        o.propagation_flag("sideways", "linux.rootfsPropagation")
    assert info.value.where == "linux.rootfsPropagation"


# --- /proc rules (runc's checkProcMount) ---------------------------------------

@pytest.mark.parametrize("dest", ["/proc/cpuinfo", "/proc/meminfo", "/proc/uptime", "/proc/loadavg",
                                  "/proc/slabinfo", "/procfoo", "/etc/proc"])
def test_allowed_proc_destinations(dest):
    check_proc_mount(dest, "bind", "/somewhere", "mounts[0]")


@pytest.mark.parametrize("dest", ["/proc/kmsg", "/proc/self", "/proc/sys/kernel/core_pattern",
                                  "/proc/1/attr"])
def test_refused_proc_destinations(dest):
    with pytest.raises(ConfigError) as info:
        check_proc_mount(dest, "bind", "/somewhere", "mounts[4]")
    assert info.value.where == "mounts[4]"


def test_proc_itself_only_for_procfs():
    check_proc_mount("/proc", "proc", "proc", "mounts[0]")
    with pytest.raises(ConfigError):
        check_proc_mount("/proc", "tmpfs", "tmpfs", "mounts[0]")


# --- sysctl --------------------------------------------------------------------

def _spec(*ns, sysctl):
    return {"linux": {"namespaces": [{"type": t} for t in ns], "sysctl": sysctl}}


def test_namespaced_sysctls_are_allowed_with_their_namespace():
    check_sysctls(_spec("ipc", "network", "uts", sysctl={
        "kernel.shmmax": "1", "fs.mqueue.msg_max": "10", "net.ipv4.ip_forward": "1",
        "kernel.domainname": "x"}))


@pytest.mark.parametrize("key,ns", [("kernel.shmmax", ("network",)), ("net.ipv4.ip_forward", ("ipc",)),
                                    ("kernel.panic", ("ipc", "network", "uts")),
                                    ("kernel.hostname", ("uts",)), ("vm.swappiness", ())])
def test_host_sysctls_are_refused(key, ns):
    with pytest.raises(ConfigError) as info:
        check_sysctls(_spec(*ns, sysctl={key: "1"}))
    assert info.value.where == f"linux.sysctl.{key}"


# --- devices and /dev -------------------------------------------------------------

def test_device_entries_are_validated_with_their_path():
    devs = parse_devices({"linux": {"devices": [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600, "uid": 0, "gid": 0}]}})
    assert devs[0]["mode"] == 0o600 and devs[0]["major"] == 10
    with pytest.raises(ConfigError) as info:
        parse_devices({"linux": {"devices": [{"path": "/dev/x", "type": "c", "major": 1, "minor": 1},
                                             {"path": "/dev/y", "type": "q"}]}})
    assert info.value.where == "linux.devices[1].type"


def test_dev_setup_is_skipped_only_for_a_bind_mounted_dev():
    assert needs_dev_setup({"mounts": [{"destination": "/dev", "type": "tmpfs"}]})
    assert needs_dev_setup({"mounts": []})
    assert not needs_dev_setup({"mounts": [{"destination": "/dev/", "type": "bind", "source": "/dev",
                                            "options": ["rbind"]}]})


# --- validate_fs ---------------------------------------------------------------------

def test_validate_names_the_missing_rootfs(tmp_path):
    with pytest.raises(ConfigError) as info:
        validate_fs({"root": {"path": "nope"}}, str(tmp_path))
    assert info.value.where == "root.path" and "does not exist" in info.value.message


def test_validate_names_a_bad_mount_option(tmp_path):
    (tmp_path / "rootfs").mkdir()
    spec = {"root": {"path": "rootfs"}, "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind", "rw", "ro,wat"]}]}
    with pytest.raises(ConfigError) as info:
        validate_fs(spec, str(tmp_path))
    assert info.value.where == "mounts[1].options[2]"
    spec["mounts"][1]["options"] = ["rbind", "rw", "wat", "mode=755"]   # data a bind ignores: fine
    validate_fs(spec, str(tmp_path))


def test_validate_accepts_the_builtin_host_root(tmp_path):
    validate_fs({"root": {"path": "hutch:host"}, "mounts": []}, str(tmp_path))


# --- resolving inside a root ---------------------------------------------------------

def test_symlinks_resolve_inside_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "real/dir").mkdir(parents=True)
    (root / "abs").symlink_to("/real")              # absolute: relative to the root
    (root / "up").symlink_to("../../../../../etc")  # climbs: stops at the root
    (root / "dangling").symlink_to("/not/yet/here")
    (root / "real/loop").symlink_to("loop")
    fd = open_root(str(root))
    try:
        assert resolve_in_root(fd, "/abs/dir") == "/real/dir"
        assert resolve_in_root(fd, "/up/passwd") == "/etc/passwd"
        assert resolve_in_root(fd, "/dangling/x") == "/not/yet/here/x"
        assert resolve_in_root(fd, "/abs/../abs/dir/../..") == "/"
        with pytest.raises(SysCallError) as exc:
            resolve_in_root(fd, "/real/loop/x")
        assert exc.value.errno == 40   # ELOOP
    finally:
        os.close(fd)
    assert safe_join(str(root), "/up/passwd") == str(root.resolve()) + "/etc/passwd"
    assert safe_join(str(root), "abs/dir") == str(root.resolve()) + "/real/dir"


@pytest.mark.parametrize("given,cleaned", [("/mnt/", "/mnt"), ("/dev/xx/", "/dev/xx"),
                                           ("/dev/./zz", "/dev/zz"), ("//dev//xx", "/dev/xx"),
                                           ("/dev/../mnt2", "/mnt2"), ("/dev/", "/dev"), ("/", "/")])
def test_device_paths_are_cleaned_as_runc_does(given, cleaned):
    spec = {"linux": {"devices": [{"path": given, "type": "c", "major": 1, "minor": 3}]}}
    assert parse_devices(spec)[0]["path"] == cleaned
