"""A real systemd, booted as PID 1 of a throw-away machine, for the systemd cgroup driver.

This VM's PID 1 is not systemd, so the tests boot the host's own systemd (the Debian
package's /lib/systemd/systemd) in new mount, PID, cgroup, UTS, IPC and network
namespaces, the way systemd-nspawn would:

* its root is a tmpfs with read-only binds of /usr, /etc and the hutch checkout, and
  fresh /run /tmp /var /dev; the tests' temporary directory is bound in read-write
  at the same path, so bundles made on the host are seen inside;
* its cgroups are a directory ``hutch-test-sd-<pid>`` in every hierarchy of the host,
  mounted read-write in its cgroup namespace (the host's layout: hybrid here, or a
  cgroup2-only tree; ``layout="unified"`` mounts only cgroup2, so systemd runs in its
  unified mode even on a hybrid host);
* it boots to a target of its own that pulls in nothing but D-Bus.

Commands run inside with ``systemd-run --wait --pipe``, as transient services: in a
cgroup systemd made, as runc is under containerd's service.  `stop()` kills PID 1
(the namespaces and mounts go with it) and removes the cgroup directories.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hutch.syscall import proc

CGROUP_ROOT = "/sys/fs/cgroup"
SYSTEMD_BIN = "/lib/systemd/systemd"
REPO = str(Path(__file__).resolve().parents[2])
# what the runtimes under test need inside: the checkout, its venv and the Python
# installation behind it, where they are not under the checkout or /usr
BIND_READ_ONLY = [REPO] + sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)
                                  if not os.path.realpath(p).startswith((REPO + "/", "/usr"))})

BOOT_SCRIPT = r"""
set -e
R=$1; SHARED=$2; LAYOUT=$3; shift 3
mount --make-rprivate /
mount -t tmpfs -o mode=755 hutch-machine "$R"
cd "$R"
mkdir -p usr etc proc sys dev run tmp var root oldroot
for l in bin sbin lib lib32 lib64 libx32; do [ -L /$l ] && ln -s "$(readlink /$l)" $l; done
robind() { mkdir -p ".$1"; mount --bind "$1" ".$1"; mount -o remount,bind,ro ".$1"; }
mount -t tmpfs -o mode=755 tmpfs var; mkdir -p var/tmp var/lib var/log
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs tmp
# after the fresh /tmp, /var: the checkout or the tests' directory may live there
robind /usr; robind /etc
for d in "$@"; do robind "$d"; done
mkdir -p ".$SHARED"; mount --bind "$SHARED" ".$SHARED"
mount -t tmpfs -o mode=755,nosuid tmpfs dev
for n in null zero full random urandom tty fuse; do touch dev/$n; mount --bind /dev/$n dev/$n; done
mkdir dev/pts dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts dev/pts; ln -s pts/ptmx dev/ptmx
mount -t tmpfs -o mode=1777 tmpfs dev/shm
mount -t proc proc proc
mount -t sysfs -o ro sysfs sys
if [ "$LAYOUT" = unified ]; then
  mount -t cgroup2 cgroup2 sys/fs/cgroup
else
  mount -t tmpfs -o mode=755 cgroup sys/fs/cgroup
  for h in $HIERARCHIES; do
    mkdir sys/fs/cgroup/$h
    case $h in
      systemd) mount -t cgroup -o none,name=systemd cgroup sys/fs/cgroup/$h ;;
      unified) mount -t cgroup2 cgroup2 sys/fs/cgroup/$h ;;
      *) mount -t cgroup -o $h cgroup sys/fs/cgroup/$h ;;
    esac
  done
  mount -o remount,ro,bind sys/fs/cgroup
fi
mkdir -p run/systemd/system
printf '[Unit]\nDescription=hutch test machine\nWants=dbus.socket\n' > run/systemd/system/hutch-test.target
pivot_root . oldroot
umount -l /oldroot
rmdir /oldroot
exec env -i container=hutch-test TERM=dumb /lib/systemd/systemd --unit=hutch-test.target
"""


def host_hierarchies() -> list[str]:
    """The cgroup hierarchies mounted under /sys/fs/cgroup, by directory name."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4]
            if os.path.dirname(point) == CGROUP_ROOT:
                out.append(os.path.basename(point))
    return sorted(set(out))


def host_is_unified() -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == CGROUP_ROOT and " - cgroup2 " in line for line in f)


def available() -> str | None:
    """Why a machine cannot be booted here, or None."""
    for tool in ("unshare", "nsenter", "pivot_root", "systemd-run", "systemctl"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    if not os.path.exists(SYSTEMD_BIN):
        return "systemd is not installed"
    if not os.path.exists("/lib/systemd/system/dbus.socket"):
        return "dbus is not installed"
    return None


class SystemdMachine:
    def __init__(self, workdir: Path, shared: Path, layout: str = "host"):
        self.workdir = Path(workdir)
        self.shared = str(shared)
        self.layout = "unified" if layout == "unified" or host_is_unified() else "hybrid"
        self.name = f"hutch-test-sd-{os.getpid()}-{self.layout}"
        self.hierarchies = [] if host_is_unified() else host_hierarchies()
        self.proc: subprocess.Popen | None = None
        self.pid1: int | None = None

    # -- cgroups on the host -----------------------------------------------------------
    def host_cgroup_dirs(self) -> list[str]:
        if host_is_unified():
            return [os.path.join(CGROUP_ROOT, self.name)]
        return [os.path.join(CGROUP_ROOT, h, self.name) for h in self.hierarchies]

    def _make_cgroups(self) -> None:
        for d in self.host_cgroup_dirs():
            os.makedirs(d, exist_ok=True)
            if os.path.basename(os.path.dirname(d)) == "cpuset":
                for name in ("cpuset.cpus", "cpuset.mems"):
                    value = Path(os.path.dirname(d), name).read_text()
                    Path(d, name).write_text(value)

    def _remove_cgroups(self) -> None:
        for top in self.host_cgroup_dirs():
            for attempt in range(100):
                if not os.path.isdir(top):
                    break
                try:
                    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                        os.rmdir(dirpath)
                except OSError:
                    time.sleep(0.05)     # processes still exiting

    # -- boot and stop -------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> "SystemdMachine":
        self.workdir.mkdir(parents=True, exist_ok=True)
        script = self.workdir / "boot.sh"
        script.write_text(BOOT_SCRIPT)
        root = self.workdir / "root"
        root.mkdir(exist_ok=True)
        self._make_cgroups()
        # The shell joins the machine's cgroups, then unshare makes the cgroup namespace
        # rooted there: systemd sees its cgroup as the root.
        joins = " ".join(f"echo $$ > {d}/cgroup.procs;" for d in self.host_cgroup_dirs())
        layout = "unified" if self.layout == "unified" and not host_is_unified() else "host"
        cmd = (f"{joins} exec unshare --mount --pid --fork --cgroup --uts --ipc --net "
               f"sh {script} {root} {self.shared} {layout} {' '.join(BIND_READ_ONLY)}")
        hierarchies = [h for h in self.hierarchies if h != "unified"] + (
            ["unified"] if "unified" in self.hierarchies else [])
        env = dict(os.environ, HIERARCHIES=" ".join(hierarchies))
        if host_is_unified():
            env["HIERARCHIES"] = ""
        self.log = open(self.workdir / "boot.log", "wb")
        self.proc = subprocess.Popen(["sh", "-c", cmd], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        try:
            self.pid1 = self._wait_pid1(timeout)
            self._wait_running(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_pid1(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the machine did not boot: {self.boot_log()}")
            for child in _descendants(self.proc.pid):
                if _exe(child) and os.path.basename(_exe(child)) == "systemd":
                    return child
            time.sleep(0.05)
        raise RuntimeError(f"systemd did not start: {self.boot_log()}")

    def _wait_running(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.enter(["systemctl", "is-system-running"], check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"systemd did not finish booting ({state!r}): {self.boot_log()}")

    def boot_log(self) -> str:
        try:
            return (self.workdir / "boot.log").read_text()[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.pid1:
            try:
                os.kill(self.pid1, 9)       # the PID namespace dies with its init
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        self.log.close()
        self.proc = None
        self._remove_cgroups()

    # -- running things inside -----------------------------------------------------------
    def enter(self, argv: list[str], check: bool = True, timeout: float = 60,
              **kw) -> subprocess.CompletedProcess:
        """Run argv in the machine's namespaces (in the host's cgroup: only for
        read-only looks like systemctl; use run() for anything that makes cgroups)."""
        res = subprocess.run(["nsenter", "-t", str(self.pid1), "-a", *argv], capture_output=True,
                             text=True, timeout=timeout, **kw)
        if check and res.returncode != 0:
            raise AssertionError(f"{argv} failed ({res.returncode}): {res.stderr}{res.stdout}")
        return res

    def run(self, argv: list[str], check: bool = False, timeout: float = 60,
            env: dict | None = None, properties: tuple = (), **kw) -> subprocess.CompletedProcess:
        """Run argv as a transient service of the machine's systemd, stdio piped;
        properties: unit settings like 'KillMode=process'."""
        variables = dict(PATH=os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **(env or {}))
        options = [f"--setenv={k}={v}" for k, v in variables.items()]
        options += [f"--property={p}" for p in properties]
        res = self.enter(["systemd-run", "--wait", "--pipe", "--quiet", "--collect", *options,
                          "--", *argv], check=False, timeout=timeout, **kw)
        if check and res.returncode != 0:
            raise AssertionError(f"{argv} failed ({res.returncode}): {res.stderr}{res.stdout}")
        return res

    def show(self, unit: str, *names: str) -> dict[str, str]:
        """`systemctl show` properties of a unit inside the machine."""
        args = ["systemctl", "show", unit] + [f"--property={n}" for n in names]
        out = self.enter(args).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def controllers(self) -> set[str]:
        """The resource controllers containers in this machine can use."""
        if self.layout == "hybrid":
            return set(self.hierarchies) - {"systemd", "unified"}
        top = os.path.join(CGROUP_ROOT, "" if host_is_unified() else "unified", self.name)
        return set(Path(top, "cgroup.controllers").read_text().split())

    def hierarchy_names(self) -> list[str]:
        """Where a container's cgroup shows up: every hierarchy, or the one unified tree."""
        return list(self.hierarchies) if self.layout == "hybrid" else ["unified"]

    def _host_dir(self, hierarchy: str, path: str) -> str:
        """The host's directory of the machine's cgroup path in a hierarchy (any name
        on a unified machine: it has one tree)."""
        if host_is_unified():
            base = os.path.join(CGROUP_ROOT, self.name)
        elif self.layout == "unified":
            base = os.path.join(CGROUP_ROOT, "unified", self.name)
        else:
            base = os.path.join(CGROUP_ROOT, hierarchy, self.name)
        return os.path.join(base, path.lstrip("/"))

    def cgroup_file(self, hierarchy: str, path: str, name: str) -> str:
        """A cgroup file of the machine, read from the host."""
        return Path(self._host_dir(hierarchy, path), name).read_text().strip()

    def cgroup_exists(self, hierarchy: str, path: str) -> bool:
        return os.path.isdir(self._host_dir(hierarchy, path))


def _descendants(pid: int) -> list[int]:
    out = proc.children_pids(pid)
    return out + [d for child in out for d in _descendants(child)]


def _exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
