"""The Kubernetes path: containerd's CRI plugin (what the kubelet talks to) runs pods through
the runc shim with the runtime under test as its BinaryName, driven over gRPC from Python.

One pod lifecycle per runtime handler (`runc`, then `hutch`), each on a containerd of its own
(private socket, root, state, CNI config; see helpers/cri.py): a CNI address, a port mapping
reached on 127.0.0.1, ExecSync, the container logs, a locked-down container whose seccomp,
uid, read-only root, no_new_privs and memory limit are checked from inside; then the
teardown, after which the host must be as it was.  The last test compares what hutch's pod
saw with what runc's saw.

Prove against runc:  HUTCH_TEST_RUNTIME=/usr/sbin/runc pytest tests/integration/test_cri.py
(the `hutch` handler then runs runc too).
"""

from __future__ import annotations

import ipaddress
import os
import time
from pathlib import Path

import pytest

from helpers.cri import (SUBNET, CriContainerd, cri_log_lines, dnat_rules_for, fetch,
                         free_local_port, missing_prerequisites, portmap_chains)
from helpers.engines import mounts_under, run

pytestmark = [pytest.mark.priv, pytest.mark.peer]

HANDLERS = ("runc", "hutch")
POD_HOSTNAME = "hutch-cri-pod"
MEMORY_LIMIT = 64 << 20
# Output of the probes, one per line: what the locked-down container's settings look like
# from inside.  `touch /` fails for uid 1000 anyway; the error text tells EROFS from EACCES.
PROBES = ("grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; id -u; "
          "touch /probe 2>&1 || true; cat /sys/fs/cgroup/memory/memory.limit_in_bytes")
# The web container: greets on stdout and stderr, serves its hostname on 8080 with a
# background nc, and exits 0 on SIGTERM.  The nc outlives the shell: the shim's `kill --all`
# after the shell's exit is what must end it (the pod shares one pid namespace).
WEB = ("echo hello-stdout; echo hello-stderr >&2; trap 'exit 0' TERM; "
       "nc -ll -p 8080 -e hostname & sleep 600 & wait")
LOCKED = f"{PROBES}; trap 'exit 0' TERM; sleep 600 & wait"
# What each test's pod saw, by handler, for the comparison at the end.
OBSERVED: dict[str, dict] = {}


@pytest.fixture
def cri(tmp_path_factory, busybox_rootfs, runtime, runc_bin):
    """A containerd of its own with the CRI plugin and handlers runc and hutch."""
    why = missing_prerequisites()
    if why:
        pytest.skip(why)
    if not runtime or not os.access(runtime, os.X_OK):
        pytest.skip(f"runtime under test not found: {runtime!r}")
    engine = CriContainerd(base=tmp_path_factory.mktemp("cri"),
                           runtimes={"runc": runc_bin, "hutch": runtime})
    try:
        engine.start(busybox_rootfs)
        yield engine
    finally:
        engine.stop()


def explain(cri: CriContainerd, handler: str, extra: str = "") -> str:
    """Failure context: the runtime's command lines, its --log files, the daemon's log."""
    calls = "\n".join(f"  {c}" for c in cri.calls(handler)[-30:])
    logs = "\n".join(f"  {p}: {p.read_text(errors='replace')[-800:]}"
                     for p in (cri.base / "state").glob("io.containerd.runtime.v2.task/*/*/log.json")
                     if p.stat().st_size)
    return (f"{handler} calls:\n{calls}\nruntime logs:\n{logs}\ncontainerd log (tail):\n"
            f"{cri.daemon_log(2000)}\n{extra}")


def _container_cgroup(cri: CriContainerd, controller: str, cid: str) -> Path:
    return Path("/sys/fs/cgroup") / controller / cri.cgroup_parent.lstrip("/") / cid


def _cgroup_pids(cri: CriContainerd, cid: str) -> set[int]:
    try:
        return {int(p) for p in (_container_cgroup(cri, "pids", cid) / "cgroup.procs").read_text().split()}
    except OSError:
        return set()


def _alive(pids) -> list[int]:
    """The pids still running (a zombie or a vanished pid is not)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def _start(cri, pod, pod_config, name, command, **kw) -> str:
    config = cri.container_config(name, ["sh", "-c", command], **kw)
    cid = cri.call("CreateContainer", pod_sandbox_id=pod, config=config,
                   sandbox_config=pod_config).container_id
    cri.call("StartContainer", container_id=cid)
    return cid


def _exec(cri, cid: str, command: str) -> tuple[str, str, int]:
    r = cri.call("ExecSync", container_id=cid, cmd=["sh", "-c", command], timeout=20)
    return r.stdout.decode(), r.stderr.decode(), r.exit_code


def _wait_log(path: Path, lines: int, limit: float = 10) -> list[tuple[str, str]]:
    """The CRI log's (stream, text) once it has `lines` lines (the shim copies output
    asynchronously)."""
    deadline = time.monotonic() + limit
    seen: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        seen = cri_log_lines(path) if path.exists() else []
        if len(seen) >= lines:
            break
        time.sleep(0.05)
    return seen


def _probe_results(text: str) -> dict:
    lines = text.splitlines()
    status = dict(l.split(":\t", 1) for l in lines if ":\t" in l)
    rest = [l for l in lines if ":\t" not in l]
    return {"Seccomp": status.get("Seccomp"), "NoNewPrivs": status.get("NoNewPrivs"),
            "uid": rest[0] if rest else None,
            "write to /": rest[1] if len(rest) > 1 else None,
            "memory limit": rest[2] if len(rest) > 2 else None}


def _verbs(calls: list[str]) -> list[str]:
    """The distinct runtime command lines with values elided: `exec --process _ --detach ...`."""
    shapes = set()
    for call in calls:
        words, out, skip = call.split(), [], False
        for i, w in enumerate(words):
            if skip:
                skip = False
                continue
            if w in ("--root", "--log", "--log-format", "--bundle", "--pid-file", "--process",
                     "--console-socket"):
                out.append(w if w not in ("--root", "--log", "--log-format") else "")
                skip = True
            elif w.startswith("-"):
                out.append(w)
            elif i == len(words) - 1 or w.isdigit() or len(w) == 64:
                continue      # container id, signal number
            else:
                out.append(w)
        shapes.add(" ".join(x for x in out if x))
    return sorted(shapes)


@pytest.mark.parametrize("handler", HANDLERS)
def test_pod_lifecycle(cri, handler):
    seen: dict = {}
    why = lambda extra="": explain(cri, handler, extra)       # noqa: E731
    port = free_local_port()
    pod_config = cri.pod_config(f"pod-{handler}", host_port=port, hostname=POD_HOSTNAME)

    # -- the sandbox: running, with an address from our CNI network
    pod = cri.call("RunPodSandbox", config=pod_config, runtime_handler=handler).pod_sandbox_id
    status = cri.call("PodSandboxStatus", pod_sandbox_id=pod).status
    assert status.state == cri.api.SANDBOX_READY, why()
    assert status.runtime_handler == handler
    ip = status.network.ip
    assert ip and ipaddress.ip_address(ip) in ipaddress.ip_network(SUBNET), (ip, why())
    assert cri.calls(handler), "the pod did not go through its handler's runtime"
    other = next(h for h in HANDLERS if h != handler)
    assert not cri.calls(other), f"the {other} handler was called for a {handler} pod"

    # -- a web container: port mapping on 127.0.0.1, ExecSync, logs
    web = _start(cri, pod, pod_config, "web", WEB)
    assert cri.call("ContainerStatus", container_id=web).status.state == cri.api.CONTAINER_RUNNING
    seen["served on 127.0.0.1:hostPort"] = fetch(port).strip()
    assert seen["served on 127.0.0.1:hostPort"] == POD_HOSTNAME, why()
    rules = dnat_rules_for(port)
    assert rules and all("-d 127.0.0.1/32" in r for r in rules), rules
    seen["exec"] = _exec(cri, web, "echo out; echo err >&2; exit 3")
    assert seen["exec"] == ("out\n", "err\n", 3), why()
    out, _, code = _exec(cri, web, "ip -4 -o addr show eth0; hostname")
    assert code == 0 and f"inet {ip}/" in out, (out, ip)
    seen["hostname"] = out.split()[-1]
    log_path = Path(cri.call("ContainerStatus", container_id=web).status.log_path)
    seen["web log"] = sorted(_wait_log(log_path, 2))    # two streams: no order between them
    assert seen["web log"] == [("stderr", "hello-stderr"), ("stdout", "hello-stdout")], \
        (log_path, seen["web log"])

    # -- a locked-down container: each setting checked from inside, by its init and by exec
    locked = _start(cri, pod, pod_config, "locked", LOCKED, locked=True, memory_limit=MEMORY_LIMIT)
    locked_log = Path(cri.call("ContainerStatus", container_id=locked).status.log_path)
    seen["locked init"] = _probe_results("\n".join(t for _, t in _wait_log(locked_log, 5)))
    out, err, code = _exec(cri, locked, PROBES)
    seen["locked exec"] = _probe_results(out + err)
    want = {"Seccomp": "2", "NoNewPrivs": "1", "uid": "1000",
            "write to /": "touch: /probe: Read-only file system",
            "memory limit": str(MEMORY_LIMIT)}
    assert seen["locked init"] == want, why(str(seen["locked init"]))
    assert seen["locked exec"] == want, why(str(seen["locked exec"]))
    limit = _container_cgroup(cri, "memory", locked) / "memory.limit_in_bytes"
    assert limit.read_text().strip() == str(MEMORY_LIMIT)

    # -- stop: SIGTERM ends each container with exit 0, and nothing of it keeps running
    for name, cid in (("web", web), ("locked", locked)):
        pids = _cgroup_pids(cri, cid)
        began = time.monotonic()
        cri.call("StopContainer", container_id=cid, timeout=10)
        seen[f"{name} stop seconds"] = time.monotonic() - began
        seen[f"{name} left running after stop"] = _alive(pids)
        st = cri.call("ContainerStatus", container_id=cid).status
        seen[f"{name} exit"] = (st.state, st.exit_code)
        assert seen[f"{name} exit"] == (cri.api.CONTAINER_EXITED, 0), why()
        cri.call("RemoveContainer", container_id=cid)
    assert not cri.call("ListContainers").containers

    # -- the pod goes: no sandbox, no container in the runtime, no mount, no CNI rule
    cri.call("StopPodSandbox", pod_sandbox_id=pod)
    cri.call("RemovePodSandbox", pod_sandbox_id=pod)
    assert not cri.call("ListPodSandbox").items
    listed = run([cri.runtimes[handler], "--root", cri.runtime_root(handler) / "k8s.io", "list",
                  "--quiet"], timeout=20)
    assert listed.returncode == 0 and not listed.stdout.strip(), listed
    mounts = [m for m in mounts_under(cri.base) if "/io.containerd.grpc.v1.cri/" in m or "/k8s.io/" in m]
    assert not mounts, mounts
    assert not dnat_rules_for(port)
    assert not [c for c in portmap_chains() if "CNI-DN-" in c]
    pod_cgroups = [p for p in Path("/sys/fs/cgroup/pids", cri.cgroup_parent.lstrip("/")).glob("*")
                   if p.is_dir()]
    assert not pod_cgroups, pod_cgroups
    seen["verbs"] = _verbs(cri.calls(handler))

    # -- and the daemon: after stop the host is as it was
    cri.stop()
    assert cri.leftovers() == {}
    OBSERVED[handler] = seen


def _observed(handler: str) -> dict:
    if handler not in OBSERVED:
        pytest.skip(f"the {handler} pod lifecycle did not complete")
    return OBSERVED[handler]


@pytest.mark.parametrize("handler", HANDLERS)
def test_stop_container_ends_what_the_container_left(handler):
    """The pod shares one pid namespace (the pause process is its pid 1), so a container's
    background processes outlive its main process; the shim then calls `kill --all ID 9`,
    which runc 1.1.5 honours for a stopped container (signals what is left in its cgroup).
    A runtime that refuses it leaves the children running and StopContainer waits out the
    shim's 2 s I/O timeout."""
    seen = _observed(handler)
    for name in ("web", "locked"):
        assert seen[f"{name} left running after stop"] == [], seen
        assert seen[f"{name} stop seconds"] < 1.5, seen


def test_hutch_matches_runc():
    runc, hutch = _observed("runc"), _observed("hutch")
    keys = [k for k in runc if "seconds" not in k and "left running" not in k]
    assert {k: hutch.get(k) for k in keys} == {k: runc[k] for k in keys}
