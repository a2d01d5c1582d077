"""Idmapped bind mounts (a mount's uidMappings/gidMappings, options idmap/ridmap).

The source is cloned as a detached tree (open_tree), given a user namespace whose maps
are the mount's (mount_setattr MOUNT_ATTR_IDMAP), then moved onto the destination
(move_mount).  The user namespace comes from a short-lived child: the kernel keeps what
the mount needs once the tree holds it, so the child exits at once.
"""

from __future__ import annotations

import os

from hutch import syscall as _sys
from hutch.errors import ConfigError, HutchError, SysCallError


def map_lines(maps: list, where: str) -> str:
    """uid_map/gid_map text from OCI mappings ({containerID, hostID, size})."""
    lines = []
    for i, m in enumerate(maps):
        try:
            lines.append(f"{int(m['containerID'])} {int(m['hostID'])} {int(m['size'])}")
        except (KeyError, TypeError, ValueError):
            raise ConfigError("must be {containerID, hostID, size}", where=f"{where}[{i}]") from None
    return "\n".join(lines) + "\n"


def idmap_userns(uid_maps: list, gid_maps: list, where: str) -> int:
    """An fd of a new user namespace with these maps (its maker is gone on return)."""
    uid_text = map_lines(uid_maps, f"{where}.uidMappings")
    gid_text = map_lines(gid_maps, f"{where}.gidMappings")
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_r)
            os.close(done_w)
            _sys.unshare(_sys.CLONE_NEWUSER)
            # Our pid as the (host's) /proc in this mount namespace numbers us: we may
            # be in a pid namespace of our own where fork's answer means nothing there.
            os.write(ready_w, os.readlink("/proc/self").encode())
            os.close(ready_w)
            os.read(done_r, 1)       # until the parent has what it needs
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        proc_pid = os.read(ready_r, 32).decode()
        if not proc_pid:
            raise HutchError("the helper process for an idmapped mount died", where=where)
        for name, text, key in (("uid_map", uid_text, "uidMappings"),
                                ("gid_map", gid_text, "gidMappings")):
            try:
                with open(f"/proc/{proc_pid}/{name}", "w") as f:
                    f.write(text)
            except OSError as exc:
                raise SysCallError(f"write {name}", exc.errno or 0,
                                   text.strip().replace("\n", ", ")) from None
        return os.open(f"/proc/{proc_pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)
        os.waitpid(pid, 0)
