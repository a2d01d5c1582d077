"""`hutch run`: the process inside — exit status, signals, PID 1 duties, user, environment,
rlimits, no_new_privs, the terminal and stdin/stdout passthrough."""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time

import pytest

from helpers.run import (
    hutch_executable, hutch_run, kill_tree, one_hutch_line, parse_keyed, proc_states,
    descendants, kill_pids, processes_with_cmdline, read_line_until, start_hutch,
    wait_for_process,
)

pytestmark = pytest.mark.priv

STATE_ROOT = "/run/hutch"
INIT_MODES = [pytest.param([], id="init"), pytest.param(["--no-init"], id="no-init")]


# --- exit status ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", INIT_MODES)
@pytest.mark.parametrize("script,expected", [("exit 0", 0), ("exit 3", 3), ("exit 255", 255)])
def test_exit_status_is_the_commands(rootfs, mode, script, expected):
    result = hutch_run(["--rootfs", rootfs, *mode, "--", "sh", "-c", script])
    assert result.returncode == expected, result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize("mode", INIT_MODES)
def test_true_and_false(rootfs, mode):
    assert hutch_run(["--rootfs", rootfs, *mode, "--", "/bin/true"]).returncode == 0
    assert hutch_run(["--rootfs", rootfs, *mode, "--", "false"]).returncode == 1


@pytest.mark.parametrize("mode", INIT_MODES)
@pytest.mark.parametrize("command", ["/nonexistent", "no-such-command"])
def test_command_not_found_is_127(rootfs, mode, command):
    result = hutch_run(["--rootfs", rootfs, *mode, "--", command])
    assert result.returncode == 127
    assert command in one_hutch_line(result.stderr)


@pytest.mark.parametrize("mode", INIT_MODES)
def test_command_not_executable_is_126(rootfs, mode):
    script = rootfs / "bin" / "not-executable"
    script.write_text("#!/bin/sh\necho should-not-run\n")
    script.chmod(0o644)
    result = hutch_run(["--rootfs", rootfs, *mode, "--", "/bin/not-executable"])
    assert result.returncode == 126
    assert "should-not-run" not in result.stdout
    assert "not-executable" in one_hutch_line(result.stderr)


def test_directory_as_command_is_126(rootfs):
    result = hutch_run(["--rootfs", rootfs, "--", "/tmp"])
    assert result.returncode == 126
    one_hutch_line(result.stderr)


def test_killed_by_sigkill_is_137(rootfs):
    result = hutch_run(["--rootfs", rootfs, "--", "sh", "-c", "kill -9 $$; sleep 5"])
    assert result.returncode == 137


def test_killed_by_sigterm_is_143(rootfs):
    result = hutch_run(["--rootfs", rootfs, "--", "sh", "-c", "kill -TERM $$; sleep 5"])
    assert result.returncode == 143


def test_bad_option_is_125(rootfs):
    result = hutch_run(["--rootfs", rootfs, "--no-such-option", "--", "true"])
    assert result.returncode == 125
    assert "--no-such-option" in one_hutch_line(result.stderr)


# --- signals ----------------------------------------------------------------------------------

TRAP_TERM = 'trap "exit 42" TERM; echo ready; while :; do sleep 0.1; done'


@pytest.mark.parametrize("mode", INIT_MODES)
@pytest.mark.parametrize("sig,trap_name", [(signal.SIGTERM, "TERM"), (signal.SIGINT, "INT"),
                                           (signal.SIGUSR1, "USR1"), (signal.SIGHUP, "HUP")])
def test_signal_to_hutch_is_forwarded(rootfs, mode, sig, trap_name):
    proc = start_hutch(["--rootfs", rootfs, *mode, "--", "sh", "-c",
                        f'trap "exit 42" {trap_name}; echo ready; while :; do sleep 0.1; done'])
    try:
        read_line_until(proc, "ready")
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 42
    finally:
        kill_tree(proc)


def test_sigkill_of_hutch_leaves_no_container_behind(rootfs):
    """hutch killed hard: its container must die with it (no orphaned processes)."""
    marker = ["sleep", "31410"]
    state_before = set(os.listdir(STATE_ROOT)) if os.path.isdir(STATE_ROOT) else set()
    proc = start_hutch(["--rootfs", rootfs, "--", "sh", "-c", "echo ready; exec sleep 31410"])
    try:
        read_line_until(proc, "ready")
        wait_for_process(marker)
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while processes_with_cmdline(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_with_cmdline(marker) == [], "container outlived a SIGKILLed hutch"
    finally:
        kill_tree(proc, marker)
        # a SIGKILLed hutch cannot remove its state: delete what it left, as a user would
        for entry in set(os.listdir(STATE_ROOT)) - state_before if os.path.isdir(STATE_ROOT) else ():
            if not entry.startswith("."):
                subprocess.run([hutch_executable(), "delete", "--force", entry], capture_output=True)


# --- PID 1 duties -----------------------------------------------------------------------------

ORPHAN_ZOMBIE = ("(sleep 0.1 &); sleep 1; echo self=$$; echo ---; "
                 "cat /proc/[0-9]*/stat 2>/dev/null")


def test_init_reaps_orphaned_zombies(rootfs):
    out = hutch_run(["--rootfs", rootfs, "--", "sh", "-c", ORPHAN_ZOMBIE]).stdout
    head, _, stats = out.partition("---")
    # sh is not PID 1: the orphan was reparented to hutch's init, so only it can reap it
    assert parse_keyed(head)["self"] != "1"
    states = proc_states(stats)
    assert 1 in states, stats
    assert "Z" not in states.values(), f"zombies left: {states}"


def test_init_is_not_the_command(rootfs):
    """With --init PID 1 is hutch's init; with --no-init PID 1 is the command itself."""
    with_init = hutch_run(["--rootfs", rootfs, "--", "sh", "-c", "echo $$; cat /proc/1/cmdline"])
    assert with_init.stdout.split("\n")[0] != "1"
    without = hutch_run(["--rootfs", rootfs, "--no-init", "--", "sh", "-c", "echo $$"])
    assert without.stdout.strip() == "1"


def test_init_forwards_exit_of_command_while_children_linger(rootfs):
    """The command's exit ends the container even if it left background children."""
    result = hutch_run(["--rootfs", rootfs, "--", "sh", "-c", "sleep 1000 & exit 5"], timeout=30)
    assert result.returncode == 5


# --- user, groups, environment, cwd, rlimits, no_new_privs -----------------------------------

def test_user_and_group(rootfs):
    out = hutch_run(["--rootfs", rootfs, "-u", "1000:1000", "--", "sh", "-c",
                     "id -u; id -g; grep -E '^(Uid|Gid):' /proc/self/status"]).stdout.splitlines()
    assert out[:2] == ["1000", "1000"]
    assert out[2].split()[1:] == ["1000"] * 4
    assert out[3].split()[1:] == ["1000"] * 4


def test_user_without_group(rootfs):
    out = hutch_run(["--rootfs", rootfs, "-u", "1234", "--", "id", "-u"]).stdout.strip()
    assert out == "1234"


def test_group_add(rootfs):
    result = hutch_run(["--rootfs", rootfs, "--group-add", "2000", "--group-add", "3000", "--",
                        "grep", "^Groups:", "/proc/self/status"])
    assert {"2000", "3000"} <= set(result.stdout.split()[1:]), result.stdout


def test_env_and_workdir(rootfs):
    out = parse_keyed(hutch_run(["--rootfs", rootfs, "-e", "FOO=bar baz", "-e", "EMPTY=", "-w", "/tmp",
                                 "--", "sh", "-c", 'echo foo=$FOO; echo cwd=$(pwd); env']).stdout)
    assert out["foo"] == "bar baz"
    assert out["cwd"] == "/tmp"
    assert "EMPTY" in out and out["EMPTY"] == ""
    assert "PATH" in out, "a default PATH must be set"


def test_host_environment_does_not_leak(rootfs):
    env = dict(os.environ, HUTCH_TEST_SECRET="leaked")
    result = hutch_run(["--rootfs", rootfs, "--", "env"], env=env)
    assert "HUTCH_TEST_SECRET" not in result.stdout


def test_ulimit_nofile(rootfs):
    result = hutch_run(["--rootfs", rootfs, "--ulimit", "nofile=512:1024", "--", "sh", "-c",
                        "ulimit -n; grep 'Max open files' /proc/self/limits"])
    lines = result.stdout.splitlines()
    assert lines[0] == "512", result.stdout + result.stderr
    assert lines[1].split()[3:5] == ["512", "1024"]


@pytest.mark.parametrize("flag,expected", [([], "0"), (["--no-new-privileges"], "1")])
def test_no_new_privileges(rootfs, flag, expected):
    result = hutch_run(["--rootfs", rootfs, *flag, "--", "grep", "^NoNewPrivs:", "/proc/self/status"])
    assert result.stdout.split()[1] == expected


# --- stdin / stdout / stderr ------------------------------------------------------------------

def test_stdin_passthrough_with_i(rootfs):
    result = hutch_run(["--rootfs", rootfs, "-i", "--", "cat"], input="hi\n")
    assert result.returncode == 0
    assert result.stdout == "hi\n"


def test_stdin_not_attached_without_i(rootfs):
    """Without -i the container's stdin is not ours: `cat` sees end of file at once even
    though our stdin pipe stays open."""
    proc = start_hutch(["--rootfs", rootfs, "--", "cat"], stdin=subprocess.PIPE)
    try:
        assert proc.wait(timeout=30) == 0
    finally:
        proc.stdin.close()
        kill_tree(proc)


def test_stdin_large_payload(rootfs):
    data = ("x" * 1023 + "\n") * 2048  # 2 MiB, more than any pipe buffer
    result = hutch_run(["--rootfs", rootfs, "-i", "--", "wc", "-c"], input=data)
    assert result.stdout.strip() == str(len(data))


def test_stdout_and_stderr_stay_separate(rootfs):
    result = hutch_run(["--rootfs", rootfs, "--", "sh", "-c", "echo out; echo err >&2"])
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"


def test_large_stdout_is_complete(rootfs):
    result = hutch_run(["--rootfs", rootfs, "--", "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x"])
    assert len(result.stdout) == 3000000


# --- terminal ---------------------------------------------------------------------------------

def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class PtySession:
    """`hutch run -t ...` on a real pseudo-terminal with a controlling tty, as in a shell."""

    def __init__(self, args, rows=33, cols=101):
        self.pid, self.master = pty.fork()
        if self.pid == 0:  # child: the pty is our controlling terminal and stdio
            try:
                set_winsize(0, rows, cols)
                os.execv(hutch_executable(), [hutch_executable(), "run", *map(str, args)])
            finally:
                os._exit(99)
        self.output = b""
        self.status = None

    def read_until(self, needle: bytes, timeout: float = 30) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {needle!r} on the terminal within {timeout}s; got {self.output!r}")
            if not self._read_some(left):
                pytest.fail(f"terminal closed before {needle!r}; got {self.output!r}")
        return self.output

    def _read_some(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 4096)
        except OSError as exc:  # EIO: the slave side is closed
            if exc.errno != errno.EIO:
                raise
            return False
        self.output += chunk
        return bool(chunk)

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read_some(0.05)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                while self._read_some(0.05) and select.select([self.master], [], [], 0)[0]:
                    pass
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
        pytest.fail(f"hutch -t did not exit within {timeout}s; output {self.output!r}")

    def close(self) -> None:
        """Kill the container's processes first so hutch can clean up, then hutch."""
        if self.status is None:
            kill_pids(descendants(self.pid))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not os.waitpid(self.pid, os.WNOHANG)[0]:
                self._read_some(0.05)
            else:
                if time.monotonic() >= deadline:
                    kill_pids([self.pid])
                    os.waitpid(self.pid, 0)
        os.close(self.master)


@pytest.fixture
def pty_session():
    sessions = []

    def start(args, **kw):
        sessions.append(PtySession(args, **kw))
        return sessions[-1]
    yield start
    for session in sessions:
        session.close()


def test_tty_is_a_real_pty_with_the_window_size(rootfs, pty_session):
    term = pty_session(["--rootfs", rootfs, "-t", "--", "sh", "-c", "tty; stty size"], rows=33, cols=101)
    assert term.wait() == 0
    text = term.output.decode(errors="replace").replace("\r", "")
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0].startswith("/dev/pts/"), text
    assert "33 101" in lines, text


def test_tty_window_resize_is_forwarded(rootfs, pty_session):
    # the shell reports its size on every SIGWINCH and ends once it sees the new one
    script = ('trap \'s=$(stty size); echo "size $s"; [ "$s" = "40 120" ] && exit 0\' WINCH; '
              'echo ready; i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; exit 1')
    term = pty_session(["--rootfs", rootfs, "-t", "--", "sh", "-c", script])
    term.read_until(b"ready")
    set_winsize(term.master, 40, 120)
    assert term.wait() == 0, term.output
    assert b"size 40 120" in term.output


def test_tty_ctrl_c_interrupts_the_foreground_process(rootfs, pty_session):
    term = pty_session(["--rootfs", rootfs, "-t", "-i", "--", "sh", "-c",
                        'trap "echo got-int; exit 7" INT; echo ready; while :; do sleep 0.1; done'])
    term.read_until(b"ready")
    os.write(term.master, b"\x03")
    assert term.wait() == 7
    assert b"got-int" in term.output


def test_tty_stdin_reaches_the_container(rootfs, pty_session):
    term = pty_session(["--rootfs", rootfs, "-t", "-i", "--", "sh", "-c",
                        'echo ready; read line; echo "got:$line"'])
    term.read_until(b"ready")
    os.write(term.master, b"hello\r")
    assert term.wait() == 0
    assert b"got:hello" in term.output

