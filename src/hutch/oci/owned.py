"""What a container owns: a journal of typed entries in its state directory.

``ROOT/<id>/owned.jsonl`` holds one JSON object per line, appended under the
container's lock *before* the thing it names is made::

    {"kind": "cgroup", "driver": "v1", "paths": {...}, "created": [...]}
    {"kind": "process", "pid": 4242, "start": 123456}
    {"kind": "mount", "key": "mount:/run/netns/x", "path": "/run/netns/x"}
    {"kind": "net", "key": "net:web", "root": ..., "network": "web", "id": ..., "host_if": ...}

`undo_all` (delete, delete --force, collection of a crashed run) undoes the entries
in reverse order of first appearance.  Every undo is idempotent -- a thing never made,
or already undone, is not an error -- so a crash at any point (between writing an
entry and making the thing, or half-way through a delete) leaves a state that the next
`delete --force` completes.

A later line with the same key (default: the kind) replaces an earlier one's data
but keeps its place: the cgroup entry is rewritten once the process was placed.

Why a journal beside state.json rather than a field in it: state.json is rewritten
whole on every change, and a damaged state.json must not lose what the container
owns.  A torn last line (the runtime killed while appending) names nothing that was
made: the entry is always complete before the thing exists.  No fsync: what must
survive is a killed process, not a power cut (the default root is a tmpfs).

Kinds from layers above oci/ (a monitor process, ...) add their undo with `register`.
"""

from __future__ import annotations

import os

from hutch import fastjson
from hutch.errors import HutchError, SysCallError

JOURNAL = "owned.jsonl"


def record(directory: str, entry: dict) -> dict:
    """Append entry (must have "kind") to the journal; returns it.  Caller holds the lock."""
    if entry.get("kind") not in UNDO:
        raise HutchError(f"no undo known for owned kind {entry.get('kind')!r}", where="state")
    line = (fastjson.dumps(entry) + "\n").encode()
    fd = os.open(os.path.join(directory, JOURNAL),
                 os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, line)    # one write of a small line: never interleaved, torn only by a crash
    finally:
        os.close(fd)
    return entry


def key_of(entry: dict) -> str:
    return entry.get("key") or entry["kind"]


def read(directory: str, warn=None) -> list[dict]:
    """The entries in order of first appearance, each with its latest data.
    A line that cannot be read is reported through warn and skipped."""
    try:
        with open(os.path.join(directory, JOURNAL), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    merged: dict[str, dict] = {}
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            entry = fastjson.loads(raw, where=f"{JOURNAL} line {number}")
            if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
                raise HutchError("not an ownership entry", where=f"{JOURNAL} line {number}")
        except HutchError as err:
            torn_tail = number == len(lines) and not data.endswith(b"\n")
            if warn and not torn_tail:       # a torn last line names nothing that was made
                warn(f"skipping unreadable entry: {err}")
            continue
        merged[key_of(entry)] = entry     # a dict keeps the first position of a key
    return list(merged.values())


def undo_all(entries: list[dict], warn) -> None:
    """Undo entries in reverse; one failing undo is reported and the rest still run."""
    for entry in reversed(entries):
        undo = UNDO.get(entry.get("kind"))
        if undo is None:
            warn(f"cannot undo owned {entry.get('kind')!r}: unknown kind")
            continue
        try:
            undo(entry)      # a KeyError in here is the undo's own, not an unknown kind
        except (HutchError, OSError, KeyError, TypeError, ValueError) as err:
            warn(f"cannot undo owned {key_of(entry)}: {err}")


def find(entries: list[dict], kind: str) -> dict | None:
    for entry in entries:
        if entry["kind"] == kind:
            return entry
    return None


# -- the undo of each kind ----------------------------------------------------------------

def _undo_process(entry: dict) -> None:
    """Kill the container's first process if it is still that process, and wait for it."""
    import _signal as signal
    import time
    from hutch.errors import StateError
    from hutch.oci.container import signal_pid     # pins the pid: never a recycled one
    from hutch.syscall import proc
    pid, start = entry.get("pid") or 0, entry.get("start")
    if not pid or not proc.is_alive(pid, start):
        return
    try:
        signal_pid(pid, signal.SIGKILL, start)
    except StateError:
        return                                       # gone meanwhile
    deadline = time.monotonic() + 10
    while proc.is_alive(pid, start) and time.monotonic() < deadline:
        time.sleep(0.005)


def _undo_cgroup(entry: dict) -> None:
    """Kill what is left in the cgroup, then remove it.  The entry is written before the
    directories exist, so the container's own leaf directories count as owned even when
    the crash came before their names reached the entry (runc removes the path too)."""
    from hutch import cgroups
    data = {k: v for k, v in entry.items() if k != "kind"}
    if data.get("driver") == "systemd":
        # The unit starts inside add_pid: a crash (or a refused limit) there comes before
        # the entry says so.  Stopping a unit that never started is a harmless NoSuchUnit.
        data["started"] = True
    manager = cgroups.from_state(data)
    backend = getattr(manager, "fs", manager)
    backend.created = sorted(set(backend.created) | {d for d in backend.leaf_dirs() if os.path.isdir(d)})
    if manager.exists():
        import _signal as signal
        try:
            manager.thaw()
        except HutchError:
            pass
        manager.kill_all(signal.SIGKILL)
        manager.wait_empty(timeout=5.0)
    manager.destroy()


def _undo_mount(entry: dict) -> None:
    """A host-side mount (a namespace pin, a volume): detach it; gone already is fine."""
    from hutch import syscall
    try:
        syscall.umount2(entry["path"], syscall.MNT_DETACH)
    except SysCallError as exc:
        if exc.errno not in (2, 22):             # ENOENT, EINVAL (not a mount point any more)
            raise


def _undo_file(entry: dict) -> None:
    try:
        os.unlink(entry["path"])
    except FileNotFoundError:
        pass


def _undo_net(entry: dict) -> None:
    """A bridge network joined (net/attach.py): ports, veth, lease, the network's live
    part if it was the last member."""
    from hutch.net.attach import undo
    undo(entry)


def _undo_cni(entry: dict) -> None:
    """A CNI network joined (net/cni.py): DEL through the plugins, from the cached result."""
    from hutch.net.cni import undo
    undo(entry)


UNDO = {"process": _undo_process, "cgroup": _undo_cgroup, "mount": _undo_mount, "file": _undo_file,
        "net": _undo_net, "cni": _undo_cni}


def register(kind: str, undo) -> None:
    """Add the undo of a kind owned by a layer above oci/ (idempotent, raises HutchError)."""
    UNDO[kind] = undo
