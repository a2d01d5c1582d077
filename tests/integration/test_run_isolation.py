"""`hutch run`: each namespace claim proved from inside the container against the host.

Every test compares what a process in the container observes with what the host (this
test process) observes, so it fails if the namespace were not created, not joined or
not configured.  Runs as root on the real kernel against the busybox rootfs."""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import tempfile

import pytest

from helpers.run import (
    CAP_CHOWN, CAP_NET_ADMIN, CAP_SYS_ADMIN, DOCKER_DEFAULT_MASK, host_ns, hutch_run,
    ipcmk_queue, ipcrm_queue, kill_tree, net_devices, parse_keyed, read_line_until,
    restore_host_names, start_hutch, status_field, wait_for_process,
)  # restore_host_names: a fixture, used through pytestmark

pytestmark = [pytest.mark.priv, pytest.mark.usefixtures("restore_host_names")]


def run_ok(args, **kw):
    result = hutch_run(args, **kw)
    assert result.returncode == 0, f"hutch run {args} -> {result.returncode}: {result.stderr}"
    return result


def ns_script(*kinds: str) -> str:
    return "; ".join(f"echo {k}=$(readlink /proc/self/ns/{k})" for k in kinds)


# --- every default namespace is new ---------------------------------------------------------

def test_default_namespaces_are_all_new(rootfs):
    kinds = ("mnt", "uts", "ipc", "pid", "net", "cgroup")
    out = parse_keyed(run_ok(["--rootfs", rootfs, "--", "sh", "-c", ns_script(*kinds, "user")]).stdout)
    for kind in kinds:
        assert out[kind] != host_ns(kind), f"{kind} namespace is the host's"
    # no --userns: the user namespace stays the host's (root on the host)
    assert out["user"] == host_ns("user")


# --- UTS --------------------------------------------------------------------------------------

def test_hostname_is_set_in_own_uts_namespace(rootfs):
    host_name = socket.gethostname()
    out = run_ok(["--rootfs", rootfs, "--hostname", "hutch-box", "--",
                  "sh", "-c", "hostname; cat /proc/sys/kernel/hostname"]).stdout.split()
    assert out == ["hutch-box", "hutch-box"]
    assert host_name != "hutch-box"
    assert socket.gethostname() == host_name, "the host's hostname changed"


def test_domainname_is_set(rootfs):
    host_domain = open("/proc/sys/kernel/domainname").read().strip()
    out = run_ok(["--rootfs", rootfs, "--domainname", "hutch.example", "--",
                  "cat", "/proc/sys/kernel/domainname"]).stdout.strip()
    assert out == "hutch.example"
    assert open("/proc/sys/kernel/domainname").read().strip() == host_domain


def test_share_uts_keeps_host_hostname(rootfs):
    out = parse_keyed(run_ok(["--rootfs", rootfs, "--share", "uts", "--",
                              "sh", "-c", "echo name=$(hostname); " + ns_script("uts", "net")]).stdout)
    assert out["uts"] == host_ns("uts")
    assert out["name"] == socket.gethostname()
    assert out["net"] != host_ns("net"), "--share uts must not share other namespaces"


def test_share_several_namespaces_at_once(rootfs):
    out = parse_keyed(run_ok(["--rootfs", rootfs, "--share", "uts,ipc", "--", "sh", "-c",
                              ns_script("uts", "ipc", "pid", "net")]).stdout)
    assert out["uts"] == host_ns("uts") and out["ipc"] == host_ns("ipc")
    assert out["pid"] != host_ns("pid") and out["net"] != host_ns("net")


# --- PID --------------------------------------------------------------------------------------

LIST_PROCS = ('echo self=$$; for d in /proc/[0-9]*; do '
              'echo "proc=${d#/proc/} $(tr "\\0" " " < $d/cmdline 2>/dev/null)"; done')


def container_procs(stdout: str) -> dict[int, str]:
    procs = {}
    for line in stdout.splitlines():
        if line.startswith("proc="):
            pid, _, cmd = line[5:].partition(" ")
            procs[int(pid)] = cmd.strip()
    return procs


@pytest.fixture
def host_sleeper():
    """A process on the host the container must not see."""
    proc = subprocess.Popen(["sleep", "31401"])
    yield proc
    proc.kill()
    proc.wait()


def test_no_init_command_is_pid_1_and_host_pids_invisible(rootfs, host_sleeper):
    result = run_ok(["--rootfs", rootfs, "--no-init", "--", "sh", "-c",
                     f"test -e /proc/{host_sleeper.pid} && echo host-pid-visible; " + LIST_PROCS])
    assert "self=1" in result.stdout.splitlines()
    assert "host-pid-visible" not in result.stdout.splitlines()
    procs = container_procs(result.stdout)
    assert 1 in procs
    assert host_sleeper.pid not in procs
    assert not any("31401" in cmd for cmd in procs.values()), procs
    # the host has many more processes than the container's few
    assert len(procs) <= 4, procs


def test_init_is_pid_1_and_host_pids_invisible(rootfs, host_sleeper):
    result = run_ok(["--rootfs", rootfs, "--", "sh", "-c",
                     f"test -e /proc/{host_sleeper.pid} && echo host-pid-visible; " + LIST_PROCS])
    procs = container_procs(result.stdout)
    assert 1 in procs, "no PID 1 in the container's /proc"
    assert "host-pid-visible" not in result.stdout.splitlines()
    assert host_sleeper.pid not in procs
    assert not any("31401" in cmd for cmd in procs.values()), procs
    assert len(procs) <= 5, procs


def test_share_pid_sees_host_processes(rootfs, host_sleeper):
    result = run_ok(["--rootfs", rootfs, "--share", "pid", "--", "sh", "-c",
                     f"test -e /proc/{host_sleeper.pid} && echo host-pid-visible; "
                     "readlink /proc/self/ns/pid"])
    assert "host-pid-visible" in result.stdout.splitlines()
    assert host_ns("pid") in result.stdout


# --- IPC --------------------------------------------------------------------------------------

@pytest.fixture
def host_msg_queue():
    qid = ipcmk_queue()
    yield qid
    ipcrm_queue(qid)


def sysvipc_ids(text: str) -> set[int]:
    """msqid column of /proc/sysvipc/msg."""
    return {int(line.split()[1]) for line in text.splitlines()[1:] if line.split()}


def test_host_sysv_queue_invisible(rootfs, host_msg_queue):
    assert host_msg_queue in sysvipc_ids(open("/proc/sysvipc/msg").read())
    result = run_ok(["--rootfs", rootfs, "--", "sh", "-c",
                     "cat /proc/sysvipc/msg; readlink /proc/self/ns/ipc"])
    assert host_msg_queue not in sysvipc_ids(result.stdout.split("ipc:[")[0])
    assert host_ns("ipc") not in result.stdout


def test_share_ipc_sees_host_sysv_queue(rootfs, host_msg_queue):
    result = run_ok(["--rootfs", rootfs, "--share", "ipc", "--", "cat", "/proc/sysvipc/msg"])
    assert host_msg_queue in sysvipc_ids(result.stdout)


@pytest.fixture
def host_posix_mqueue():
    """A POSIX message queue created on the host (mq_open through librt)."""
    rt = ctypes.CDLL("librt.so.1", use_errno=True)
    name = b"/hutch-test-mq"
    fd = rt.mq_open(name, os.O_CREAT | os.O_RDWR, 0o600, None)
    if fd < 0:
        pytest.skip(f"mq_open failed on the host: {os.strerror(ctypes.get_errno())}")
    yield "hutch-test-mq"
    os.close(fd)
    rt.mq_unlink(name)


def test_host_posix_mqueue_invisible(rootfs, host_posix_mqueue):
    result = run_ok(["--rootfs", rootfs, "--", "sh", "-c",
                     "grep ' /dev/mqueue ' /proc/self/mountinfo; echo ls=$(ls -A /dev/mqueue)"])
    assert " - mqueue " in result.stdout, "no mqueue filesystem on /dev/mqueue"
    assert host_posix_mqueue not in result.stdout
    # control: with the host's IPC namespace the same mount shows the queue
    shared = run_ok(["--rootfs", rootfs, "--share", "ipc", "--", "ls", "-A", "/dev/mqueue"])
    assert host_posix_mqueue in shared.stdout.split()


# --- network ----------------------------------------------------------------------------------

def test_net_none_has_only_loopback_and_it_is_up(rootfs):
    result = run_ok(["--rootfs", rootfs, "--", "sh", "-c",
                     "cat /proc/net/dev; echo; ip link show lo; ping -c 1 -W 2 127.0.0.1 && echo ping-ok"])
    devices = net_devices(result.stdout.split("\n\n")[0])
    assert devices == {"lo"}, devices
    assert net_devices(open("/proc/net/dev").read()) != {"lo"}, "host has only lo: test is moot"
    lo_line = next(line for line in result.stdout.splitlines() if ": lo:" in line)
    assert ",UP" in lo_line or "<UP" in lo_line, lo_line
    assert "ping-ok" in result.stdout, result.stdout


def test_explicit_net_none_is_the_same(rootfs):
    result = run_ok(["--rootfs", rootfs, "--net", "none", "--", "sh", "-c",
                     ns_script("net") + "; cat /proc/net/dev"])
    ns_line, _, dev = result.stdout.partition("\n")
    assert net_devices(dev) == {"lo"}
    assert host_ns("net") not in ns_line


def test_net_host_sees_host_interfaces(rootfs):
    result = run_ok(["--rootfs", rootfs, "--net", "host", "--", "sh", "-c",
                     ns_script("net") + "; cat /proc/net/dev"])
    ns_line, _, dev = result.stdout.partition("\n")
    assert net_devices(dev) == net_devices(open("/proc/net/dev").read())
    assert host_ns("net") in ns_line


def test_share_net_is_the_host_network(rootfs):
    result = run_ok(["--rootfs", rootfs, "--share", "net", "--", "sh", "-c", ns_script("net")])
    assert parse_keyed(result.stdout)["net"] == host_ns("net")


@pytest.fixture
def named_netns():
    name = "hutch-test-x"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    yield f"/run/netns/{name}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_join_ns_net_uses_that_namespace(rootfs, named_netns):
    inode = os.stat(named_netns).st_ino
    result = run_ok(["--rootfs", rootfs, "--join-ns", f"net:{named_netns}", "--",
                     "sh", "-c", ns_script("net", "uts")])
    out = parse_keyed(result.stdout)
    assert out["net"] == f"net:[{inode}]"
    assert out["uts"] != host_ns("uts"), "joining net must not share other namespaces"


# --- capabilities -----------------------------------------------------------------------------

def caps_of(stdout: str) -> dict[str, int]:
    return {k: int(v, 16) for k, v in parse_keyed(stdout.replace(":\t", "=")).items()
            if k.startswith("Cap")}


CAT_STATUS = ["cat", "/proc/self/status"]


def test_default_caps_are_dockers(rootfs):
    caps = caps_of(run_ok(["--rootfs", rootfs, "--", *CAT_STATUS]).stdout)
    assert caps["CapEff"] == DOCKER_DEFAULT_MASK, hex(caps["CapEff"])
    assert caps["CapPrm"] == DOCKER_DEFAULT_MASK, hex(caps["CapPrm"])
    assert caps["CapBnd"] == DOCKER_DEFAULT_MASK, hex(caps["CapBnd"])
    assert caps["CapEff"] != int(status_field("self", "CapEff"), 16)


def test_default_caps_of_the_shell_itself(rootfs):
    """The process hutch execs (not only its children) has the default set."""
    out = run_ok(["--rootfs", rootfs, "--no-init", "--", "sh", "-c",
                  "grep Cap /proc/$$/status"]).stdout
    assert caps_of(out)["CapEff"] == DOCKER_DEFAULT_MASK


def test_cap_add(rootfs):
    caps = caps_of(run_ok(["--rootfs", rootfs, "--cap-add", "NET_ADMIN", "--", *CAT_STATUS]).stdout)
    assert caps["CapEff"] == DOCKER_DEFAULT_MASK | 1 << CAP_NET_ADMIN
    assert caps["CapBnd"] == DOCKER_DEFAULT_MASK | 1 << CAP_NET_ADMIN


def test_cap_add_lets_the_container_use_it(rootfs):
    """CAP_NET_ADMIN really works: the container can add an address to its own lo."""
    # the address goes only to a loopback that is not the host's (checked inside first)
    guarded = (f'[ "$(readlink /proc/self/ns/net)" != "{host_ns("net")}" ] || exit 99; '
               "ip addr add 10.9.8.7/32 dev lo && ip addr show lo")
    without = hutch_run(["--rootfs", rootfs, "--", "sh", "-c", guarded])
    assert without.returncode not in (0, 99)
    with_cap = run_ok(["--rootfs", rootfs, "--cap-add", "CAP_NET_ADMIN", "--", "sh", "-c", guarded])
    assert "10.9.8.7" in with_cap.stdout


def test_cap_drop(rootfs):
    caps = caps_of(run_ok(["--rootfs", rootfs, "--cap-drop", "CHOWN", "--", *CAT_STATUS]).stdout)
    assert caps["CapEff"] == DOCKER_DEFAULT_MASK & ~(1 << CAP_CHOWN)
    assert caps["CapBnd"] == DOCKER_DEFAULT_MASK & ~(1 << CAP_CHOWN)
    # and chown is really refused (to another owner than the file's)
    result = hutch_run(["--rootfs", rootfs, "--cap-drop", "CHOWN", "--", "sh", "-c",
                        "touch /tmp/f && chown 1234 /tmp/f"])
    assert result.returncode != 0


def test_cap_drop_all(rootfs):
    caps = caps_of(run_ok(["--rootfs", rootfs, "--cap-drop", "ALL", "--", *CAT_STATUS]).stdout)
    assert caps["CapEff"] == 0 and caps["CapPrm"] == 0 and caps["CapBnd"] == 0


def test_cap_drop_all_then_add_one(rootfs):
    caps = caps_of(run_ok(["--rootfs", rootfs, "--cap-drop", "ALL", "--cap-add", "CAP_SYS_ADMIN",
                           "--", *CAT_STATUS]).stdout)
    assert caps["CapEff"] == 1 << CAP_SYS_ADMIN


def test_privileged_has_all_host_caps(rootfs):
    caps = caps_of(run_ok(["--rootfs", rootfs, "--privileged", "--", *CAT_STATUS]).stdout)
    assert caps["CapEff"] == int(status_field("self", "CapBnd"), 16)


def test_non_root_user_has_no_effective_caps(rootfs):
    """docker: a non-root user keeps the bounding set but gets no effective capabilities."""
    caps = caps_of(run_ok(["--rootfs", rootfs, "-u", "1000:1000", "--", *CAT_STATUS]).stdout)
    assert caps["CapEff"] == 0
    assert caps["CapBnd"] == DOCKER_DEFAULT_MASK


# --- user namespace ---------------------------------------------------------------------------

@pytest.fixture
def userns_rootfs(busybox_rootfs):
    """A rootfs copy the container's unprivileged host ids can reach (pytest's own tmp
    directories are mode 0700 and root-only)."""
    parent = tempfile.mkdtemp(prefix="hutch-test-userns-", dir="/tmp")
    os.chmod(parent, 0o755)
    dest = os.path.join(parent, "rootfs")
    shutil.copytree(busybox_rootfs, dest, symlinks=True)
    yield dest
    shutil.rmtree(parent, ignore_errors=True)


def userns_host_ids(rootfs, extra_args, marker: str):
    """Start a container with --userns; return (inside uid_map, gid_map, host Uid, host Gid)."""
    argv = ["sleep", marker]
    proc = start_hutch(["--rootfs", rootfs, "--userns", *extra_args, "--", "sh", "-c",
                        f"cat /proc/self/uid_map; echo ---; cat /proc/self/gid_map; echo ready; "
                        f"exec sleep {marker}"])
    try:
        lines = read_line_until(proc, "ready")
        pid = wait_for_process(argv)
        host_uid = status_field(pid, "Uid").split()
        host_gid = status_field(pid, "Gid").split()
        user_ns = os.readlink(f"/proc/{pid}/ns/user")
    finally:
        kill_tree(proc, argv)
    text = "\n".join(lines[:-1])
    uid_map, _, gid_map = text.partition("---")
    parse = lambda t: [tuple(int(x) for x in line.split()) for line in t.strip().splitlines()]
    return parse(uid_map), parse(gid_map), host_uid, host_gid, user_ns


def test_userns_default_maps_root_to_unprivileged_range(userns_rootfs):
    rootfs = userns_rootfs
    uid_map, gid_map, host_uid, host_gid, user_ns = userns_host_ids(rootfs, [], "31402")
    assert user_ns != host_ns("user")
    assert uid_map[0][0] == 0 and uid_map[0][1] != 0, uid_map
    assert gid_map[0][0] == 0 and gid_map[0][1] != 0, gid_map
    # the container's root is, seen from the host, the first id of the range
    assert host_uid == [str(uid_map[0][1])] * 4
    assert host_gid == [str(gid_map[0][1])] * 4


def test_userns_explicit_maps(userns_rootfs):
    rootfs = userns_rootfs
    uid_map, gid_map, host_uid, host_gid, _ = userns_host_ids(
        rootfs, ["--uidmap", "0:200000:65536", "--gidmap", "0:300000:65536"], "31403")
    assert uid_map == [(0, 200000, 65536)]
    assert gid_map == [(0, 300000, 65536)]
    assert host_uid == ["200000"] * 4
    assert host_gid == ["300000"] * 4


def test_userns_repeated_maps(userns_rootfs):
    rootfs = userns_rootfs
    uid_map, _, _, _, _ = userns_host_ids(
        rootfs, ["--uidmap", "0:400000:1000", "--uidmap", "1000:401000:1000",
                 "--gidmap", "0:400000:2000"], "31404")
    assert sorted(uid_map) == [(0, 400000, 1000), (1000, 401000, 1000)]


def test_userns_root_inside_is_uid_0(userns_rootfs):
    rootfs = userns_rootfs
    out = run_ok(["--rootfs", rootfs, "--userns", "--", "sh", "-c", "id -u; id -g"]).stdout.split()
    assert out == ["0", "0"]


# --- time namespace ---------------------------------------------------------------------------

def test_time_offset_boottime_shifts_uptime(rootfs):
    day = 86400
    host_before = float(open("/proc/uptime").read().split()[0])
    out = run_ok(["--rootfs", rootfs, "--time-offset", f"boottime={day}", "--", "sh", "-c",
                  "cat /proc/self/timens_offsets; echo uptime=$(cut -d' ' -f1 /proc/uptime); "
                  + ns_script("time")]).stdout
    host_after = float(open("/proc/uptime").read().split()[0])
    offsets = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()
               if line.startswith(("monotonic", "boottime"))}
    assert offsets["boottime"] == day
    assert offsets["monotonic"] == 0
    inside = float(parse_keyed(out)["uptime"])
    assert host_before + day <= inside <= host_after + day, (host_before, inside, host_after)
    assert parse_keyed(out)["time"] != host_ns("time")


def test_time_offset_monotonic(rootfs):
    out = run_ok(["--rootfs", rootfs, "--time-offset", "monotonic=3600", "--",
                  "cat", "/proc/self/timens_offsets"]).stdout
    offsets = {line.split()[0]: int(line.split()[1]) for line in out.splitlines() if line.strip()}
    assert offsets == {"monotonic": 3600, "boottime": 0}


def test_no_time_offset_keeps_host_time_namespace(rootfs):
    out = parse_keyed(run_ok(["--rootfs", rootfs, "--", "sh", "-c", ns_script("time")]).stdout)
    assert out["time"] == host_ns("time")
