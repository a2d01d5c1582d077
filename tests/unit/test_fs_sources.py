"""hutch.fs.sources without root: which mounts are binds, and the fd hand-over (errnos
for sources that cannot be opened, chunks past SCM_RIGHTS's per-message limit)."""

from __future__ import annotations

import errno
import os

from hutch.fs import sources


def spec_of(*mounts) -> dict:
    return {"mounts": list(mounts)}


def test_bind_entries_picks_binds_and_idmapped_ones():
    spec = spec_of({"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/a", "type": "bind", "source": "/srv"},
                   {"destination": "/b", "source": "/srv", "options": ["rbind", "ro"]},
                   {"destination": "/c", "type": "bind", "source": "/srv", "options": ["idmap"],
                    "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]},
                   {"destination": "/d", "type": "tmpfs", "source": "tmpfs"})
    assert sources.bind_entries(spec) == [(1, "/srv", False, False), (2, "/srv", True, False),
                                          (3, "/srv", False, True)]


def _round_trip(spec: dict) -> dict[int, int]:
    parent, child = sources.socketpair()
    try:
        sources.send_sources(parent, os.getpid(), spec)   # our own /proc/PID/root: the host's /
        return sources.recv_sources(child)
    finally:
        os.close(parent)


def test_sources_arrive_as_fds_of_the_same_objects_or_as_errnos(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "dir")
    spec = spec_of({"destination": "/a", "type": "bind", "source": str(tmp_path / "link")},
                   {"destination": "/b", "type": "bind", "source": str(tmp_path / "absent")})
    got = _round_trip(spec)
    try:
        assert got[1] == -errno.ENOENT
        assert os.readlink(f"/proc/self/fd/{got[0]}") == str(tmp_path / "dir")   # followed
        assert os.get_inheritable(got[0]) is False
    finally:
        sources.close_fds(got)


def test_more_sources_than_one_message_carries(tmp_path):
    n = sources._FDS_PER_MESSAGE * 2 + 3
    spec = spec_of(*({"destination": f"/m{i}", "type": "bind", "source": str(tmp_path)}
                     for i in range(n)))
    got = _round_trip(spec)
    try:
        assert sorted(got) == list(range(n)) and all(fd >= 0 for fd in got.values())
        assert len(set(got.values())) == n
    finally:
        sources.close_fds(got)
    assert got == {}
