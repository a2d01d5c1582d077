"""`hutch ns ls`, `hutch ns enter` and `hutch netns` against lsns, nsenter and ip netns.

The namespaces are made by the test through the peer tools (unshare, ip netns),
both tools look at the same live state, and their answers are compared field by
field.  Other things run on this machine at the same time, so comparisons are
restricted to the namespaces the test made."""

from __future__ import annotations

import json
import os
import signal
import random
import shutil
import subprocess
import time
import uuid

import pytest

from helpers.host import wait_child as _wait_child

from hutch.oci import state as oci_state
from hutch.syscall import proc

pytestmark = [pytest.mark.priv, pytest.mark.peer]

ALL_COLUMNS = "NS,TYPE,NPROCS,PID,PPID,USER,COMMAND,NETNSID,NSFS,PNS,ONS,PATH,UID"


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 60)
    return subprocess.run(cmd, **kw)


def _ino(pid, ns_type) -> int:
    return os.stat(f"/proc/{pid}/ns/{ns_type}").st_ino


class Spawned:
    """Processes started by a test, killed at teardown even if the test failed: each in a
    process group of its own, killed as a group, so what it forked goes too (a shell's
    child is no child of `unshare --kill-child`)."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def unshare(self, *args: str, comm: str = "sleep") -> int:
        """`unshare --kill-child ARGS`; returns the pid of the forked inner process."""
        p = subprocess.Popen(["unshare", "--kill-child", *args], start_new_session=True)
        self.procs.append(p)
        return _wait_child(p.pid, comm)

    def start(self, *args: str) -> subprocess.Popen:
        p = subprocess.Popen(list(args), start_new_session=True)
        self.procs.append(p)
        return p

    def close(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


@pytest.fixture
def spawn():
    spawned = Spawned()
    yield spawned
    spawned.close()


@pytest.fixture
def netns_names():
    """Factory of unique hutch-test-* netns names; whatever exists at the end is deleted."""
    made: list[str] = []

    def new() -> str:
        name = f"hutch-test-{uuid.uuid4().hex[:8]}"
        made.append(name)
        return name
    yield new
    for name in made:
        path = f"/run/netns/{name}"
        if os.path.lexists(path):
            subprocess.run(["umount", "-l", path], capture_output=True)
            os.unlink(path)


@pytest.fixture
def sleeper(spawn):
    """A process in new pid, mnt, uts, ipc, net, cgroup namespaces, hostname set."""
    return spawn.unshare("-fpmuinC", "--mount-proc", "sh", "-c",
                         "hostname hutch-nstools; cd /tmp; exec sleep 600")


@pytest.fixture
def user_sleeper(spawn):
    return spawn.unshare("-Urfp", "sleep", "600")


def lsns_rows(*args: str) -> list[dict]:
    result = run(["lsns", "-J", *args])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["namespaces"] if result.stdout.strip() else []


def hutch_rows(hutch_bin: str, *args: str) -> list[dict]:
    result = run([hutch_bin, "ns", "ls", "--json", *args])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["namespaces"]


def by_ns(rows: list[dict]) -> dict[int, dict]:
    """Rows by inode, trees flattened (the "children" key is compared separately)."""
    out = {}
    for row in rows:
        out[row["ns"]] = {k: v for k, v in row.items() if k != "children"}
        out.update(by_ns(row.get("children", [])))
    return out


def assert_same_rows(ours: dict, theirs: dict, inodes: set[int]) -> None:
    """Every field of every listed namespace equal, value types included."""
    for ino in inodes:
        assert ino in theirs and ino in ours, ino
        for key, value in theirs[ino].items():
            assert ours[ino][key] == value, (ino, key, ours[ino][key], value)
            assert type(ours[ino][key]) is type(value), (ino, key)
        assert set(ours[ino]) == set(theirs[ino])


# --- hutch ns ls vs lsns ----------------------------------------------------------------

def test_ls_json_matches_lsns_for_process_namespaces(hutch_bin, sleeper, user_sleeper):
    made = {_ino(pid, t) for pid in (sleeper, user_sleeper)
            for t in ("pid", "mnt", "uts", "ipc", "net", "cgroup", "user")}
    made -= {_ino("self", t) for t in ("user", "cgroup", "mnt", "net", "uts", "ipc")}
    their_tree = lsns_rows("-o", ALL_COLUMNS)
    our_tree = hutch_rows(hutch_bin, "-o", ALL_COLUMNS)
    assert len(made) == 8
    assert_same_rows(by_ns(our_tree), by_ns(their_tree), made)
    # lsns nests rows by process parentage by default; so do we
    theirs, ours = _tree_parents(their_tree), _tree_parents(our_tree)
    for ino in made:
        assert ours[ino] == theirs[ino], ino
    assert any(theirs[ino] is not None for ino in made)     # the check has teeth
    # and -l gives the same rows flat
    flat = hutch_rows(hutch_bin, "-l", "-o", "NS,TYPE")
    assert all("children" not in row for row in flat)
    assert {r["ns"] for r in flat} >= made


def test_ls_json_matches_lsns_for_a_named_netns(hutch_bin, spawn, netns_names):
    name = netns_names()
    assert run(["ip", "netns", "add", name]).returncode == 0
    nsid = str(random.randrange(1000, 60000))      # ids are per netns: avoid others' ones
    assert run(["ip", "netns", "set", name, nsid]).returncode == 0
    p = spawn.start("ip", "netns", "exec", name, "sleep", "600")
    ino = os.stat(f"/run/netns/{name}").st_ino
    for _ in range(500):                  # until the sleeper runs inside
        if any(_ino(c, "net") == ino for c in [p.pid] if os.path.exists(f"/proc/{c}")):
            break
        time.sleep(0.01)
    theirs = by_ns(lsns_rows("-t", "net", "-o", ALL_COLUMNS))
    ours = by_ns(hutch_rows(hutch_bin, "-t", "net", "-o", ALL_COLUMNS))
    assert theirs[ino]["netnsid"] == nsid and theirs[ino]["nsfs"] == f"/run/netns/{name}"
    assert_same_rows(ours, theirs, {ino})


@pytest.mark.parametrize("args", [[], ["-t", "net"], ["-t", "pid", "-t", "user"]])
def test_ls_default_columns_are_lsns_plus_container(hutch_bin, sleeper, args):
    theirs = lsns_rows(*args)
    ours = hutch_rows(hutch_bin, *args)
    their_keys = {frozenset(row) for row in by_ns(theirs).values()}
    our_keys = {frozenset(row) for row in by_ns(ours).values()}
    assert our_keys == {keys | {"container"} for keys in their_keys}
    assert {r["type"] for r in by_ns(ours).values()} == {r["type"] for r in by_ns(theirs).values()}


def test_ls_pid_filter_matches_lsns(hutch_bin, sleeper):
    columns = "NS,TYPE,NPROCS,PID,PPID,USER,COMMAND,PNS,ONS"
    theirs = lsns_rows("-p", str(sleeper), "-o", columns)
    ours = hutch_rows(hutch_bin, "-p", str(sleeper), "-o", columns)
    assert {r["ns"] for r in ours} == {r["ns"] for r in theirs}
    mine = {_ino(sleeper, t) for t in ("pid", "mnt", "uts", "ipc", "net", "cgroup")}
    assert_same_rows(by_ns(ours), by_ns(theirs), mine)


def _tree_parents(nodes: list[dict], parent: int | None = None, out=None) -> dict[int, int | None]:
    out = {} if out is None else out
    for node in nodes:
        out[node["ns"]] = parent
        _tree_parents(node.get("children", []), node["ns"], out)
    return out


@pytest.mark.parametrize("relation", ["owner", "parent"])
def test_tree_matches_lsns(hutch_bin, user_sleeper, relation):
    inner = {_ino(user_sleeper, t) for t in ("user", "pid")}
    theirs = _tree_parents(lsns_rows(f"--tree={relation}", "-o", "NS,TYPE"))
    ours = _tree_parents(hutch_rows(hutch_bin, f"--tree={relation}", "-o", "NS,TYPE"))
    for ino in inner:
        assert ours[ino] == theirs[ino], (ino, ours[ino], theirs[ino])
    # and the relation is the kernel's: the new pid ns hangs under its owner / parent
    pidns = _ino(user_sleeper, "pid")
    expected = _ino(user_sleeper, "user") if relation == "owner" else _ino("self", "pid")
    assert ours[pidns] == expected


# Types without named netns: lsns 2.38 does not list namespaces that only a mount
# keeps, hutch does; on the others both must print the very same bytes.
PROCESS_TYPES = ["-t", "mnt", "-t", "pid", "-t", "uts", "-t", "ipc", "-t", "user", "-t", "cgroup"]


def _same_bytes_as_lsns(hutch_bin: str, args: list[str]) -> tuple[str, str]:
    """hutch's and lsns's output of the same arguments, retried while processes of
    other tests come and go between the two runs (NPROCS, new rows)."""
    for _ in range(20):
        theirs = run(["lsns", *args])
        ours = run([hutch_bin, "ns", "ls", *args])
        assert theirs.returncode == 0 and ours.returncode == 0, (theirs.stderr, ours.stderr)
        if ours.stdout == theirs.stdout:
            break
    return ours.stdout, theirs.stdout


@pytest.mark.parametrize("args", [
    ["-J", "-o", "NS,TYPE"],                     # no tree column: flat, in lsns's line order
    ["-J", "-o", "NS,TYPE,COMMAND"],             # COMMAND: the process tree nests
    ["-J", "-o", "NS,TYPE,NPROCS,PID,USER,COMMAND"],
    ["-J", "--tree", "-o", "NS,TYPE,PID"],       # owner tree, NS is its tree column
    ["-J", "--tree=owner", "-o", "TYPE,PID"],    # no NS: flat, owners added first
    ["-J", "--tree=parent", "-o", "NS,TYPE,PNS,ONS"],
    ["-J", "--tree=process", "-o", "NS,PPID,COMMAND"],
    ["-J", "-l", "-o", "NS,TYPE,COMMAND"],
    ["-o", "NS,TYPE,PID,COMMAND"],               # the table: tree art only in the tree column
    ["--tree=parent", "-o", "NS,TYPE,PID"],
    ["-p", "2", "-o", "TYPE,PID,PPID"],          # 1-digit pids: the columns keep their heading width
    ["-n", "-o", "TYPE,NPROCS,PID"],             # widths count the unprinted headings and hints
    ["--tree=owner", "-o", "TYPE,NS,UID"],
])
def test_ls_output_is_lsns_byte_for_byte(hutch_bin, sleeper, user_sleeper, args):
    ours, theirs = _same_bytes_as_lsns(hutch_bin, [*args, *PROCESS_TYPES])
    assert ours == theirs
    # the sleepers' rows are in it, so the cases above see nested namespaces too
    assert str(_ino(user_sleeper, "user")) in ours or "NS" not in ",".join(args)


def test_ls_nests_only_with_the_tree_column(hutch_bin, spawn):
    # sh's mount namespace and, under it by process parentage, sleep's network namespace
    spawn.unshare("-m", "sh", "-c", "unshare -n sleep 600", comm="sh")
    theirs = {tuple(cols): lsns_rows(*PROCESS_TYPES, "-t", "net", "-o", ",".join(cols))
              for cols in (["NS", "TYPE"], ["NS", "TYPE", "COMMAND"])}
    ours = {cols: hutch_rows(hutch_bin, *PROCESS_TYPES, "-t", "net", "-o", ",".join(cols))
            for cols in theirs}
    nested = [row for row in theirs[("NS", "TYPE", "COMMAND")] if "children" in row]
    assert nested                                              # lsns nests with COMMAND...
    assert not any("children" in row for row in theirs[("NS", "TYPE")])   # ...and not without
    assert not any("children" in row for row in ours[("NS", "TYPE")])
    assert _tree_parents(ours[("NS", "TYPE", "COMMAND")]).items() >= {
        (child["ns"], row["ns"]) for row in nested for child in row["children"]}
    # --output-all: lsns has no default tree then
    assert not any("children" in row for row in hutch_rows(hutch_bin, "--output-all"))
    assert not any("children" in row for row in lsns_rows("--output-all"))


def test_ls_shows_namespaces_kept_by_mounts(hutch_bin, netns_names):
    # lsns 2.38 does not list namespaces without processes; the kernel's answer is stat().
    name = netns_names()
    assert run(["ip", "netns", "add", name]).returncode == 0
    ino = os.stat(f"/run/netns/{name}").st_ino
    row = by_ns(hutch_rows(hutch_bin, "-t", "net", "-o", "NS,TYPE,NPROCS,PID,NSFS,NETNSID"))[ino]
    assert row == {"ns": ino, "type": "net", "nprocs": 0, "pid": None,
                   "nsfs": f"/run/netns/{name}", "netnsid": "unassigned"}


def test_ls_container_column(hutch_bin, sleeper, tmp_path):
    root = str(tmp_path / "runtime")
    os.makedirs(f"{root}/hutch-test-web")
    oci_state.save(root, oci_state.State(id="hutch-test-web", bundle=str(tmp_path), pid=sleeper,
                                         pid_start=proc.start_time(sleeper), status="running"))
    ours = by_ns(hutch_rows(hutch_bin, "--root", root, "-o", "NS,TYPE,CONTAINER"))
    assert ours[_ino(sleeper, "net")]["container"] == "hutch-test-web"
    assert ours[_ino(sleeper, "pid")]["container"] == "hutch-test-web"
    assert ours[_ino("self", "net")]["container"] is None
    table = run([hutch_bin, "--root", root, "ns", "ls", "-t", "uts"]).stdout
    line = [l for l in table.splitlines() if l.split()[0] == str(_ino(sleeper, "uts"))]
    assert line and "hutch-test-web" in line[0]


@pytest.mark.parametrize("args, message", [
    (["-t", "bogus"], "unknown namespace type"),
    (["-p", "4194311"], "no process"),
    (["-o", "NS,NOPE"], "unknown column"),
])
def test_ls_bad_input(hutch_bin, args, message):
    result = run([hutch_bin, "ns", "ls", *args])
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr


# --- hutch ns enter vs nsenter ---------------------------------------------------------

# $$ is tiny in the sleeper's pid namespace, large (host pids are in the thousands) outside
PROBE = ("hostname; echo small-pid=$(( $$ < 500 )); pwd; for t in mnt uts ipc net pid cgroup user; "
         "do readlink /proc/self/ns/$t; done; id -u; id -g")


def both(hutch_bin: str, args: list[str], cmd: list[str]):
    ours = run([hutch_bin, "ns", "enter", *args, "--", *cmd])
    theirs = run(["nsenter", *args, "--", *cmd])
    return ours, theirs


@pytest.mark.parametrize("args", [["-a"], ["-p", "-m", "-u"], ["-n", "-i"], ["-u", "-F"],
                                  ["-m", "-r", "-w"], ["-a", "-S", "1", "-G", "2"]])
def test_enter_matches_nsenter(hutch_bin, sleeper, args):
    ours, theirs = both(hutch_bin, ["-t", str(sleeper), *args], ["sh", "-c", PROBE])
    assert theirs.returncode == 0, theirs.stderr
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), ours.stderr


def test_enter_user_namespace_matches_nsenter(hutch_bin, user_sleeper):
    for args in (["-U", "-p"], ["-a"], ["-U", "--preserve-credentials"]):
        ours, theirs = both(hutch_bin, ["-t", str(user_sleeper), *args],
                            ["sh", "-c", PROBE + "; cat /proc/self/uid_map"])
        assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), args


def test_enter_namespace_files(hutch_bin, sleeper, netns_names):
    name = netns_names()
    assert run(["ip", "netns", "attach", name, str(sleeper)]).returncode == 0
    ours, theirs = both(hutch_bin, [f"--net=/run/netns/{name}", f"--uts=/proc/{sleeper}/ns/uts"],
                        ["sh", "-c", "hostname; readlink /proc/self/ns/net"])
    assert ours.stdout == theirs.stdout == f"hutch-nstools\nnet:[{_ino(sleeper, 'net')}]\n"


@pytest.mark.parametrize("script, code", [("exit 3", 3), ("kill -TERM $$", -15),
                                          ("kill -KILL $$", -9)])
def test_enter_passes_on_exit_status_and_signal(hutch_bin, sleeper, script, code):
    ours, theirs = both(hutch_bin, ["-t", str(sleeper), "-p"], ["sh", "-c", script])
    assert ours.returncode == theirs.returncode == code


def test_enter_default_shell(hutch_bin, sleeper):
    env = dict(os.environ, SHELL="/bin/sh")
    ours = run([hutch_bin, "ns", "enter", "-t", str(sleeper), "-u"], input="hostname\n", env=env)
    theirs = run(["nsenter", "-t", str(sleeper), "-u"], input="hostname\n", env=env)
    assert ours.stdout == theirs.stdout == "hutch-nstools\n"


def test_enter_container_by_id(hutch_bin, spawn, sleeper, tmp_path):
    root = str(tmp_path / "runtime")
    os.makedirs(f"{root}/hutch-test-web")
    oci_state.save(root, oci_state.State(id="hutch-test-web", bundle=str(tmp_path), pid=sleeper,
                                         pid_start=proc.start_time(sleeper), status="running"))
    ours = run([hutch_bin, "--root", root, "ns", "enter", "hutch-test-web", "sh", "-c", PROBE])
    theirs = run(["nsenter", "-t", str(sleeper), "-a", "sh", "-c", PROBE])
    assert (ours.returncode, ours.stdout) == (0, theirs.stdout), ours.stderr
    ours = run([hutch_bin, "--root", root, "ns", "enter", "-n", "hutch-test-web", "--",
                "readlink", "/proc/self/ns/net"])
    assert ours.stdout == f"net:[{_ino(sleeper, 'net')}]\n"
    # a dead container: its recorded process is gone
    gone = spawn.start("true")
    gone.wait()
    os.makedirs(f"{root}/hutch-test-dead")
    oci_state.save(root, oci_state.State(id="hutch-test-dead", bundle=str(tmp_path), pid=gone.pid,
                                         pid_start=12345, status="running"))
    result = run([hutch_bin, "--root", root, "ns", "enter", "hutch-test-dead", "true"])
    assert result.returncode == 1 and "not running" in result.stderr
    assert result.stderr.count("\n") == 1
    result = run([hutch_bin, "--root", root, "ns", "enter", "hutch-test-none", "true"])
    assert result.returncode == 1 and "does not exist" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["-t", "4194311", "-n"], "no process"),
    (["-n/nonexistent/file"], "cannot open"),
    (["-t", "1", "--bogus"], "unknown option"),
    (["-n"], "neither filename nor target pid"),
])
def test_enter_bad_input(hutch_bin, args, message):
    result = run([hutch_bin, "ns", "enter", *args, "--", "true"])
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


def test_enter_without_privilege(hutch_bin, sleeper):
    # In a user namespace of our own we have no rights over the sleeper's namespaces.
    ours = run(["unshare", "-r", hutch_bin, "ns", "enter", "-t", str(sleeper), "-n", "true"])
    theirs = run(["unshare", "-r", "nsenter", "-t", str(sleeper), "-n", "true"])
    assert theirs.returncode != 0 and ours.returncode != 0
    assert "Permission denied" in ours.stderr and ours.stderr.count("\n") == 1


# --- hutch netns vs ip netns ----------------------------------------------------------

def _mounted(path: str) -> bool:
    return any(m.mount_point == path for m in proc.read_mountinfo())


def test_netns_add_list_del_interoperate(hutch_bin, netns_names):
    ip_made, ours_made = netns_names(), netns_names()
    assert run(["ip", "netns", "add", ip_made]).returncode == 0
    assert run([hutch_bin, "netns", "add", ours_made]).returncode == 0
    # same kind of object: an nsfs bind mount on a shared /run/netns
    assert _mounted(f"/run/netns/{ours_made}")
    run_netns = [m for m in proc.read_mountinfo() if m.mount_point == "/run/netns"]
    assert run_netns and any(o.startswith("shared:") for o in run_netns[-1].optional)
    id_ip, id_ours = random.sample(range(1000, 60000), 2)
    assert run(["ip", "netns", "set", ip_made, str(id_ip)]).returncode == 0
    assert run([hutch_bin, "netns", "set", ours_made, str(id_ours)]).returncode == 0
    theirs = run(["ip", "netns", "list"]).stdout.splitlines()
    ours = run([hutch_bin, "netns", "list"]).stdout.splitlines()
    mine = lambda lines: [l for l in lines if l.split()[0] in (ip_made, ours_made)]  # noqa: E731
    assert mine(ours) == mine(theirs)
    assert f"{ip_made} (id: {id_ip})" in mine(ours) and f"{ours_made} (id: {id_ours})" in mine(ours)
    # the new netns is a real, separate network stack
    links = run(["ip", "-n", ours_made, "-o", "link"]).stdout
    assert links.count("\n") == 1 and "lo:" in links
    # each tool deletes what the other made
    assert run([hutch_bin, "netns", "del", ip_made]).returncode == 0
    assert run(["ip", "netns", "del", ours_made]).returncode == 0
    listing = run(["ip", "netns", "list"]).stdout + run([hutch_bin, "netns", "list"]).stdout
    assert ip_made not in listing and ours_made not in listing
    assert not _mounted(f"/run/netns/{ip_made}") and not os.path.exists(f"/run/netns/{ip_made}")


def test_netns_pids_identify_attach(hutch_bin, spawn, sleeper, netns_names):
    name, attached = netns_names(), netns_names()
    assert run([hutch_bin, "netns", "add", name]).returncode == 0
    p = spawn.start("ip", "netns", "exec", name, "sleep", "600")
    for _ in range(500):
        if _ino(p.pid, "net") == os.stat(f"/run/netns/{name}").st_ino:
            break
        time.sleep(0.01)
    for args in (["pids", name], ["identify", str(p.pid)]):
        ours, theirs = run([hutch_bin, "netns", *args]), run(["ip", "netns", *args])
        assert ours.stdout == theirs.stdout and ours.stdout, args
    assert run([hutch_bin, "netns", "pids", name]).stdout == f"{p.pid}\n"
    assert run([hutch_bin, "netns", "attach", attached, str(sleeper)]).returncode == 0
    assert run(["ip", "netns", "identify", str(sleeper)]).stdout == f"{attached}\n"
    assert os.stat(f"/run/netns/{attached}").st_ino == _ino(sleeper, "net")


def test_netns_exec_matches_ip(hutch_bin, netns_names):
    name = netns_names()
    assert run(["ip", "netns", "add", name]).returncode == 0
    etc_dir = f"/etc/netns/{name}"
    made_etc_netns = not os.path.exists("/etc/netns")
    os.makedirs(etc_dir)
    try:
        with open(f"{etc_dir}/hosts", "w") as f:
            f.write("10.9.8.7 hutch-test-host\n")
        probe = ["sh", "-c", "readlink /proc/self/ns/net; ls /sys/class/net; cat /etc/hosts; "
                 "grep -c ' /sys ' /proc/self/mounts"]
        ours = run([hutch_bin, "netns", "exec", name, *probe])
        theirs = run(["ip", "netns", "exec", name, *probe])
        assert ours.returncode == theirs.returncode == 0, ours.stderr
        assert ours.stdout == theirs.stdout
        assert "lo\n10.9.8.7 hutch-test-host\n" in ours.stdout
        # and nothing of it leaked into our mount namespace
        assert not _mounted("/etc/hosts") or "hutch-test-host" not in open("/etc/hosts").read()
        assert run([hutch_bin, "netns", "exec", name, "sh", "-c", "exit 5"]).returncode == 5
    finally:
        shutil.rmtree(etc_dir)
        if made_etc_netns:
            os.rmdir("/etc/netns")


def _only_line(result) -> str:
    assert result.returncode != 0 and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def test_netns_bad_input_leaves_nothing(hutch_bin, netns_names):
    name = netns_names()
    assert run([hutch_bin, "netns", "add", name]).returncode == 0
    ino = os.stat(f"/run/netns/{name}").st_ino
    assert "already exists" in _only_line(run([hutch_bin, "netns", "add", name]))
    assert os.stat(f"/run/netns/{name}").st_ino == ino          # untouched
    assert [m.mount_point for m in proc.read_mountinfo()].count(f"/run/netns/{name}") == 1
    missing = netns_names()
    before = set(os.listdir("/run/netns"))
    assert "no process" in _only_line(run([hutch_bin, "netns", "attach", missing, "4194311"]))
    assert "does not exist" in _only_line(run([hutch_bin, "netns", "del", missing]))
    assert "does not exist" in _only_line(run([hutch_bin, "netns", "set", missing, "3"]))
    assert "invalid" in _only_line(run([hutch_bin, "netns", "add", "a/b"]))
    assert "invalid nsid" in _only_line(run([hutch_bin, "netns", "set", name, "x"]))
    assert set(os.listdir("/run/netns")) == before


def test_netns_add_without_privilege_leaves_nothing(hutch_bin, netns_names):
    name = netns_names()
    result = run(["unshare", "-r", hutch_bin, "netns", "add", name])
    assert "Operation not permitted" in _only_line(result)
    assert not os.path.lexists(f"/run/netns/{name}") and not _mounted(f"/run/netns/{name}")
