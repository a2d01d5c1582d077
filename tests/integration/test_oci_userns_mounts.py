"""Bind mounts in a user namespace whose sources the container's mapped root cannot reach
(issue 10): the runtime opens the sources on the host's side and the container mounts
them by fd (runc 1.1.5's mountFds; hutch.fs.sources).  Differential against runc 1.1.5,
idmapped binds against what the kernel shows (no peer has them in a user namespace)."""

from __future__ import annotations

import json
import os
import re

import pytest

from helpers.oci import new_id, oci, ref_oci  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

MAPS = [{"containerID": 0, "hostID": 100000, "size": 65536}]
BASE_MOUNTS = [{"destination": "/proc", "type": "proc", "source": "proc"},
               {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]}]
# What the container shows of its bind: the mountinfo line without ids, devices and
# peer-group numbers (they differ between runs), then ls -ld and whether it can list it.
SHOW = ("grep ' /mnt/b ' /proc/self/mountinfo | cut -d' ' -f4- | sed -E 's/:[0-9]+//g'; "
        "ls -ld /mnt/b | cut -c1-10; ls /mnt/b >/dev/null 2>&1 && echo readable || echo unreadable; "
        "echo fds $(ls /proc/self/fd)")


@pytest.fixture
def secret(tmp_path):
    """A 0700 directory of host root inside another (the mapped root can search neither:
    opening it O_PATH fails, not only listing it), a file and a 5:6 directory in it, and
    an absolute symlink to it."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    d = locked / "secret"
    d.mkdir(mode=0o700)
    (d / "file").write_text("x")
    (d / "sub").mkdir()
    os.chown(d / "sub", 5, 6)
    (tmp_path / "link").symlink_to(d)
    return d


@pytest.fixture
def userns_bundle(bundle, rootfs, tmp_path):
    """bundle(args, mounts) with a user namespace mapping 0 -> 100000 (65536 ids), the
    rootfs reachable by the mapped ids and /mnt/b there as the mount point."""
    (rootfs / "mnt" / "b").mkdir(parents=True, exist_ok=True)

    def make(args, mounts):
        b = bundle(args, root={"path": "rootfs", "readonly": False}, mounts=BASE_MOUNTS + mounts,
                   linux={"namespaces": [{"type": t} for t in ("pid", "mount", "user", "ipc", "uts")],
                          "uidMappings": MAPS, "gidMappings": MAPS,
                          "maskedPaths": [], "readonlyPaths": []})
        config = json.loads((b / "config.json").read_text())
        for p in [config["root"]["path"], *map(str, list(tmp_path.parents)[:3]), str(tmp_path)]:
            os.chmod(p, os.stat(p).st_mode | 0o005)
        return b
    return make


def run_show(rt, b) -> list[str]:
    res = rt.run(new_id(), b)
    assert res.returncode == 0, f"{rt.name}: {res.stderr}"
    return res.stdout.splitlines()


@pytest.mark.parametrize("via_link", [False, True], ids=["dir", "symlink"])
@pytest.mark.parametrize("options", [["bind"], ["rbind", "ro", "nosuid"],
                                     ["bind", "ro", "nodev", "noexec", "rprivate"]])
def test_bind_of_a_source_the_mapped_root_cannot_search(oci, ref_oci, userns_bundle, secret,
                                                        tmp_path, options, via_link):
    """runc mounts it (it opened the source as host root); the mapped root still cannot
    list it.  Same mountinfo line, mode and readability in hutch; no fd of the runtime's
    reaches the program (ls's own directory fd is 3)."""
    source = str(tmp_path / "link") if via_link else str(secret)
    b = userns_bundle(["sh", "-c", SHOW], [{"destination": "/mnt/b", "type": "bind",
                                            "source": source, "options": options}])
    out = run_show(oci, b)
    root, mount_point = out[0].split()[:2]
    assert (root, mount_point) == (str(secret), "/mnt/b")     # the symlink followed on the host
    assert out[1:] == ["drwx------", "unreadable", "fds 0 1 2 3"]
    if ref_oci is not None:
        assert run_show(ref_oci, b) == out


def test_bind_of_a_file_in_an_unsearchable_directory(oci, ref_oci, userns_bundle, secret, rootfs):
    (rootfs / "mnt" / "f").touch()
    b = userns_bundle(["sh", "-c", "cat /mnt/f; echo; grep -c ' /mnt/f ' /proc/self/mountinfo"],
                      [{"destination": "/mnt/f", "type": "bind", "source": str(secret / "file"),
                        "options": ["bind", "ro"]}])
    for rt in filter(None, (oci, ref_oci)):
        res = rt.run(new_id(), b)
        assert res.returncode == 0, f"{rt.name}: {res.stderr}"
        # the file is 0644: readable once mounted, though its directory is not searchable
        assert res.stdout.split() == ["x", "1"], rt.name


def test_missing_source_names_the_mount_and_leaves_nothing(oci, ref_oci, userns_bundle, tmp_path):
    b = userns_bundle(["true"], [{"destination": "/mnt/b", "type": "bind",
                                  "source": str(tmp_path / "absent"), "options": ["bind"]}])
    for rt in filter(None, (oci, ref_oci)):
        res = rt.create(new_id(), b)
        assert res.returncode == 1, f"{rt.name}: {res.stderr}"
        assert rt.ids() == [], rt.name
        if not rt.is_runc:
            assert re.search(r"mounts\[2\].*bind source .*absent.*No such file or directory",
                             res.stderr), res.stderr


IDMAP_SHOW = ("stat -c '%n %u:%g' /mnt/b/file /mnt/b/sub; ls /mnt/b | wc -l; "
              "grep ' /mnt/b ' /proc/self/mountinfo | cut -d' ' -f4-6; echo fds $(ls /proc/self/fd)")


@pytest.mark.parametrize("options, flags", [(["bind", "idmap"], "rw,relatime,idmapped"),
                                            (["rbind", "ridmap", "ro"], "ro,relatime,idmapped")])
def test_idmapped_bind_through_a_symlink_in_a_user_namespace(oci, userns_bundle, secret,
                                                              tmp_path, options, flags):
    """Maps 0 -> 100000 on the mount (host ids, as without a user namespace): host root's
    files are the container root's, so the 0700 directory is readable.

    No peer to compare with: runc 1.1.5 has no idmapped mounts, and crun 1.8 makes the
    bind inside the user namespace: it fails here with EACCES ("mount `.../link` to
    `mnt/b`: Permission denied"), and where the source is reachable it mounts a plain
    bind without the maps (no "idmapped" in its mountinfo)."""
    if oci.is_runc:
        pytest.skip("runc 1.1.5 has no idmapped mounts (runc 1.2 adds them)")
    b = userns_bundle(["sh", "-c", IDMAP_SHOW],
                      [{"destination": "/mnt/b", "type": "bind", "source": str(tmp_path / "link"),
                        "options": options, "uidMappings": MAPS, "gidMappings": MAPS}])
    out = run_show(oci, b)
    assert out == ["/mnt/b/file 0:0", "/mnt/b/sub 5:6", "2", f"{secret} /mnt/b {flags}",
                   "fds 0 1 2 3"]
    assert os.stat(secret / "file").st_uid == 0     # the disk is unchanged


def test_idmapped_bind_with_a_missing_source_in_a_user_namespace(oci, userns_bundle, tmp_path):
    if oci.is_runc:
        pytest.skip("runc 1.1.5 has no idmapped mounts")
    b = userns_bundle(["true"], [{"destination": "/mnt/b", "type": "bind",
                                  "source": str(tmp_path / "absent"), "options": ["bind", "idmap"],
                                  "uidMappings": MAPS, "gidMappings": MAPS}])
    res = oci.create(new_id(), b)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert re.search(r"mounts\[2\].*absent", res.stderr), res.stderr
    assert oci.ids() == []
