"""What the container process sees for each config.json field.

Each test asserts the expected kernel state, and when the runtime under test is not runc
(and runc is installed) it also runs the same bundle with runc and requires the same
(normalised) output: a differential test against the reference runtime."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from helpers.oci import oci, ref_oci, new_id, runtimes, remove_cgroups_named  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

CAPS = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_KILL": 5, "CAP_SETUID": 7, "CAP_NET_BIND_SERVICE": 10,
        "CAP_NET_RAW": 13, "CAP_SYS_ADMIN": 21, "CAP_AUDIT_WRITE": 29}


def mask(*names: str) -> int:
    m = 0
    for n in names:
        m |= 1 << CAPS[n]
    return m


def observe(oci, ref_oci, bundle_dir, normalize=lambda s: s, rc: int = 0, ref_bundle=None) -> str:
    """Run the bundle with the runtime under test (and runc when it differs, with
    ``ref_bundle`` when given); the outputs, normalised, must agree.  Returns the runtime
    under test's normalised output."""
    outs = []
    for rt in runtimes(oci, ref_oci):
        res = rt.run(new_id(), ref_bundle if (rt is ref_oci and ref_bundle) else bundle_dir)
        assert res.returncode == rc, f"{rt.name} run: rc={res.returncode} stderr={res.stderr!r}"
        outs.append((rt.name, normalize(res.stdout)))
    if len(outs) == 2 and outs[0][1] != outs[1][1]:
        import difflib
        import pprint
        diff = difflib.unified_diff(pprint.pformat(outs[1][1], width=100).splitlines(),
                                    pprint.pformat(outs[0][1], width=100).splitlines(),
                                    outs[1][0], outs[0][0], lineterm="")
        pytest.fail(f"{outs[0][0]} and {outs[1][0]} disagree:\n" + "\n".join(diff))
    return outs[0][1]


def status_fields(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if v}


# -- identity ---------------------------------------------------------------------------------
def test_hostname(oci, ref_oci, bundle):
    b = bundle(["cat", "/proc/sys/kernel/hostname"], hostname="hutch-box")
    assert observe(oci, ref_oci, b) == "hutch-box\n"


def test_domainname(oci, bundle):
    if oci.is_runc:
        pytest.skip("runc 1.1 ignores domainname (added in runc 1.2)")
    b = bundle(["cat", "/proc/sys/kernel/hostname", "/proc/sys/kernel/domainname"],
               hostname="hutch-box", domainname="example.org")
    res = oci.run(new_id(), b)
    assert (res.returncode, res.stdout.split()) == (0, ["hutch-box", "example.org"]), res.stderr


def test_uid_gid_additional_gids(oci, ref_oci, bundle):
    b = bundle(["sh", "-c", "grep -E '^(Uid|Gid|Groups):' /proc/self/status; id -u; id -g"],
               process={"user": {"uid": 1000, "gid": 1001, "additionalGids": [5, 7, 1001]}})
    out = observe(oci, ref_oci, b)
    f = status_fields(out)
    assert f["Uid"].split() == ["1000"] * 4
    assert f["Gid"].split() == ["1001"] * 4
    assert sorted(map(int, f["Groups"].split())) == [5, 7, 1001]
    assert out.split()[-2:] == ["1000", "1001"]


def test_root_user_has_no_supplementary_groups(oci, ref_oci, bundle):
    out = observe(oci, ref_oci, bundle(["grep", "^Groups:", "/proc/self/status"]))
    assert out.split() == ["Groups:"]


def test_umask(oci, ref_oci, bundle):
    b = bundle(["sh", "-c", "umask; grep ^Umask: /proc/self/status"],
               process={"user": {"uid": 0, "gid": 0, "umask": 0o027}})
    assert observe(oci, ref_oci, b).split() == ["0027", "Umask:", "0027"]


def test_cwd(oci, ref_oci, bundle):
    assert observe(oci, ref_oci, bundle(["pwd"], process={"cwd": "/usr/bin"})) == "/usr/bin\n"


def test_env(oci, ref_oci, bundle):
    env = ["PATH=/bin:/sbin", "FOO=bar baz", "EMPTY=", "HOME=/nowhere"]
    out = observe(oci, ref_oci, bundle(["env"], process={"env": env}),
                  normalize=lambda s: sorted(s.splitlines()))
    for var in env:
        assert var in out
    assert not any(line.startswith("TERM=") for line in out)


def test_args_are_passed_verbatim(oci, ref_oci, bundle):
    args = ["sh", "-c", 'for a in "$@"; do echo "[$a]"; done', "sh", "a b", "", "*", "$HOME"]
    assert observe(oci, ref_oci, bundle(args)) == "[a b]\n[]\n[*]\n[$HOME]\n"


# -- capabilities, no_new_privs, rlimits, oom -----------------------------------------------------
CAP_CONFIG = {"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID", "CAP_DAC_OVERRIDE"],
              "effective": ["CAP_CHOWN"],
              "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_SETUID"],
              "inheritable": ["CAP_KILL", "CAP_NET_RAW"],
              "ambient": ["CAP_KILL"]}
CAP_PROBE = ["sh", "-c", "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status"]


def cap_masks(out: str) -> dict[str, int]:
    return {k: int(v, 16) for k, v in status_fields(out).items()}


def test_capabilities_non_root(oci, ref_oci, bundle):
    """For a non-root user the program keeps exactly the ambient set after execve."""
    b = bundle(CAP_PROBE, process={"user": {"uid": 1000, "gid": 1000}, "capabilities": CAP_CONFIG})
    caps = cap_masks(observe(oci, ref_oci, b))
    assert caps["CapBnd"] == mask(*CAP_CONFIG["bounding"])
    assert caps["CapInh"] == mask(*CAP_CONFIG["inheritable"])
    assert caps["CapAmb"] == mask("CAP_KILL")
    assert caps["CapPrm"] == mask("CAP_KILL")
    assert caps["CapEff"] == mask("CAP_KILL")


@pytest.mark.parametrize("nnp", [True, False])
def test_capabilities_root(oci, ref_oci, bundle, nnp):
    """For root the kernel grants bounding | inheritable at execve (no file caps, no
    securebits); with no_new_privs it cannot go beyond the permitted set."""
    b = bundle(CAP_PROBE, process={"capabilities": CAP_CONFIG, "noNewPrivileges": nnp})
    caps = cap_masks(observe(oci, ref_oci, b))
    assert caps["CapBnd"] == mask(*CAP_CONFIG["bounding"])
    assert caps["CapInh"] == mask(*CAP_CONFIG["inheritable"])
    assert caps["CapAmb"] == mask("CAP_KILL")
    granted = mask(*CAP_CONFIG["bounding"]) | mask(*CAP_CONFIG["inheritable"])
    if nnp:
        granted &= mask(*CAP_CONFIG["permitted"])
    assert caps["CapPrm"] == granted
    assert caps["CapEff"] == caps["CapPrm"]


def test_no_capabilities_at_all(oci, ref_oci, bundle):
    b = bundle(CAP_PROBE, process={"capabilities": {k: [] for k in CAP_CONFIG}})
    assert set(cap_masks(observe(oci, ref_oci, b)).values()) == {0}


@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges(oci, ref_oci, bundle, nnp):
    b = bundle(["grep", "^NoNewPrivs:", "/proc/self/status"], process={"noNewPrivileges": nnp})
    assert observe(oci, ref_oci, b).split() == ["NoNewPrivs:", "1" if nnp else "0"]


def test_rlimits(oci, ref_oci, bundle):
    rlimits = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000},
               {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
               {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
               {"type": "RLIMIT_STACK", "soft": 4194304, "hard": 8388608}]
    b = bundle(["cat", "/proc/self/limits"], process={"rlimits": rlimits})
    out = observe(oci, ref_oci, b)
    rows = {line[:26].strip(): line[26:].split()[:2] for line in out.splitlines()[1:]}
    assert rows["Max open files"] == ["512", "1000"]
    assert rows["Max processes"] == ["300", "400"]
    assert rows["Max core file size"] == ["0", "0"]
    assert rows["Max stack size"] == ["4194304", "8388608"]


def test_oom_score_adj(oci, ref_oci, bundle):
    b = bundle(["cat", "/proc/self/oom_score_adj"], process={"oomScoreAdj": 567})
    assert observe(oci, ref_oci, b) == "567\n"


# -- filesystem ----------------------------------------------------------------------------------
FLAG_WORDS = ("ro", "rw", "nosuid", "nodev", "noexec")


def normalise_mountinfo(text: str) -> list[tuple[str, str, str]]:
    """(mountpoint, fstype, per-mount flags among ro/rw/nosuid/nodev/noexec), in order."""
    rows = []
    for line in text.splitlines():
        fields = line.split()
        sep = fields.index("-")
        opts = fields[5].split(",")
        rows.append((fields[4], fields[sep + 1], ",".join(o for o in opts if o in FLAG_WORDS)))
    return rows


def test_mounts_seen_inside(oci, ref_oci, bundle, tmp_path):
    host_dir = tmp_path / "shared"
    host_dir.mkdir()
    (host_dir / "file").write_text("from-host\n")
    extra = [{"destination": "/mnt/bind", "type": "bind", "source": str(host_dir), "options": ["rbind", "ro"]},
             {"destination": "/mnt/tmp", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "nodev", "noexec", "size=1m"]}]
    from helpers.bundle import DEFAULT_CONFIG
    b = bundle(["sh", "-c", "cat /proc/self/mountinfo; echo ==; cat /mnt/bind/file"],
               mounts=DEFAULT_CONFIG["mounts"] + extra)

    def norm(out):
        info, _, rest = out.partition("==\n")
        # runc mounts each v1 controller under /sys/fs/cgroup; compare that subtree apart.
        rows = normalise_mountinfo(info)
        # cgroup hierarchies below /sys/fs/cgroup (runc mounts each v1 controller) must be ro
        assert all(r[2].startswith("ro") for r in rows if r[0].startswith("/sys/fs/cgroup/")), rows
        # runc leaves the v1 tmpfs on /sys/fs/cgroup rw despite "ro": either is accepted
        return [(r[0], r[1], "*") if r[0] == "/sys/fs/cgroup" else r
                for r in rows if not r[0].startswith("/sys/fs/cgroup/")], rest

    rows, rest = observe(oci, ref_oci, b, normalize=norm)
    assert rest == "from-host\n"
    table = {mp: (fs, flags) for mp, fs, flags in rows}
    assert rows[0][0] == "/" and "ro" in rows[0][2].split(",")
    assert table["/proc"][0] == "proc"
    assert table["/dev"] == ("tmpfs", "rw,nosuid")
    assert table["/dev/pts"][0] == "devpts" and "noexec" in table["/dev/pts"][1]
    assert table["/dev/shm"] == ("tmpfs", "rw,nosuid,nodev,noexec")
    assert table["/dev/mqueue"] == ("mqueue", "rw,nosuid,nodev,noexec")
    assert table["/sys"] == ("sysfs", "ro,nosuid,nodev,noexec")
    assert "/sys/fs/cgroup" in table
    assert table["/mnt/bind"][1].split(",")[0] == "ro"
    assert table["/mnt/tmp"] == ("tmpfs", "rw,nosuid,nodev,noexec")
    # masked and read-only paths show up as mounts too
    assert "/proc/keys" in table and "/proc/timer_list" in table
    for ro_path in [p for p in ("/proc/sys", "/proc/bus", "/proc/sysrq-trigger") if os.path.exists(p)]:
        assert table[ro_path][1].split(",")[0] == "ro", ro_path


def test_masked_paths_read_empty(oci, ref_oci, bundle):
    files = [p for p in ("/proc/keys", "/proc/timer_list") if Path(p).exists() and Path(p).read_bytes()]
    dirs = [p for p in ("/proc/acpi", "/sys/firmware", "/proc/scsi") if Path(p).is_dir() and os.listdir(p)]
    assert files and dirs, "nothing on this host to mask"
    script = "; ".join([f"wc -c < {f}" for f in files] + [f"ls -A {d} | wc -l" for d in dirs])
    assert observe(oci, ref_oci, bundle(["sh", "-c", script])).split() == ["0"] * (len(files) + len(dirs))


def test_readonly_paths_refuse_writes(oci, ref_oci, bundle):
    caps = ["CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE"]
    # With CAP_SYS_ADMIN in its own uts namespace the write would succeed on a rw /proc/sys.
    script = "echo x > /proc/sys/kernel/domainname 2>/dev/null && echo wrote || echo refused; " \
             "grep -c ' /proc/sys ro,' /proc/self/mountinfo"
    b = bundle(["sh", "-c", script], process={"capabilities": {k: caps for k in ("bounding", "effective", "permitted")}})
    assert observe(oci, ref_oci, b).split() == ["refused", "1"]


@pytest.mark.parametrize("readonly", [True, False])
def test_readonly_root(oci, ref_oci, bundle, rootfs, readonly):
    b = bundle(["sh", "-c", "touch /probe 2>/dev/null && echo wrote || echo refused; rm -f /probe"],
               root={"readonly": readonly})
    assert observe(oci, ref_oci, b) == ("refused\n" if readonly else "wrote\n")


def normalise_ls_dev(text: str) -> list[str]:
    """`ls -l /dev` without link counts, sizes of non-devices, and dates."""
    rows = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 8 or line.startswith("total"):
            continue
        perms, owner, group = f[0], f[2], f[3]
        name = " ".join(f[f.index("->") - 1:]) if "->" in f else f[-1]
        devnum = f"{f[4]}{f[5]}" if perms[0] in "cb" else ""
        rows.append(f"{perms} {owner}:{group} {devnum} {name}".replace("  ", " "))
    return sorted(rows)


def test_dev_listing(oci, ref_oci, bundle):
    out = observe(oci, ref_oci, bundle(["ls", "-l", "/dev"]), normalize=normalise_ls_dev)
    text = "\n".join(out)
    for name, devnum in (("null", "1,3"), ("zero", "1,5"), ("full", "1,7"), ("random", "1,8"),
                         ("urandom", "1,9"), ("tty", "5,0")):
        assert re.search(rf"^crw-rw-rw- root:root {devnum} {name}$", text, re.M), name
    for link in ("ptmx -> pts/ptmx", "fd -> /proc/self/fd", "stdin -> /proc/self/fd/0",
                 "stdout -> /proc/self/fd/1", "stderr -> /proc/self/fd/2"):
        assert any(row.startswith("l") and row.endswith(link) for row in out), link
    for d in ("pts", "shm", "mqueue"):
        assert any(row.startswith("d") and row.endswith(f" {d}") for row in out), d


def test_linux_devices(oci, ref_oci, bundle):
    devices = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o640,
                "uid": 0, "gid": 5},
               {"path": "/dev/hutch-blk", "type": "b", "major": 7, "minor": 42, "fileMode": 0o600}]
    b = bundle(["sh", "-c", "stat -c '%n %F %t %T %a %g' /dev/fuse /dev/hutch-blk"],
               linux={"devices": devices})
    assert observe(oci, ref_oci, b).splitlines() == [
        "/dev/fuse character special file a e5 640 5",
        "/dev/hutch-blk block special file 7 2a 600 0"]


# -- kernel settings and namespaces ---------------------------------------------------------------
def test_sysctl(oci, ref_oci, bundle):
    b = bundle(["cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/shmmax"],
               linux={"sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456789"}})
    assert observe(oci, ref_oci, b).split() == ["1", "123456789"]
    # the host's values are untouched
    assert Path("/proc/sys/kernel/shmmax").read_text().strip() != "123456789"


@pytest.fixture
def netns():
    """A named network namespace (ip netns add), removed at teardown."""
    name = f"hutch-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield Path("/run/netns") / name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_join_network_namespace_by_path(oci, ref_oci, bundle, netns):
    from helpers.bundle import DEFAULT_CONFIG
    namespaces = [ns for ns in DEFAULT_CONFIG["linux"]["namespaces"] if ns["type"] != "network"]
    namespaces.append({"type": "network", "path": str(netns)})
    b = bundle(["readlink", "/proc/self/ns/net"], linux={"namespaces": namespaces})
    assert observe(oci, ref_oci, b) == f"net:[{os.stat(netns).st_ino}]\n"


@pytest.fixture
def open_bundle(busybox_rootfs):
    """Factory like ``bundle`` but in a world-traversable directory: a mapped root in a
    user namespace must be able to reach the rootfs (pytest's tmp dirs are 0700)."""
    from helpers.bundle import make_bundle
    top = Path(tempfile.mkdtemp(prefix="hutch-open-", dir="/tmp"))
    os.chmod(top, 0o755)
    shutil.copytree(busybox_rootfs, top / "rootfs", symlinks=True)
    try:
        yield lambda args, **overrides: make_bundle(top, top / "rootfs", args, **overrides)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_user_namespace_mappings(oci, ref_oci, open_bundle):
    from helpers.bundle import DEFAULT_CONFIG
    bundle = open_bundle
    namespaces = DEFAULT_CONFIG["linux"]["namespaces"] + [{"type": "user"}]
    # A cgroup v1 hierarchy cannot be mounted from a user namespace: leave /sys/fs/cgroup out.
    mounts = [m for m in DEFAULT_CONFIG["mounts"] if m["destination"] != "/sys/fs/cgroup"]
    b = bundle(["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c %u /bin/busybox"],
               mounts=mounts,
               linux={"namespaces": namespaces,
                      "uidMappings": [{"containerID": 0, "hostID": 200000, "size": 65536}],
                      "gidMappings": [{"containerID": 0, "hostID": 300000, "size": 65536}]})
    out = observe(oci, ref_oci, b, normalize=lambda s: [" ".join(l.split()) for l in s.splitlines()])
    # the rootfs is owned by host root, which is unmapped: it shows as the overflow uid
    assert out == ["0 200000 65536", "0 300000 65536", "0", "65534"]


def test_seccomp_denies_mkdir(oci, ref_oci, bundle):
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 122}]}
    script = "touch /tmp/file && echo touched; mkdir /tmp/dir 2>&1; [ -d /tmp/dir ] || echo no-dir"
    b = bundle(["sh", "-c", script], root={"readonly": False}, linux={"seccomp": seccomp})
    out = observe(oci, ref_oci, b, normalize=lambda s: s.replace("mkdir: can't create directory '/tmp/dir': ", ""))
    assert out.splitlines() == ["touched", "Disk quota exceeded", "no-dir"]
    # the filter is installed in the process
    b2 = bundle(["grep", "^Seccomp:", "/proc/self/status"], linux={"seccomp": seccomp})
    assert observe(oci, ref_oci, b2).split() == ["Seccomp:", "2"]


def test_personality_linux32(oci, bundle):
    if oci.is_runc:
        pytest.skip("runc 1.1 does not implement linux.personality")
    host = subprocess.run(["setarch", "linux32", "uname", "-m"], capture_output=True, text=True).stdout
    res = oci.run(new_id(), bundle(["uname", "-m"], linux={"personality": {"domain": "LINUX32"}}))
    assert res.returncode == 0, res.stderr
    assert res.stdout == host == "i686\n"


def test_time_namespace_offsets(oci, bundle):
    if oci.is_runc:
        pytest.skip("runc 1.1 does not implement the time namespace")
    from helpers.bundle import DEFAULT_CONFIG
    namespaces = DEFAULT_CONFIG["linux"]["namespaces"] + [{"type": "time"}]
    offsets = {"monotonic": {"secs": 1000, "nanosecs": 5}, "boottime": {"secs": 2000, "nanosecs": 0}}
    res = oci.run(new_id(), bundle(["cat", "/proc/self/timens_offsets"],
                                   linux={"namespaces": namespaces, "timeOffsets": offsets}))
    assert res.returncode == 0, res.stderr
    # the peer: util-linux unshare writes the same offsets
    peer = subprocess.run(["unshare", "--time", "--fork", "--monotonic", "1000", "--boottime", "2000",
                           "cat", "/proc/self/timens_offsets"], capture_output=True, text=True)
    got = [line.split() for line in res.stdout.splitlines()]
    assert got == [["monotonic", "1000", "5"], ["boottime", "2000", "0"]], res.stdout
    assert [line.split()[:2] for line in peer.stdout.splitlines()] == [g[:2] for g in got]


def test_cgroups_path(oci, bundle):
    cid = new_id()
    cg = f"/hutch-test-cg-{uuid.uuid4().hex[:8]}"
    try:
        _check_cgroups_path(oci, bundle, cid, cg)
    finally:
        remove_cgroups_named(cg.lstrip("/"))  # only acts when the runtime left it behind


def _check_cgroups_path(oci, bundle, cid: str, cg: str) -> None:
    res = oci.create(cid, bundle(["sleep", "1000"], linux={"cgroupsPath": cg}))
    assert res.returncode == 0, res.stderr
    pid = oci.state_json(cid)["pid"]
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    by_controller = {}
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(","):
            by_controller[c] = path
    for controller in ("memory", "pids", "cpu", "devices", "freezer"):
        assert by_controller.get(controller) == cg, (controller, lines)
        assert str(pid) in Path(f"/sys/fs/cgroup/{controller}{cg}/cgroup.procs").read_text().split()
    assert oci.delete(cid, force=True).returncode == 0
    for controller in ("memory", "pids"):
        assert not Path(f"/sys/fs/cgroup/{controller}{cg}").exists(), "cgroup left after delete"


def test_namespaces_new_or_shared(oci, ref_oci, bundle):
    """Listed namespaces are new; the network namespace, left out, is the host's."""
    from helpers.bundle import DEFAULT_CONFIG
    namespaces = [ns for ns in DEFAULT_CONFIG["linux"]["namespaces"] if ns["type"] != "network"]
    kinds = ["net", "mnt", "pid", "ipc", "uts", "cgroup", "user"]
    script = "for n in %s; do readlink /proc/self/ns/$n; done; echo $$" % " ".join(kinds)
    b = bundle(["sh", "-c", script], linux={"namespaces": namespaces})
    host = [os.readlink(f"/proc/self/ns/{k}") for k in kinds]

    def same_as_host(out):
        lines = out.split()
        return [line == h for line, h in zip(lines, host)] + lines[len(kinds):]

    assert observe(oci, ref_oci, b, normalize=same_as_host) == [True, False, False, False, False, False, True, "1"]


def _stat_fields(text: str) -> list[str]:
    """/proc/PID/stat fields from field 3 (state) on: index = field number - 3."""
    return text.rsplit(")", 1)[1].split()


def test_scheduler(oci, bundle):
    if oci.is_runc:
        pytest.skip("runc 1.1 does not implement process.scheduler")
    b = bundle(["cat", "/proc/self/stat"], process={"scheduler": {"policy": "SCHED_BATCH", "nice": 7}})
    res = oci.run(new_id(), b)
    assert res.returncode == 0, res.stderr
    fields = _stat_fields(res.stdout)
    assert (fields[41 - 3], fields[19 - 3]) == ("3", "7")  # policy SCHED_BATCH, nice 7


def test_io_priority(oci, bundle):
    if oci.is_runc:
        pytest.skip("runc 1.1 does not implement process.ioPriority")
    b = bundle(["sh", "-c", "ionice -p $$"], process={"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 6}})
    res = oci.run(new_id(), b)
    assert (res.returncode, res.stdout) == (0, "best-effort: prio 6\n"), res.stderr


def test_tmpfs_mount_options(oci, ref_oci, bundle, busybox_rootfs, tmp_path):
    from helpers.bundle import DEFAULT_CONFIG, make_bundle
    tmpfs = {"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs",
             "options": ["mode=710", "size=2m", "uid=5", "gid=6", "noatime"]}
    args = ["sh", "-c", "stat -c '%a %u %g' /mnt/t; df -k /mnt/t | tail -1; grep ' /mnt/t ' /proc/self/mountinfo"]
    b = bundle(args, mounts=DEFAULT_CONFIG["mounts"] + [tmpfs])
    # runc 1.1 lets an existing mountpoint's mode override mode=: give it a fresh rootfs
    ref_rootfs = tmp_path / "ref-rootfs"
    shutil.copytree(busybox_rootfs, ref_rootfs, symlinks=True)
    ref_b = make_bundle(tmp_path, ref_rootfs, args, name="ref-bundle", mounts=DEFAULT_CONFIG["mounts"] + [tmpfs])

    def norm(out):
        lines = out.splitlines()
        return [lines[0], lines[1].split()[1], lines[2].split()[5]]

    assert observe(oci, ref_oci, b, normalize=norm, ref_bundle=ref_b) == ["710 5 6", "2048", "rw,noatime"]


@pytest.fixture
def shared_host_mount(tmp_path):
    """A tmpfs on the host made shared (a peer group to propagate from); unmounted after."""
    src = tmp_path / "shared-src"
    src.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "hutch-test-src", str(src)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(src)], check=True)
        yield src
    finally:
        subprocess.run(["umount", "-R", "-l", str(src)], capture_output=True)


def test_mount_propagation_flags(oci, ref_oci, bundle, shared_host_mount):
    """A host mount made after the container started reaches rslave and rshared bind
    mounts, not rprivate ones."""
    from helpers.bundle import DEFAULT_CONFIG
    from helpers.oci import runtimes
    src = shared_host_mount
    binds = [{"destination": f"/mnt/{p}", "type": "bind", "source": str(src), "options": ["rbind", f"r{p}"]}
             for p in ("slave", "private", "shared")]
    b = bundle(["sleep", "1000"], mounts=DEFAULT_CONFIG["mounts"] + binds)
    started = []
    for rt in runtimes(oci, ref_oci):
        cid = new_id()
        assert rt.create(cid, b).returncode == 0
        assert rt.start(cid).returncode == 0
        started.append((rt, cid))
    (src / "sub").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "hutch-test-sub", str(src / "sub")], check=True)
    (src / "sub" / "marker").touch()
    probe = "for d in slave private shared; do [ -e /mnt/$d/sub/marker ] && echo $d:yes || echo $d:no; done"
    for rt, cid in started:
        res = rt.exec(cid, "sh", "-c", probe)
        assert (rt.name, res.returncode, res.stdout.split()) == (
            rt.name, 0, ["slave:yes", "private:no", "shared:yes"]), res.stderr
        assert rt.delete(cid, force=True).returncode == 0
