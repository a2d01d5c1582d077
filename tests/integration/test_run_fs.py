"""`hutch run`: the container's filesystem — the built-in default root, --rootfs, /dev,
read-only and masked kernel paths, bind mounts, tmpfs, --read-only and propagation.

Writes that must be refused are attempted for real, and their absence is then checked
from the host, so a missing protection fails the test."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from helpers.run import (
    hutch_run, kill_tree, parse_keyed, read_line_until, rest_of_output, start_hutch,
)

pytestmark = pytest.mark.priv


def run_ok(args, **kw):
    result = hutch_run(args, **kw)
    assert result.returncode == 0, f"hutch run {args} -> {result.returncode}: {result.stderr}"
    return result


def mount_options(mountinfo: str, target: str) -> set[str] | None:
    """Per-mount options of the last mount on target in mountinfo text (None if absent)."""
    found = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[4] == target:
            found = set(fields[5].split(","))
    return found


def fstype(mountinfo: str, target: str) -> str | None:
    found = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[4] == target:
            found = line.split(" - ")[1].split()[0]
    return found


WRITE = 'if {} 2>/dev/null; then echo {}=written; else echo {}=refused; fi'


def write_attempt(name: str, command: str) -> str:
    return WRITE.format(command, name, name)


# --- the built-in default root ----------------------------------------------------------------

def test_default_root_runs_host_python():
    result = run_ok(["--", "python3", "-c", "print(1)"])
    assert result.stdout == "1\n"


def test_default_root_has_fresh_empty_writable_tmp():
    marker = f"/tmp/hutch-test-host-{uuid.uuid4().hex[:8]}"
    inside_file = f"hutch-test-inside-{uuid.uuid4().hex[:8]}"
    open(marker, "w").close()
    try:
        out = parse_keyed(run_ok(["--", "sh", "-c",
                                  f'echo ls="$(ls -A /tmp)"; {write_attempt("tmp", "touch /tmp/" + inside_file)}'
                                  ]).stdout)
        assert not os.path.exists(f"/tmp/{inside_file}"), "the container wrote into the host's /tmp"
    finally:
        os.unlink(marker)
        if os.path.exists(f"/tmp/{inside_file}"):
            os.unlink(f"/tmp/{inside_file}")
    assert out["ls"] == "", f"/tmp is not fresh: {out['ls']!r}"
    assert out["tmp"] == "written"


@pytest.mark.parametrize("directory", ["/etc", "/usr", "/usr/bin"])
def test_default_root_system_dirs_are_read_only(directory):
    name = f"{directory}/hutch-test-{uuid.uuid4().hex[:8]}"
    try:
        out = parse_keyed(run_ok(["--", "sh", "-c", write_attempt("w", f"touch {name}")]).stdout)
        assert out["w"] == "refused"
        assert not os.path.exists(name)
    finally:
        if os.path.exists(name):
            os.unlink(name)


def test_default_root_sees_host_files_read_only():
    out = run_ok(["--", "sh", "-c", "cat /etc/os-release; grep -E ' / ' /proc/self/mountinfo"]).stdout
    assert open("/etc/os-release").read() in out


def test_default_root_has_own_proc_dev_sys():
    out = run_ok(["--", "sh", "-c", "cat /proc/self/mountinfo; echo ---; ls -A /dev"]).stdout
    mountinfo, _, dev = out.partition("---")
    assert fstype(mountinfo, "/proc") == "proc"
    assert fstype(mountinfo, "/sys") == "sysfs"
    assert fstype(mountinfo, "/tmp") == "tmpfs"
    assert fstype(mountinfo, "/run") == "tmpfs"
    assert fstype(mountinfo, "/dev") == "tmpfs"
    assert "sda" not in dev.split() and "vda" not in dev.split() and "kvm" not in dev.split()


# --- /dev ---------------------------------------------------------------------------------------

DEVICES = {"null": "1 3", "zero": "1 5", "full": "1 7", "random": "1 8", "urandom": "1 9",
           "tty": "5 0"}
HOST_ONLY_DEVICES = {"kmsg", "mem", "kvm", "loop0", "loop-control", "fuse", "vda", "sda", "tty1"}


def test_minimal_dev(rootfs):
    script = ("for d in null zero full random urandom tty; do echo $d=$(stat -c '%t %T' /dev/$d); done; "
              "echo ls=$(ls -A /dev | tr '\\n' ' '); "
              "echo ptmx=$(test -c /dev/ptmx && echo yes); "
              "echo stdout=$(readlink /dev/stdout); "
              "echo urandom4=$(head -c 4 /dev/urandom | wc -c); "
              + write_attempt("write_full", "echo x > /dev/full") + "; "
              + write_attempt("write_null", "echo x > /dev/null") + "; "
              "cat /proc/self/mountinfo")
    out = run_ok(["--rootfs", rootfs, "--", "sh", "-c", script]).stdout
    keys = parse_keyed(out)
    for name, numbers in DEVICES.items():
        assert keys[name] == numbers, f"/dev/{name} is {keys[name]!r}, expected {numbers}"
    listed = set(keys["ls"].split())
    assert {"pts", "shm", "mqueue", "ptmx", "stdin", "stdout", "stderr"} <= listed, listed
    assert not listed & HOST_ONLY_DEVICES, f"host devices leaked into /dev: {listed & HOST_ONLY_DEVICES}"
    assert keys["ptmx"] == "yes"
    assert keys["stdout"] == "/proc/self/fd/1"
    assert keys["urandom4"] == "4"
    assert keys["write_full"] == "refused" and keys["write_null"] == "written"
    assert fstype(out, "/dev/pts") == "devpts"
    assert fstype(out, "/dev/shm") == "tmpfs"
    assert fstype(out, "/dev/mqueue") == "mqueue"


def test_devpts_is_a_new_instance(rootfs):
    """The host's ptys are not visible in the container's /dev/pts."""
    import pty
    master, slave = pty.openpty()
    try:
        host_pty = os.ttyname(slave).rsplit("/", 1)[1]
        out = run_ok(["--rootfs", rootfs, "--", "ls", "/dev/pts"]).stdout.split()
    finally:
        os.close(master)
        os.close(slave)
    assert host_pty not in out


# --- read-only and masked kernel paths ---------------------------------------------------------

# Writing the hostname back unchanged through /proc/sys succeeds for root with the default
# caps unless /proc/sys is read-only.  The value written is the current one, so even a
# hutch without a UTS namespace or read-only /proc/sys could not rename the host.
REWRITE_HOSTNAME = 'h=$(hostname) && echo "$h" > /proc/sys/kernel/hostname'


def test_proc_sys_is_read_only(rootfs):
    out = parse_keyed(run_ok(["--rootfs", rootfs, "--", "sh", "-c",
                              write_attempt("w", REWRITE_HOSTNAME)]).stdout)
    assert out["w"] == "refused"


@pytest.mark.parametrize("path", ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"])
def test_oci_read_only_paths_are_mounted_read_only(rootfs, path):
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist on this kernel")
    out = run_ok(["--rootfs", rootfs, "--", "cat", "/proc/self/mountinfo"]).stdout
    options = mount_options(out, path)
    assert options is not None, f"{path} is not a separate (read-only) mount"
    assert "ro" in options


def test_sys_is_read_only(rootfs):
    out = run_ok(["--rootfs", rootfs, "--", "cat", "/proc/self/mountinfo"]).stdout
    assert fstype(out, "/sys") == "sysfs"
    assert "ro" in mount_options(out, "/sys")


@pytest.mark.parametrize("path", ["/proc/keys", "/proc/timer_list"])
def test_masked_proc_files_read_empty(rootfs, path):
    if not os.path.exists(path) or not open(path).read():
        pytest.skip(f"{path} is empty on the host: masking would be unobservable")
    out = run_ok(["--rootfs", rootfs, "--", "sh", "-c", f"echo size=$(cat {path} | wc -c)"]).stdout
    assert parse_keyed(out)["size"] == "0"


def test_masked_kcore(rootfs):
    if not os.path.exists("/proc/kcore"):
        pytest.skip("this kernel has no /proc/kcore")
    out = run_ok(["--rootfs", rootfs, "--", "sh", "-c",
                  "echo size=$(head -c 16 /proc/kcore 2>/dev/null | wc -c)"]).stdout
    assert parse_keyed(out)["size"] == "0"


def test_masked_sys_firmware_is_empty(rootfs):
    assert os.listdir("/sys/firmware"), "host /sys/firmware is empty: masking unobservable"
    out = run_ok(["--rootfs", rootfs, "--", "sh", "-c", 'echo ls="$(ls -A /sys/firmware)"']).stdout
    assert parse_keyed(out)["ls"] == ""


def test_default_root_masks_and_protects_too():
    out = run_ok(["--", "sh", "-c",
                  'echo keys=$(cat /proc/keys | wc -c); echo fw="$(ls -A /sys/firmware)"; '
                  + write_attempt("w", REWRITE_HOSTNAME)]).stdout
    keys = parse_keyed(out)
    if open("/proc/keys").read():
        assert keys["keys"] == "0"
    assert keys["fw"] == ""
    assert keys["w"] == "refused"


# --- --rootfs and --read-only ------------------------------------------------------------------

def test_rootfs_is_the_root_and_writable_by_default(rootfs):
    out = parse_keyed(run_ok(["--rootfs", rootfs, "--", "sh", "-c",
                              "echo host=$(cat /etc/hostname); " + write_attempt("w", "touch /created")]).stdout)
    assert out["host"] == "busybox"  # the file the busybox rootfs builder wrote
    assert out["w"] == "written"
    assert (rootfs / "created").exists()


def test_rootfs_hides_the_host(rootfs):
    out = run_ok(["--rootfs", rootfs, "--", "sh", "-c",
                  "test -e /work && echo host-visible; test -e /usr/bin/python3 && echo host-visible; "
                  "grep -c . /proc/self/mountinfo"]).stdout
    assert "host-visible" not in out


def test_read_only_root(rootfs):
    out = run_ok(["--rootfs", rootfs, "--read-only", "--", "sh", "-c",
                  write_attempt("w", "touch /created") + "; cat /proc/self/mountinfo"]).stdout
    assert parse_keyed(out)["w"] == "refused"
    assert "ro" in mount_options(out, "/")
    assert not (rootfs / "created").exists()


def test_read_only_root_with_tmpfs_is_writable_there(rootfs):
    out = parse_keyed(run_ok(["--rootfs", rootfs, "--read-only", "--tmpfs", "/tmp", "--", "sh", "-c",
                              write_attempt("w", "touch /tmp/x")]).stdout)
    assert out["w"] == "written"


# --- volumes -----------------------------------------------------------------------------------

@pytest.fixture
def host_dir(tmp_path):
    d = tmp_path / "volume"
    d.mkdir()
    (d / "file").write_text("hello from the host\n")
    return d


def test_bind_mount_read_write(rootfs, host_dir):
    out = run_ok(["--rootfs", rootfs, "-v", f"{host_dir}:/data", "--", "sh", "-c",
                  "cat /data/file; echo from-container > /data/new"]).stdout
    assert out == "hello from the host\n"
    assert (host_dir / "new").read_text() == "from-container\n"


def test_bind_mount_read_only(rootfs, host_dir):
    out = parse_keyed(run_ok(["--rootfs", rootfs, "-v", f"{host_dir}:/data:ro", "--", "sh", "-c",
                              "echo content=$(cat /data/file); "
                              + write_attempt("w", "touch /data/new") + "; "
                              + write_attempt("over", "echo x > /data/file")]).stdout)
    assert out["content"] == "hello from the host"
    assert out["w"] == "refused" and out["over"] == "refused"
    assert not (host_dir / "new").exists()
    assert (host_dir / "file").read_text() == "hello from the host\n"


def test_bind_mount_onto_existing_dir_of_default_root(host_dir):
    if not os.path.isdir("/mnt"):
        pytest.skip("no /mnt on the host")
    out = run_ok(["-v", f"{host_dir}:/mnt", "--", "cat", "/mnt/file"]).stdout
    assert out == "hello from the host\n"
    assert not os.path.exists("/mnt/file"), "the bind mount happened on the host"


def test_bind_mount_a_file(rootfs, host_dir):
    out = run_ok(["--rootfs", rootfs, "-v", f"{host_dir / 'file'}:/etc/motd:ro", "--",
                  "cat", "/etc/motd"]).stdout
    assert out == "hello from the host\n"


def test_tmpfs(rootfs):
    out = run_ok(["--rootfs", rootfs, "--tmpfs", "/scratch", "--", "sh", "-c",
                  "echo data > /scratch/f && cat /scratch/f; cat /proc/self/mountinfo"]).stdout
    assert out.startswith("data\n")
    assert fstype(out, "/scratch") == "tmpfs"
    assert not (rootfs / "scratch" / "f").exists(), "the tmpfs write landed in the rootfs"


# --- propagation -------------------------------------------------------------------------------

@pytest.fixture
def shared_host_mount(tmp_path):
    """A shared tmpfs on the host (the host's / is private here), unmounted afterwards."""
    d = tmp_path / "shared"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "hutch-test-shared", str(d)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(d)], check=True)
        (d / "sub").mkdir()
        yield d
    finally:
        subprocess.run(["umount", "-R", "-l", str(d)], capture_output=True)


WATCH_SUB = ('echo ready; while ! test -e /data/go; do sleep 0.05; done; '
             'if grep -q " /data/sub " /proc/self/mountinfo; then echo seen; else echo unseen; fi')


def host_mount_seen_inside(rootfs, shared: os.PathLike, propagation_args) -> str:
    proc = start_hutch(["--rootfs", rootfs, *propagation_args, "-v", f"{shared}:/data",
                        "--", "sh", "-c", WATCH_SUB])
    sub = os.path.join(shared, "sub")
    try:
        read_line_until(proc, "ready")
        subprocess.run(["mount", "-t", "tmpfs", "hutch-test-sub", sub], check=True)
        open(os.path.join(shared, "go"), "w").close()
        out, _ = rest_of_output(proc)
        return out.strip()
    finally:
        subprocess.run(["umount", "-l", sub], capture_output=True)
        kill_tree(proc)


def test_propagation_private_by_default(rootfs, shared_host_mount):
    assert host_mount_seen_inside(rootfs, shared_host_mount, []) == "unseen"


def test_propagation_slave_receives_host_mounts(rootfs, shared_host_mount):
    assert host_mount_seen_inside(rootfs, shared_host_mount, ["--propagation", "slave"]) == "seen"


def test_container_mounts_never_reach_the_host(rootfs, shared_host_mount):
    """Even with CAP_SYS_ADMIN and the default propagation a mount inside stays inside."""
    run_ok(["--rootfs", rootfs, "--cap-add", "SYS_ADMIN", "-v", f"{shared_host_mount}:/data", "--",
            "mount", "-t", "tmpfs", "inside", "/data/sub"])
    host = open("/proc/self/mountinfo").read()
    assert os.path.join(shared_host_mount, "sub") not in host
