"""podman (with conmon) drives the runtime under test end to end.

Each test asserts on what the kernel shows (inside the container or on the host), and that
the engine really went through our runtime (the wrapper's log of runtime command lines).
Prove against runc:  HUTCH_TEST_RUNTIME=/usr/sbin/runc pytest tests/integration/test_podman.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from helpers.engines import BRIDGE_NAME, IMAGE, SUBNET, explain, run, run_in_pty

pytestmark = [pytest.mark.priv, pytest.mark.peer]

NO_NET = ("--network", "none")


def _verbs(calls: list[str]) -> list[str]:
    """The runtime subcommand of each logged call (first word that is not a global option)."""
    verbs = []
    for call in calls:
        words = call.split()
        i = 0
        while i < len(words) and words[i].startswith("-"):
            # --root DIR / --log FILE / --log-format FMT take a value unless written with '='
            i += 1 if "=" in words[i] or words[i] in ("--debug", "--systemd-cgroup") else 2
        verbs.append(words[i] if i < len(words) else "")
    return verbs


def _cap_eff(text: str) -> int:
    return int(re.search(r"CapEff:\s*([0-9a-f]+)", text).group(1), 16)


def _inspect(podman, name: str, template: str) -> str:
    """One `podman inspect --format` value."""
    return podman("inspect", "--format", template, name).stdout.strip()


def _host_pid(podman, name: str) -> int:
    return int(_inspect(podman, name, "{{.State.Pid}}"))


def test_run_echo_goes_through_the_runtime(podman):
    start = len(podman.calls())
    r = podman("run", "--rm", *NO_NET, IMAGE, "echo", "hello from podman")
    why = explain(podman, start, r.stderr)
    assert r.returncode == 0, why
    assert r.stdout == "hello from podman\n", why
    verbs = _verbs(podman.calls()[start:])
    for verb in ("create", "start", "delete"):
        assert verb in verbs, why


def test_nonzero_exit_code_is_propagated(podman):
    start = len(podman.calls())
    r = podman("run", "--rm", *NO_NET, IMAGE, "sh", "-c", "echo out; echo err >&2; exit 42")
    assert r.returncode == 42, explain(podman, start, r.stderr)
    assert "out" in r.stdout and "err" in r.stderr


def test_command_not_found_is_an_error(podman):
    """An exec failure inside the runtime must surface as podman's 127 (runc's message)."""
    start = len(podman.calls())
    r = podman("run", "--rm", *NO_NET, IMAGE, "/no/such/program")
    assert r.returncode in (126, 127), explain(podman, start, r.stdout + r.stderr)
    assert "no/such/program" in r.stderr, r.stderr


def test_detached_exec_stop_logs_rm(podman):
    start = len(podman.calls())
    script = 'trap "echo got-term; exit 7" TERM; echo ready; while :; do sleep 0.1; done'
    r = podman("run", "-d", "--name", "hutch-pd1", *NO_NET, IMAGE, "sh", "-c", script)
    assert r.returncode == 0, explain(podman, start, r.stderr)
    pid = _host_pid(podman, "hutch-pd1")
    assert Path(f"/proc/{pid}").exists()

    # exec joins the container: same pid namespace as its init, output and exit code back.
    r = podman("exec", "hutch-pd1", "sh", "-c", "readlink /proc/self/ns/pid; exit 3")
    assert r.returncode == 3, explain(podman, start, r.stderr)
    assert r.stdout.strip() == os.readlink(f"/proc/{pid}/ns/pid"), r.stdout
    assert "exec" in _verbs(podman.calls()[start:]), explain(podman, start)

    r = podman("exec", "hutch-pd1", "cat", "/proc/1/cmdline")
    assert r.stdout.split("\0")[:2] == ["sh", "-c"], explain(podman, start, r.stderr)

    # stop: SIGTERM through the runtime's kill; the trap runs and sets the exit code.
    r = podman("stop", "--time", "20", "hutch-pd1")
    assert r.returncode == 0, explain(podman, start, r.stderr)
    state = _inspect(podman, "hutch-pd1", "{{.State.Status}} {{.State.ExitCode}}")
    assert state.split() == ["exited", "7"], explain(podman, start, state)
    assert not Path(f"/proc/{pid}").exists()
    assert "kill" in _verbs(podman.calls()[start:]), explain(podman, start)

    logs = podman("logs", "hutch-pd1").stdout.split()
    assert logs == ["ready", "got-term"], logs

    cid = _inspect(podman, "hutch-pd1", "{{.Id}}")
    r = podman("rm", "hutch-pd1")
    assert r.returncode == 0, explain(podman, start, r.stderr)
    assert "hutch-pd1" not in podman("ps", "-a", "--format", "{{.Names}}").stdout
    # The runtime forgot it too (podman gives no --root: the runtime's default one).
    assert run([podman.runtime, "state", cid]).returncode != 0


def test_exec_with_tty(podman):
    """exec -it: the runtime's exec --tty --console-socket path, with the window size."""
    r = podman("run", "-d", "--name", "hutch-pexec-tty", *NO_NET, IMAGE, "sleep", "600")
    assert r.returncode == 0, explain(podman, extra=r.stderr)
    code, screen = run_in_pty(
        podman.argv("exec", "-it", "hutch-pexec-tty", "sh", "-c",
                    "tty; test -t 0 && echo STDIN-TTY; stty size; exit 6"),
        env=podman.env(), rows=33, cols=77, on_timeout=podman.recover_from_hang)
    assert code == 6, explain(podman, extra=screen)
    assert "STDIN-TTY" in screen and "33 77" in screen and "/dev/pts/" in screen, screen


def test_pause_unpause(podman):
    if not Path("/sys/fs/cgroup/freezer").is_dir():
        pytest.skip("no cgroup v1 freezer here")
    start = len(podman.calls())
    r = podman("run", "-d", "--name", "hutch-ppause", *NO_NET, IMAGE, "sleep", "600")
    assert r.returncode == 0, explain(podman, start, r.stderr)
    freezer = _cgroup_dir(_host_pid(podman, "hutch-ppause"), "freezer") / "freezer.state"
    r = podman("pause", "hutch-ppause")
    assert r.returncode == 0, explain(podman, start, r.stderr)
    assert freezer.read_text().strip() == "FROZEN"
    assert _inspect(podman, "hutch-ppause", "{{.State.Status}}") == "paused"
    r = podman("unpause", "hutch-ppause")
    assert r.returncode == 0, explain(podman, start, r.stderr)
    assert freezer.read_text().strip() == "THAWED"
    assert podman("exec", "hutch-ppause", "echo", "alive").stdout == "alive\n"


def test_tty_with_window_size(podman):
    """-it: the command sees a terminal on stdin/stdout and the caller's window size."""
    code, screen = run_in_pty(
        podman.argv("run", "-it", "--rm", *NO_NET, IMAGE, "sh", "-c",
                    "tty; test -t 0 && echo STDIN-TTY; test -t 1 && echo STDOUT-TTY; stty size"),
        env=podman.env(), rows=37, cols=101, on_timeout=podman.recover_from_hang)
    assert code == 0, explain(podman, extra=screen)
    lines = screen.split("\n")
    assert any(re.fullmatch(r"/dev/pts/\d+", ln.strip()) for ln in lines), screen
    assert "STDIN-TTY" in screen and "STDOUT-TTY" in screen, screen
    assert "37 101" in lines or "37 101" in screen, screen


def test_interactive_shell_on_tty(podman):
    """Typed input reaches an interactive shell; its exit code comes back."""
    code, screen = run_in_pty(
        podman.argv("run", "-it", "--rm", *NO_NET, IMAGE, "sh"), env=podman.env(),
        rows=30, cols=90, wait_for=b"# ", send=b"echo $((6*7)); stty size; exit 5\n",
        on_timeout=podman.recover_from_hang)
    assert code == 5, explain(podman, extra=screen)
    assert "\n42\n" in screen and "30 90" in screen, screen


def test_no_tty_without_t(podman):
    """Without -t the same checks must say "not a tty" (so the tty test means something)."""
    r = podman("run", "--rm", "-i", *NO_NET, IMAGE, "sh", "-c",
               "test -t 0 && echo STDIN-TTY; tty; true", input="")
    assert "STDIN-TTY" not in r.stdout and "not a tty" in r.stdout, r.stdout + r.stderr


def test_network_none_has_only_loopback(podman):
    r = podman("run", "--rm", *NO_NET, IMAGE, "sh", "-c",
               "ls /sys/class/net; readlink /proc/self/ns/net")
    assert r.returncode == 0, explain(podman, extra=r.stderr)
    *links, netns = r.stdout.split()
    assert links == ["lo"], r.stdout
    assert netns != os.readlink("/proc/self/ns/net")


def test_default_network_bridge(podman):
    """The default (netavark bridge) network: an eth0 with an address in the subnet, the
    host side bridge while it runs, and nothing left (netns, veth, bridge) once removed."""
    start = len(podman.calls())
    r = podman("run", "-d", "--name", "hutch-pnet", IMAGE, "sleep", "600")
    assert r.returncode == 0, explain(podman, start, r.stderr)
    sandbox = _inspect(podman, "hutch-pnet", "{{.NetworkSettings.SandboxKey}}")
    pid = _host_pid(podman, "hutch-pnet")
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(sandbox).st_ino
    assert Path(f"/sys/class/net/{BRIDGE_NAME}").exists()

    r = podman("exec", "hutch-pnet", "sh", "-c",
               "ip -o -4 addr show eth0;"
               "a=$(ip -o -4 addr show eth0 | awk '{print $4}' | cut -d/ -f1);"
               "ping -c1 -W2 127.0.0.1 >/dev/null && echo LO-OK;"
               "ping -c1 -W2 $a >/dev/null && echo ETH0-OK")
    assert r.returncode == 0, explain(podman, start, r.stderr)
    prefix = SUBNET.rsplit(".", 1)[0] + "."
    assert f"inet {prefix}" in r.stdout and "LO-OK" in r.stdout and "ETH0-OK" in r.stdout, r.stdout

    assert podman("rm", "--force", "--time", "0", "hutch-pnet").returncode == 0
    assert not Path(sandbox).exists()
    assert not Path(f"/sys/class/net/{BRIDGE_NAME}").exists()
    # netavark removed the subnet's firewall rules with the last container.
    assert SUBNET not in run(["nft", "list", "ruleset"]).stdout


def test_user(podman):
    r = podman("run", "--rm", *NO_NET, "--user", "65534:65534", IMAGE, "sh", "-c",
               "id -u; id -g; grep -E '^(Uid|Gid):' /proc/self/status")
    assert r.returncode == 0, explain(podman, extra=r.stderr)
    lines = r.stdout.splitlines()
    assert lines[:2] == ["65534", "65534"], r.stdout
    assert lines[2].split()[1:] == ["65534"] * 4 and lines[3].split()[1:] == ["65534"] * 4


def test_cap_add_and_drop(podman):
    cap_net_admin = 1 << 12
    base = podman("run", "--rm", *NO_NET, IMAGE, "grep", "CapEff", "/proc/self/status")
    added = podman("run", "--rm", *NO_NET, "--cap-add", "NET_ADMIN", IMAGE,
                   "grep", "CapEff", "/proc/self/status")
    dropped = podman("run", "--rm", *NO_NET, "--cap-drop", "all", IMAGE,
                     "grep", "CapEff", "/proc/self/status")
    for r in (base, added, dropped):
        assert r.returncode == 0, explain(podman, extra=r.stderr)
    assert not _cap_eff(base.stdout) & cap_net_admin
    assert _cap_eff(added.stdout) == _cap_eff(base.stdout) | cap_net_admin
    assert _cap_eff(dropped.stdout) == 0
    # And the kernel enforces it: changing a link's MTU needs CAP_NET_ADMIN.
    change_mtu = "ip link set lo mtu 1280 && echo CHANGED"
    r = podman("run", "--rm", *NO_NET, "--cap-add", "NET_ADMIN", IMAGE, "sh", "-c", change_mtu)
    assert "CHANGED" in r.stdout, r.stdout + r.stderr
    r = podman("run", "--rm", *NO_NET, IMAGE, "sh", "-c", change_mtu)
    assert "CHANGED" not in r.stdout and "not permitted" in r.stderr, r.stdout + r.stderr


def test_read_only_rootfs(podman):
    r = podman("run", "--rm", *NO_NET, "--read-only", IMAGE, "sh", "-c",
               "touch /x 2>&1; echo root=$?; touch /tmp/y && echo tmp-ok")
    assert r.returncode == 0, explain(podman, extra=r.stderr)
    assert "Read-only file system" in r.stdout and "tmp-ok" in r.stdout, r.stdout
    r = podman("run", "--rm", *NO_NET, IMAGE, "sh", "-c", "touch /x && echo root-rw")
    assert "root-rw" in r.stdout


def test_hostname_and_ulimits(podman):
    r = podman("run", "--rm", *NO_NET, "--hostname", "hutchbox", IMAGE, "sh", "-c",
               "hostname; ulimit -Sn; ulimit -Hn; ulimit -u")
    assert r.returncode == 0, explain(podman, extra=r.stderr)
    assert r.stdout.split() == ["hutchbox", "20000", "20000", "32768"], r.stdout


def _cgroup_dir(pid: int, controller: str) -> Path | None:
    """The v1 cgroup directory of a host pid for one controller."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
    return None


def test_memory_limit(podman):
    if not Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists():
        pytest.skip("no cgroup v1 memory controller here")
    start = len(podman.calls())
    r = podman("run", "-d", "--name", "hutch-pmem", *NO_NET, "--memory", "64m", IMAGE,
               "sleep", "600")
    assert r.returncode == 0, explain(podman, start, r.stderr)
    cg = _cgroup_dir(_host_pid(podman, "hutch-pmem"), "memory")
    assert cg is not None and cg != Path("/sys/fs/cgroup/memory"), cg
    assert (cg / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
    podman("rm", "--force", "--time", "0", "hutch-pmem", check=True)
    # The container's cgroup is gone from every hierarchy the runtime put it in.
    relative = cg.relative_to("/sys/fs/cgroup/memory")
    left = [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{relative}")]
    assert not left, f"left behind: {left}"
