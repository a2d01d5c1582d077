"""Bind-mount sources opened on the runtime's side, for a container with a user namespace.

The container's root is a mapped uid: it may not be able to search or read a bind's
source on the host (a 0700 directory owned by host root), yet the runtime, real root
in the host's user namespace, can.  As runc does (its mountFds), the runtime opens
each source and the container process mounts it by fd:

* plain binds: once the container's mount namespace exists, the parent opens each
  source O_PATH under ``/proc/PID/root`` of the container process (a mount of *that*
  namespace, which mount(MS_BIND) requires; the path resolves as on the host: the
  namespace is still a copy of the host's and the process has not moved its root),
  and sends the fds over a socketpair (:func:`send_sources`, :func:`recv_sources`).
  The mount is then made in the container as before, so flags the kernel locks in a
  user namespace stay locked and mountinfo is the same as without the fd.
* idmapped binds: the parent clones the source with open_tree(OPEN_TREE_CLONE) in the
  host's mount namespace and gives it its id maps before forking (only the host's root
  may idmap a host filesystem, :func:`open_idmapped_trees`); the container moves the
  detached tree onto its destination.

A failure to open a source travels as its errno, so the container process reports it
at the mount it belongs to, with the same message as when it opens the source itself.
"""

from __future__ import annotations

import os

from hutch import syscall as _sys
from hutch.errors import HutchError, SysCallError
from hutch.fs.options import parse_options
from hutch.syscall import mountapi
from hutch.syscall.constants import MS_REC

# SCM_RIGHTS carries at most 253 fds per message (SCM_MAX_FD).
_FDS_PER_MESSAGE = 200


def bind_entries(spec: dict) -> list[tuple[int, str, bool, bool]]:
    """(index, source, recursive, idmapped) of every bind mount of the spec that has a
    source (validate_fs has checked the entries)."""
    out = []
    for i, entry in enumerate(spec.get("mounts") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("source"), str) or not entry["source"]:
            continue
        opts = parse_options(entry.get("options"), f"mounts[{i}]", bind_type=entry.get("type") == "bind")
        if not (opts.is_bind or entry.get("type") == "bind"):
            continue
        idmapped = bool(entry.get("uidMappings") or entry.get("gidMappings")
                        or {"idmap", "ridmap"} & opts.extensions)
        out.append((i, entry["source"], bool(opts.flags & MS_REC), idmapped))
    return out


def open_idmapped_trees(spec: dict) -> dict[int, int]:
    """{mount index: detached, idmapped tree fd} for the spec's idmapped binds, made in
    the host's namespaces; every fd is closed if one fails."""
    from hutch.fs.idmapped import idmap_userns
    trees: dict[int, int] = {}
    where = "mounts"
    try:
        for index, source, recursive, idmapped in bind_entries(spec):
            if not idmapped:
                continue
            entry = spec["mounts"][index]
            where = f"mounts[{index}]"
            tree = mountapi.open_tree(mountapi.AT_FDCWD, source, mountapi.OPEN_TREE_CLONE |
                                      (mountapi.AT_RECURSIVE if recursive else 0),
                                      f"bind source {source}")
            trees[index] = tree
            opts = parse_options(entry.get("options"), where, bind_type=entry.get("type") == "bind")
            userns = idmap_userns(entry.get("uidMappings") or [], entry.get("gidMappings") or [], where)
            try:
                mountapi.set_idmap(tree, userns, "ridmap" in opts.extensions,
                                   f"{source} on {entry.get('destination')} (idmapped)")
            finally:
                os.close(userns)
    except HutchError as exc:
        close_fds(trees)
        # As stage 2 would report it (a SysCallError's own text omits `where`).
        raise HutchError(exc.message, where=exc.where or where, exit_code=exc.exit_code) from None
    except BaseException:
        close_fds(trees)
        raise
    return trees


def close_fds(fds: dict) -> None:
    for fd in fds.values():
        if fd >= 0:
            os.close(fd)
    fds.clear()


def socketpair() -> tuple[int, int]:
    """(parent end, child end): close-on-exec SOCK_SEQPACKET fds (one message per send)."""
    import _socket   # the C module: socket.py pulls in enum
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    return a.detach(), b.detach()


def send_sources(sock_fd: int, pid: int, spec: dict) -> None:
    """Open the plain binds' sources in pid's mount namespace and send them (see module doc)."""
    import _socket
    entries = [(i, src) for i, src, _rec, idmapped in bind_entries(spec) if not idmapped]
    try:
        root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise HutchError(f"cannot open the container's mount namespace: {exc.strerror}") from None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, sock_fd)
    try:
        for start in range(0, len(entries), _FDS_PER_MESSAGE) or (0,):
            chunk = entries[start:start + _FDS_PER_MESSAGE]
            more = start + _FDS_PER_MESSAGE < len(entries)
            _send_chunk(sock, root, chunk, more)
    finally:
        sock.detach()
        os.close(root)


def _send_chunk(sock, root: int, chunk: list, more: bool) -> None:
    import _socket
    words, fds = [], []
    try:
        for index, source in chunk:
            try:
                # RESOLVE_IN_ROOT: absolute symlinks of the source stay in that namespace
                # (its root is the host's /, so the path means what it means on the host).
                # A relative source means what it means to the container process: the
                # same cwd as ours (it was forked from us).
                path = source if source.startswith("/") else os.path.join(os.getcwd(), source)
                fd = _sys.openat2(root, path.lstrip("/") or ".", os.O_PATH | os.O_CLOEXEC, 0,
                                  _sys.RESOLVE_IN_ROOT)
            except SysCallError as exc:
                words.append(f"{index}:{exc.errno}")
                continue
            fds.append(fd)
            words.append(f"{index}:0")
        text = (",".join(words) + ("|more" if more else "")).encode()
        ancillary = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                      b"".join(fd.to_bytes(4, "little", signed=True) for fd in fds))] if fds else []
        sock.sendmsg([text or b"|"], ancillary)
    finally:
        for fd in fds:
            os.close(fd)


def recv_sources(sock_fd: int) -> dict[int, int]:
    """The container side of send_sources: {mount index: O_PATH fd, or -errno}."""
    import _socket
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, sock_fd)
    out: dict[int, int] = {}
    try:
        more = True
        while more:
            data, ancillary, _flags, _addr = sock.recvmsg(65536, _socket.CMSG_SPACE(4 * _FDS_PER_MESSAGE),
                                                          _socket.MSG_CMSG_CLOEXEC)
            if not data:
                raise HutchError("the runtime did not send the bind mount sources")
            fds = []
            for level, kind, payload in ancillary:
                if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                    fds += [int.from_bytes(payload[i:i + 4], "little", signed=True)
                            for i in range(0, len(payload) - len(payload) % 4, 4)]
            text, _, tail = data.decode().partition("|")
            more = tail == "more"
            for word in filter(None, text.split(",")):
                index, _, err = word.partition(":")
                out[int(index)] = -int(err) if int(err) else fds.pop(0)
    except BaseException:
        close_fds(out)
        raise
    finally:
        sock.close()
    return out


__all__ = ["bind_entries", "open_idmapped_trees", "socketpair", "send_sources", "recv_sources",
           "close_fds"]
