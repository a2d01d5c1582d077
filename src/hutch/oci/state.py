"""Container state on disk: one directory per container under the runtime root.

Layout (``ROOT`` defaults to /run/hutch, runc's ``--root``)::

    ROOT/<id>/state.json   the record below, replaced atomically (write + rename)
    ROOT/<id>/exec.fifo    exists while the container is "created" (see launcher)
    ROOT/<id>/.lock        flock()ed by any command changing this container

The record keeps everything the container owns so that ``delete`` (and a crash
recovery) can undo it: cgroup paths, network namespaces and mounts, and the pid
with its start time so a recycled pid is never taken for the container.
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
    # What the container owns, for cleanup and for the tools:
    namespaces: dict = field(default_factory=dict)   # OCI type -> path it was joined from or "new"
    cgroup: dict = field(default_factory=dict)       # {"driver": "v1"|"v2"|"systemd", "paths": {...}}
    network: dict = field(default_factory=dict)      # reserved for net/: netns path, veths, ...
    mounts: list = field(default_factory=list)       # host-side mounts to undo on delete
    systemd_cgroup: bool = False
    exit_status: int | None = None

    def live_status(self) -> str:
        """created/running/stopped as the OCI spec defines them, from the process itself."""
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


def save(root: str, state: State) -> None:
    """Write state.json by writing a temp file and renaming it: readers never see it torn."""
    path = os.path.join(container_dir(root, state.id), "state.json")
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(fastjson.dumps(asdict(state)))
    os.rename(tmp, path)


def load(root: str, container_id: str) -> State:
    path = os.path.join(container_dir(root, container_id), "state.json")
    try:
        with open(path) as f:
            data = fastjson.loads(f.read(), where=path)
    except FileNotFoundError:
        raise NotFoundError(f"container {container_id} does not exist") from None
    known = {f.name for f in fields(State)}
    return State(**{k: v for k, v in data.items() if k in known})


def list_states(root: str = DEFAULT_ROOT) -> list[State]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if name.startswith(".") or not os.path.isdir(os.path.join(root, name)):
            continue  # lock files and anything else that is not a container directory
        try:
            out.append(load(root, name))
        except (HutchError, OSError, ValueError, TypeError):
            continue
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
