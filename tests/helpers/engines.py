"""Real container engines driving the OCI runtime under test: podman (with conmon) and
containerd (ctr + its runc shim), each fully private to the test session.

Everything lives under one temp directory: podman's storage root/runroot/tmpdir/network
config, containerd's root/state/socket, the image tarballs.  Nothing here talks to a
registry: the image is built from the busybox rootfs fixture.

The runtime is given to the engines through a tiny wrapper script that appends each argv it
is called with to a log file and then execs the real runtime.  The wrapper carries the
runtime's own basename (`runc`, `hutch`) because podman decides per runtime name whether
to pass `--log-format=json`; an engine therefore calls the wrapper exactly as it would call
the runtime.  The log is what a failing test prints, and what tells the runtime's author
which command lines the engines really use.

Cleanup is defensive and always runs (fixture finalizers): engine-level removal first,
then anything the engines may leave (overlay mounts under the temp root, shims, conmon,
cgroups named by the engines, netavark's nft tables), each only if this session created it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from helpers.host import kill_pids

IMAGE = "localhost/hutch-test-busybox:1"
CTR_NAMESPACE = "hutch-test"
# The podman network used as the default one: a bridge of our own name and subnet so that
# it cannot collide with a podman0 someone else uses (and the leak scan sees it if left).
# Numbered per test process: two test sessions at once get distinct bridges, subnets and
# netavark IPAM entries (its database, /run/containers/networks/ipam.db, is global).
_NET_INDEX = 20 + os.getpid() % 200
NETWORK_NAME = f"hutchtest{_NET_INDEX}"
BRIDGE_NAME = f"hutchtest{_NET_INDEX}"
SUBNET = f"10.231.{_NET_INDEX}.0/24"
GATEWAY = f"10.231.{_NET_INDEX}.1"
ULIMITS = ["nofile=20000:20000", "nproc=32768:32768"]
CGROUP_ROOT = Path("/sys/fs/cgroup")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run(argv, *, timeout: float = 60, check: bool = False, input=None, env=None,
        **kw) -> subprocess.CompletedProcess:
    """Run a command, capture text output; on check failure raise with both streams.

    The command gets its own process group, and on timeout the whole group is killed:
    an engine stuck on a hanging runtime takes the runtime processes it started (in its
    group) down with it instead of leaving them behind."""
    argv = [str(a) for a in argv]
    with subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          start_new_session=True, **kw) as p:
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.communicate()
            raise
    proc = subprocess.CompletedProcess(argv, p.returncode, out, err)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} -> exit {proc.returncode}\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


# ---------------------------------------------------------------- images (stdlib only)

def rootfs_tar(rootfs: Path, dest: Path) -> Path:
    """A plain tarball of the rootfs (what `podman import` takes)."""
    with tarfile.open(dest, "w") as tar:
        for entry in sorted(Path(rootfs).iterdir()):
            tar.add(entry, arcname=entry.name)
    return dest


def _blob(blobs: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def oci_archive(rootfs: Path, dest: Path, ref: str = IMAGE, cmd: tuple[str, ...] = ("sh",)) -> Path:
    """Write an OCI image-layout tarball (one uncompressed layer) for `ctr images import`.
    `cmd` is the image's default command (the CRI tests need one that keeps running, to
    serve as the pod's pause container).

    The image name goes in the `io.containerd.image.name` annotation of the index entry,
    which is how containerd names an imported image; `org.opencontainers.image.ref.name`
    carries the tag as the layout spec wants."""
    work = dest.with_suffix(".layout")
    blobs = work / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layer = rootfs_tar(rootfs, work / "layer.tar").read_bytes()
    (work / "layer.tar").unlink()
    layer_desc = _blob(blobs, layer)
    config = {
        "architecture": "amd64" if os.uname().machine == "x86_64" else os.uname().machine,
        "os": "linux",
        "config": {"Env": [PATH_ENV], "Cmd": list(cmd), "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        "history": [{"created_by": "hutch tests: busybox rootfs"}],
    }
    config_desc = _blob(blobs, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
    }
    manifest_desc = _blob(blobs, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest_desc,
            "annotations": {"io.containerd.image.name": ref,
                            "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[-1]},
        }],
    }
    (work / "index.json").write_text(json.dumps(index))
    (work / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    with tarfile.open(dest, "w") as tar:
        for name in ("oci-layout", "index.json", "blobs"):
            tar.add(work / name, arcname=name)
    shutil.rmtree(work)
    return dest


# ---------------------------------------------------------------- runtime wrapper

def runtime_wrapper(runtime: str, directory: Path, log: Path) -> Path:
    """A shell script named like the runtime that logs its argv (one line per call,
    prefixed with the pid) and execs the runtime unchanged."""
    directory.mkdir(parents=True, exist_ok=True)
    wrapper = directory / Path(runtime).name
    wrapper.write_text(
        "#!/bin/sh\n"
        f"{{ printf '%s' \"$$\"; for a in \"$@\"; do printf ' %s' \"$a\"; done; echo; }} >> '{log}'\n"
        f"exec '{runtime}' \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


def keep_calls_log(log: Path | None, base: Path) -> None:
    """Copy the runtime-call log next to the (about to be removed) engine directory, e.g.
    /tmp/pytest-of-root/pytest-N/podman0-runtime-calls.log, for reading after the run."""
    if log and log.exists():
        shutil.copy(log, base.parent / f"{base.name}-runtime-calls.log")


def read_calls(log: Path) -> list[str]:
    """The runtime command lines logged by the wrapper so far (without the pid)."""
    try:
        lines = log.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [line.split(" ", 1)[1] if " " in line else "" for line in lines]


def created_containers(log: Path) -> list[tuple[str | None, str]]:
    """(runtime --root or None, container id) of every `create` the engine made."""
    found = []
    for call in read_calls(log):
        words = call.split()
        if "create" not in words or not words:
            continue
        root = words[words.index("--root") + 1] if "--root" in words[:words.index("create")] else None
        found.append((root, words[-1]))
    return found


def force_delete_leftovers(runtime: str, log: Path | None) -> None:
    """Last resort: any container the engine created that the runtime still knows about
    (the engine lost track of it, e.g. after a runtime crash) is deleted by the runtime."""
    if not log:
        return
    for root, cid in created_containers(log):
        prefix = [runtime] + (["--root", root] if root else [])
        try:
            if run([*prefix, "state", cid], timeout=20).returncode == 0:
                run([*prefix, "delete", "--force", cid], timeout=20)
        except subprocess.TimeoutExpired:
            pass


def kill_session_processes(base: Path | None, log: Path | None) -> None:
    """SIGKILL what is left of this session: processes naming our private directory
    (conmon, shims, `runtime create --bundle`; skipped when base is None), or a container
    id we created (a hung `runtime start/kill/delete ID`)."""
    if base is not None:
        kill_pids(pids_with_cmdline(str(base)))
    for _, cid in created_containers(log) if log else ():
        kill_pids(pids_with_cmdline(cid))


class EngineHung(AssertionError):
    """An engine command did not finish: the runtime under test hangs."""


class _Guarded:
    """Engine commands with a hang guard.  The first command that times out marks the engine
    broken (and kills the hung runtime processes); later test commands then fail at once
    with that first diagnosis instead of each waiting out its own timeout."""
    broken: str | None = None
    COMMAND_TIMEOUT = 30    # a healthy engine+runtime answers in well under a second

    def recover_from_hang(self) -> None:
        """Kill the runtime processes of our containers (after a command hung on them)."""
        kill_session_processes(None, self.calls_log)

    def _guarded(self, argv, *, timeout=None, cleanup=False, **kw):
        if self.broken and not cleanup:
            raise EngineHung(f"engine unusable since an earlier hang: {self.broken}")
        try:
            return run(argv, timeout=timeout or self.COMMAND_TIMEOUT, **kw)
        except subprocess.TimeoutExpired:
            hung = [c for c in self.calls() if c][-3:]
            self.broken = (f"`{' '.join(map(str, argv[-6:]))}` timed out; last runtime calls: "
                           + " | ".join(hung))
            kill_session_processes(None, self.calls_log)
            if cleanup:
                return None
            raise EngineHung(self.broken) from None


def quietly(fn, *args, **kw):
    """Run one cleanup step; a step that hangs or fails must not stop the next ones."""
    try:
        return fn(*args, **kw)
    except (subprocess.TimeoutExpired, OSError, AssertionError):
        return None


# ---------------------------------------------------------------- host-state helpers

def mounts_under(base: Path) -> list[str]:
    """Mount points below base, deepest first (the order to unmount them in)."""
    prefix = str(base).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target.startswith(prefix) or target == str(base):
                found.append(target)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount_under(base: Path) -> list[str]:
    """Lazily unmount everything below base (overlay rootfs, shm, netns files...)."""
    left = mounts_under(base)
    for target in left:
        run(["umount", "-l", target], timeout=20)
    return left


def cgroup_dirs(relative: str) -> list[Path]:
    """The directories named `relative` in every mounted hierarchy (v1 and the v2 one)."""
    return [ctl / relative for ctl in CGROUP_ROOT.iterdir() if (ctl / relative).is_dir()] \
        if CGROUP_ROOT.is_dir() else []


def remove_cgroup_tree(path: Path) -> None:
    """rmdir a cgroup and its children, deepest first; a busy one is left (and reported by
    the leak scan) rather than forced."""
    if not path.is_dir():
        return
    children = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                      reverse=True)
    for d in [*children, path]:
        try:
            d.rmdir()
        except OSError:
            pass


def _ancestors() -> set[int]:
    """This process and its parents (never killed, whatever their command line says)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def pids_with_cmdline(fragment: str) -> list[int]:
    """Pids whose command line contains fragment (used with a path unique to this session)."""
    found = []
    needle = fragment.encode()
    spared = _ancestors()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in spared:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def nft_tables() -> set[str]:
    out = run(["nft", "list", "tables"], timeout=20).stdout if shutil.which("nft") else ""
    return {line.strip() for line in out.splitlines() if line.startswith("table ")}


def _only_netavark(table: str) -> bool:
    """True when an nft table holds nothing but netavark's empty scaffolding: its generic
    chains and the base chains iptables-nft made to jump into them (what netavark 1.4
    leaves behind once its last container is gone).  A rule naming an address means a
    network is still in use (another test session's container, say): keep the table."""
    out = run(["nft", "list", *table.split()], timeout=20).stdout
    chain = None
    for raw in out.splitlines():
        line = raw.strip()
        if line.startswith("chain "):
            chain = line.split()[1]
        elif not line or line in ("}", "{") or line.startswith(("table ", "type ", "#")):
            continue
        elif re.search(r"\d+\.\d+\.\d+\.\d+", line):
            return False
        elif chain and not chain.startswith("NETAVARK") and "NETAVARK" not in line:
            return False
    return True


def drop_netavark_tables(before: set[str]) -> None:
    """Delete nft tables that appeared during the session and hold only netavark rules."""
    for table in sorted(nft_tables() - before):
        if _only_netavark(table):
            run(["nft", "delete", *table.split()], timeout=20)


# ---------------------------------------------------------------- podman

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def restore_ip_forward(before: str) -> None:
    """netavark switches the host's IPv4 forwarding on for every bridge network it sets up
    (and never back off): put the host's setting back (writing it resets every
    interface's forwarding to the same value, as it was)."""
    if before and IP_FORWARD.read_text() != before:
        IP_FORWARD.write_text(before)


@dataclass
class Podman(_Guarded):
    """podman with a private storage root, runroot, tmpdir and network config."""
    base: Path
    runtime: str            # the real runtime under test
    wrapper: Path = None    # what podman is given as --runtime
    calls_log: Path = None
    cgroups_before: set = field(default_factory=set)
    nft_before: set = field(default_factory=set)
    ip_forward_before: str = ""

    @property
    def dirs(self) -> dict[str, Path]:
        return {n: self.base / n for n in ("root", "runroot", "tmp", "net", "wrap", "images")}

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(CONTAINERS_CONF=str(self.base / "containers.conf"),
                   CONTAINERS_STORAGE_CONF=str(self.base / "storage.conf"),
                   TMPDIR=str(self.dirs["tmp"]))
        return env

    def argv(self, *args) -> list[str]:
        d = self.dirs
        return ["podman", "--root", d["root"], "--runroot", d["runroot"], "--tmpdir", d["tmp"],
                "--network-config-dir", d["net"], "--cgroup-manager", "cgroupfs",
                "--events-backend", "file", "--storage-driver", "overlay",
                "--runtime", str(self.wrapper), *map(str, args)]

    def __call__(self, *args, timeout: float | None = None, check: bool = False,
                 cleanup: bool = False, **kw):
        return self._guarded(self.argv(*args), timeout=timeout, check=check, env=self.env(),
                             cleanup=cleanup, **kw)

    def remove_containers(self) -> None:
        """Force-remove every container (after each test); a hung runtime is killed first."""
        if self("rm", "--all", "--force", "--time", "0", timeout=60, cleanup=True) is None:
            self("rm", "--all", "--force", "--time", "0", timeout=60, cleanup=True)

    def calls(self) -> list[str]:
        return read_calls(self.calls_log)

    def runtime_logs(self) -> str:
        """What the runtime wrote to the `--log <runroot>/.../userdata/oci-log` podman gave it
        (podman also quotes the error from it on its stderr)."""
        return _tail_files(self.dirs["runroot"].glob("overlay-containers/*/userdata/oci-log"))

    def setup(self, rootfs: Path) -> None:
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        self.calls_log = self.base / "runtime-calls.log"
        self.wrapper = runtime_wrapper(self.runtime, self.dirs["wrap"], self.calls_log)
        self.cgroups_before = {str(p) for p in cgroup_dirs("libpod_parent")}
        self.nft_before = nft_tables()
        self.ip_forward_before = IP_FORWARD.read_text()
        (self.base / "containers.conf").write_text(
            "[containers]\n"
            f"default_ulimits = {json.dumps(ULIMITS)}\n"
            "[network]\n"
            'network_backend = "netavark"\n'
            f'default_network = "{NETWORK_NAME}"\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            # podman passes `--log-format=json --log FILE` only to runtimes named here (and
            # reads errors back from FILE): give hutch the same command lines as runc.
            f'runtime_supports_json = ["crun", "runc", "{Path(self.runtime).name}"]\n')
        (self.base / "storage.conf").write_text(
            '[storage]\ndriver = "overlay"\n'
            f'runroot = "{self.dirs["runroot"]}"\ngraphroot = "{self.dirs["root"]}"\n')
        (self.dirs["net"] / f"{NETWORK_NAME}.json").write_text(json.dumps({
            "name": NETWORK_NAME, "id": hashlib.sha256(NETWORK_NAME.encode()).hexdigest(),
            "driver": "bridge", "network_interface": BRIDGE_NAME,
            "created": "2026-01-01T00:00:00Z",
            "subnets": [{"subnet": SUBNET, "gateway": GATEWAY}],
            "ipv6_enabled": False, "internal": False, "dns_enabled": False,
            "ipam_options": {"driver": "host-local"}}))
        tarball = rootfs_tar(rootfs, self.dirs["images"] / "rootfs.tar")
        self("import", tarball, IMAGE, check=True, timeout=120)

    def cleanup(self) -> None:
        """Remove every container (netavark tears the network down then), the storage,
        and whatever podman leaves on the host: mounts, conmon, cgroups, nft tables."""
        quietly(self.remove_containers)
        quietly(self, "system", "reset", "--force", timeout=60, cleanup=True)
        quietly(force_delete_leftovers, self.runtime, self.calls_log)
        kill_session_processes(self.base, self.calls_log)
        unmount_under(self.base)
        for path in cgroup_dirs("libpod_parent"):
            if str(path) not in self.cgroups_before:
                remove_cgroup_tree(path)
        drop_netavark_tables(self.nft_before)
        restore_ip_forward(self.ip_forward_before)
        keep_calls_log(self.calls_log, self.base)
        shutil.rmtree(self.base, ignore_errors=True)


# ---------------------------------------------------------------- containerd

def private_containerd_config(base: Path, socket: Path, top=()) -> list[str]:
    """The lines a private containerd's config starts with: its own root, state and
    sockets under base (top: more top-level keys, which TOML wants before any table)."""
    return ["version = 2", f'root = "{base / "root"}"', f'state = "{base / "state"}"', *top,
            "[grpc]", f'  address = "{socket}"', "[ttrpc]", f'  address = "{socket}.ttrpc"',
            "[debug]", '  level = "info"']


@dataclass
class Containerd(_Guarded):
    """A containerd daemon on a private socket, root and state (CRI plugin disabled)."""
    base: Path
    runtime: str
    wrapper: Path = None
    calls_log: Path = None
    proc: subprocess.Popen = None
    cgroups_before: set = field(default_factory=set)

    @property
    def socket(self) -> Path:
        return self.base / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return self.base / "runc-root"

    def ctr_argv(self, *args) -> list[str]:
        return ["ctr", "-a", str(self.socket), "-n", CTR_NAMESPACE, *map(str, args)]

    def ctr(self, *args, timeout: float | None = None, check: bool = False,
            cleanup: bool = False, **kw):
        return self._guarded(self.ctr_argv(*args), timeout=timeout, check=check,
                             cleanup=cleanup, **kw)

    @staticmethod
    def cid(short: str) -> str:
        """A container id unique to this test process: ctr puts a container in the cgroup
        /<namespace>/<id>, shared by every containerd on the machine."""
        return f"hutch-c-{short}-{os.getpid()}"

    def run_args(self) -> list[str]:
        """The options every `ctr run` gets: our runtime and a private runtime root."""
        return ["--runc-binary", str(self.wrapper), "--runc-root", str(self.runc_root)]

    def calls(self) -> list[str]:
        return read_calls(self.calls_log)

    def runtime_logs(self) -> str:
        """The shim's `--log <bundle>/log.json` of containers that still exist."""
        return _tail_files((self.base / "state").glob(
            f"io.containerd.runtime.v2.task/{CTR_NAMESPACE}/*/log.json"))

    def start(self, rootfs: Path) -> None:
        for d in ("root", "state", "images", "wrap"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        self.runc_root.mkdir(parents=True, exist_ok=True)
        self.calls_log = self.base / "runtime-calls.log"
        self.wrapper = runtime_wrapper(self.runtime, self.base / "wrap", self.calls_log)
        self.cgroups_before = {str(p) for p in cgroup_dirs(CTR_NAMESPACE)}
        config = self.base / "config.toml"
        config.write_text("\n".join(private_containerd_config(
            self.base, self.socket, top=['disabled_plugins = ["io.containerd.grpc.v1.cri"]'])) + "\n")
        log = open(self.base / "containerd.log", "w")
        self.proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        self._wait_ready()
        archive = oci_archive(rootfs, self.base / "images" / "busybox.oci.tar")
        self.ctr("images", "import", archive, check=True, timeout=120)

    def _wait_ready(self, limit: float = 30) -> None:
        """Poll `ctr version` until the daemon answers (it boots in tens of ms)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("containerd exited: " + (self.base / "containerd.log").read_text())
            if self.socket.exists() and self.ctr("version", timeout=10).returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("containerd did not answer on its socket")

    def remove_all(self) -> None:
        """Kill and delete every task and container in our namespace."""
        listed = self.ctr("containers", "list", "--quiet", cleanup=True)
        for cid in listed.stdout.split() if listed else ():
            for step in (("task", "kill", "--signal", "SIGKILL", cid),
                         ("task", "delete", "--force", cid),
                         ("containers", "delete", cid), ("snapshots", "remove", cid)):
                self.ctr(*step, cleanup=True)

    def stop(self) -> None:
        """Remove all containers and images, stop the daemon, then sweep what is left:
        shims (they outlive the daemon by design), container processes, mounts, cgroups."""
        if self.proc and self.proc.poll() is None:
            quietly(self.remove_all)
            quietly(self.ctr, "images", "remove", IMAGE, cleanup=True)
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        # Containers still known to the runtime (a shim that died early): delete them through
        # the real runtime, then shims and anything else naming our private directories.
        quietly(force_delete_leftovers, self.runtime, self.calls_log)
        kill_session_processes(self.base, self.calls_log)
        unmount_under(self.base)
        for path in cgroup_dirs(CTR_NAMESPACE):
            if str(path) not in self.cgroups_before:
                remove_cgroup_tree(path)
        keep_calls_log(self.calls_log, self.base)
        shutil.rmtree(self.base, ignore_errors=True)


# ---------------------------------------------------------------- terminals

def run_in_pty(argv, *, env=None, rows: int = 24, cols: int = 80, send: bytes | None = None,
               wait_for: bytes | None = None, timeout: float = 30,
               on_timeout=None) -> tuple[int, str]:
    """Run argv with a new pty as its controlling terminal and stdio, the window size set
    before it starts.  If `send` is given it is typed once `wait_for` shows up in the output
    (a prompt).  Returns (exit code, everything the terminal showed)."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    # After dup2 and setsid, make the pty (now fd 0) our controlling terminal.
    proc = subprocess.Popen([str(a) for a in argv], stdin=slave, stdout=slave, stderr=slave,
                            env=env, start_new_session=True,
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if send is not None and (wait_for is None or wait_for in output):
                os.write(master, send)
                send = None
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None and not select.select([master], [], [], 0.2)[0]:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:      # EIO: every slave fd is closed
                break
            if not chunk:
                break
            output += chunk
        else:
            os.killpg(proc.pid, signal.SIGKILL)   # hung: the engine and what it started
            if on_timeout:
                on_timeout()
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return code, output.decode(errors="replace").replace("\r\n", "\n")


def explain(engine, since: int = 0, extra: str = "") -> str:
    """Failure context: the runtime argv the engine used since call number `since`, and
    what the runtime wrote to the --log files the engine gave it (still present ones)."""
    calls = engine.calls()[since:]
    text = "runtime calls:\n" + "\n".join(f"  {c}" for c in calls[-40:])
    logs = engine.runtime_logs()
    if logs:
        text += "\nruntime --log files:\n" + logs
    return text + (f"\n{extra}" if extra else "")


def _tail_files(paths, limit: int = 2000) -> str:
    out = []
    for path in sorted(paths):
        try:
            data = path.read_text(errors="replace").strip()
        except OSError:
            continue
        if data:
            out.append(f"  {path}:\n    " + data[-limit:].replace("\n", "\n    "))
    return "\n".join(out)
