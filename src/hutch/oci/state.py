"""Container state on disk: one directory per container under the runtime root.

Layout (``ROOT`` defaults to /run/hutch, runc's ``--root``)::

    ROOT/<id>/state.json   the record below, replaced atomically (write + rename)
    ROOT/<id>/owned.jsonl  what the container owns, appended before it is made (owned.py)
    ROOT/<id>/config.json  the config the container was created with: exec, kill, delete
                           and hooks use it, never the bundle's (which may change or go)
    ROOT/<id>/exec.fifo    exists while the container is "created" (see launcher)
    ROOT/.<id>.lock        flock()ed by any command changing this container

state.json keeps the pid with its start time, so a recycled pid is never taken for
the container, the status as last recorded and the exit status once known.
"""

from __future__ import annotations

import fcntl
import os
import stat
from hutch.record import asdict, dataclass, field, fields

from hutch import fastjson
from hutch.errors import ConfigError, HutchError, NotFoundError, StateError
from hutch.syscall import proc

DEFAULT_ROOT = "/run/hutch"


def default_root() -> str:
    """/run/hutch for root (runc: /run/runc); a per-user directory otherwise."""
    if os.geteuid() == 0:
        return DEFAULT_ROOT
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(runtime_dir, "hutch") if runtime_dir else f"/tmp/hutch-{os.geteuid()}"
OCI_VERSION = "1.2.0"


@dataclass
class State:
    id: str
    bundle: str
    pid: int = 0
    pid_start: int | None = None
    status: str = "creating"          # creating, created, running, stopped (as last recorded)
    created: str = ""                 # RFC 3339 timestamp
    owner: str = ""
    rootfs: str = ""
    annotations: dict = field(default_factory=dict)
    config_path: str = ""             # the config.json the container was created from
    namespaces: dict = field(default_factory=dict)   # OCI type -> path it was joined from or "new"
    systemd_cgroup: bool = False
    exit_status: int | None = None    # the program's, once a caller that waited for it knows
    # The hook kinds the saved config has (None: a state from before this field): start
    # and delete read and parse the config only when it has hooks for them to run.
    hooks: list | None = None

    # Not saved in state.json: `owned` is read from the journal (owned.py), `damaged`
    # says why state.json could not be read (the container is listed, and delete --force
    # still undoes what the journal names).
    owned: list = field(default_factory=list, repr=False)
    damaged: str = field(default="", repr=False)

    @property
    def cgroup(self) -> dict:
        """The cgroup manager's saved form ({} without a cgroup): cgroups.from_state() takes it."""
        from hutch.oci.owned import find
        entry = find(self.owned, "cgroup")
        return {k: v for k, v in entry.items() if k != "kind"} if entry else {}

    def live_status(self) -> str:
        """created/running/stopped as the OCI spec defines them, from the process itself."""
        if self.damaged:
            return "unknown"
        if self.status == "creating":
            return "creating"
        if not proc.is_alive(self.pid, self.pid_start):
            return "stopped"
        if self.status == "paused":
            return "paused"
        return self.status if self.status in ("created", "running") else "running"

    def oci(self, status: str | None = None, pid: int | None = None) -> dict:
        """The state object of the runtime spec (what `state` prints and hooks read);
        status and pid as the process shows them unless given (hooks name the phase)."""
        status = status or self.live_status()
        if pid is None:
            pid = self.pid if status != "stopped" else 0
        return oci_state(self.id, status, pid, self.bundle, self.annotations)

    def listing(self) -> dict:
        """What `state` and `list --format json` print: the OCI state plus runc's extras."""
        out = self.oci()
        out.update(rootfs=self.rootfs, created=self.created, owner=self.owner)
        return out


def oci_state(container_id: str, status: str, pid: int, bundle: str, annotations: dict | None) -> dict:
    out = {"ociVersion": OCI_VERSION, "id": container_id, "status": status, "pid": pid, "bundle": bundle}
    if annotations:
        out["annotations"] = annotations
    return out


def validate_id(container_id: str) -> str:
    if (not container_id or container_id in (".", "..")
            or not all(c.isalnum() or c in "_+-." for c in container_id) or not container_id.isascii()):
        raise ConfigError(f"invalid container id {container_id!r}: use letters, digits, _ + - .",
                          where="container id")
    return container_id


def container_dir(root: str, container_id: str) -> str:
    return os.path.join(root, validate_id(container_id))


_NOT_SAVED = ("owned", "damaged")


def save(root: str, state: State) -> None:
    """Write state.json by writing a temp file and renaming it: readers never see it torn."""
    path = os.path.join(container_dir(root, state.id), "state.json")
    tmp = f"{path}.{os.getpid()}.tmp"
    data = asdict(state)
    for name in _NOT_SAVED:
        data.pop(name, None)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(fastjson.dumps(data))
    os.rename(tmp, path)


def own(root: str, state: State, entry: dict) -> dict:
    """Record that the container is about to own entry's thing (caller holds the lock)."""
    from hutch.oci.owned import key_of, record
    record(container_dir(root, state.id), entry)
    key = key_of(entry)
    for i, old in enumerate(state.owned):
        if key_of(old) == key:
            state.owned[i] = entry
            return entry
    state.owned.append(entry)
    return entry


def load(root: str, container_id: str, warn=None) -> State:
    """The container's state.  A state.json that cannot be read raises StateError
    naming the file; use load_any() where a damaged state must still be handled."""
    state = load_any(root, container_id, warn)
    if state.damaged:
        raise StateError(state.damaged, where="state")
    return state


def load_any(root: str, container_id: str, warn=None) -> State:
    """The state, or for a damaged state.json a State with `damaged` set, its id and what
    the journal says it owns (so that delete --force can still undo it)."""
    from hutch.oci.owned import read
    directory = container_dir(root, container_id)
    path = os.path.join(directory, "state.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        if not os.path.isdir(directory):
            raise NotFoundError(f"container {container_id} does not exist") from None
        state = State(id=container_id, bundle="", damaged=f"container {container_id} has no state.json "
                      "(its create was killed before saving it)")
    else:
        state = _decode(raw, path, container_id)
    state.owned = read(directory, warn) or state.owned
    return state


# What a state.json hand-edited or written by something else must still satisfy.
_FIELD_TYPES = {"bundle": str, "pid": int, "pid_start": (int, type(None)), "status": str,
                "created": str, "owner": str, "rootfs": str, "annotations": dict,
                "config_path": str, "namespaces": dict, "systemd_cgroup": bool,
                "exit_status": (int, type(None)), "hooks": (list, type(None))}


def _decode(raw: bytes, path: str, container_id: str) -> State:
    try:
        data = fastjson.loads(raw, where=path)
        if not isinstance(data, dict) or data.get("id") != container_id:
            raise ConfigError("not the state of this container", where=path)
        for name, types in _FIELD_TYPES.items():
            if name in data and not isinstance(data[name], types):
                raise ConfigError(f"field {name!r} has the wrong type", where=path)
        known = {f.name for f in fields(State)} - set(_NOT_SAVED)
        state = State(**{k: v for k, v in data.items() if k in known})
        if data.get("cgroup"):
            # Saved by a hutch from before the journal: its cgroup was a field here.
            state.owned = [{"kind": "cgroup", **data["cgroup"]}]
        return state
    except (HutchError, TypeError) as err:
        return State(id=container_id, bundle="", damaged=f"state of container {container_id} "
                     f"is unreadable: {err}")


def list_states(root: str = DEFAULT_ROOT, warn=None) -> list[State]:
    """Every container under root; a damaged one is included (status "unknown") and
    reported through warn."""
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if name.startswith(".") or not os.path.isdir(os.path.join(root, name)):
            continue  # lock files and anything else that is not a container directory
        try:
            state = load_any(root, name)
        except (HutchError, OSError):
            continue   # removed while we looked, or not a container id
        if state.damaged and warn:
            warn(state.damaged)
        out.append(state)
    return out


class locked:
    """`with locked(root, id) as directory:` holds an exclusive flock on the container's
    lock file.  (A class, not @contextmanager: contextlib costs 3 ms on the start path.)"""

    def __init__(self, root: str, container_id: str, create: bool = False):
        self.args = (root, container_id, create)
        self.fd = -1

    def __enter__(self) -> str:
        directory, self.fd = _lock(*self.args)
        return directory

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def is_locked(root: str, container_id: str) -> bool:
    """True while some command holds the container's lock (e.g. a create in progress)."""
    try:
        fd = os.open(os.path.join(root, f".{container_id}.lock"), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _lock(root: str, container_id: str, create: bool) -> tuple[str, int]:
    directory = container_dir(root, container_id)
    if create:
        os.makedirs(root, mode=0o711, exist_ok=True)
        info = os.lstat(root)
        owner = info.st_uid
        if not stat.S_ISDIR(info.st_mode) or info.st_mode & 0o022:
            raise StateError(f"runtime root {root} must be a directory writable only by its owner",
                             where="--root")
        if owner != os.geteuid():
            # e.g. a /tmp/hutch-UID made by someone else to watch or steer our containers
            raise StateError(f"runtime root {root} belongs to uid {owner}, not to us", where="--root")
    elif not os.path.isdir(directory):
        raise NotFoundError(f"container {container_id} does not exist")
    lock_path = os.path.join(root, f".{container_id}.lock")
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # `delete` unlinks the lock file while holding it: a waiter that then gets the
            # lock on the old inode must retry on the current file, or two could "hold" it.
            if os.fstat(fd).st_ino == os.stat(lock_path).st_ino:
                return directory, fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
