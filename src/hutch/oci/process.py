"""What the user process needs, computed from config.json: environment, the
executable's path inside the container, HOME.  Pure and testable without root."""

from __future__ import annotations

import os
import stat

from hutch.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, HutchError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def env_dict(env_list) -> dict[str, str]:
    out = {}
    for entry in env_list or ():
        key, _, value = entry.partition("=")
        out[key] = value
    return out


def find_executable(name: str, env: dict[str, str], root: str = "/") -> str:
    """Resolve argv[0] like execvp, in the (already pivoted) root.

    Raises HutchError with exit code 127 (not found) or 126 (not executable),
    the docker/podman conventions that `hutch run` follows."""
    if not name:
        raise HutchError("process.args[0] is empty", where="process.args", exit_code=EXIT_NOT_FOUND)
    if "/" in name:
        candidates = [name]
    else:
        candidates = [os.path.join(d or ".", name) for d in env.get("PATH", DEFAULT_PATH).split(":")]
    denied = None
    for path in candidates:
        full = os.path.join(root, path.lstrip("/")) if root != "/" else path
        try:
            st = os.stat(full)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(full, os.X_OK):
            return path
        denied = path
    if denied:
        raise HutchError(f"exec {denied}: permission denied (not an executable file)",
                         exit_code=EXIT_NOT_EXECUTABLE)
    where = "" if "/" in name else " in $PATH"
    raise HutchError(f"exec: {name!r}: executable file not found{where}", exit_code=EXIT_NOT_FOUND)


def home_for(uid: int, passwd_path: str = "/etc/passwd") -> str:
    """HOME for uid from the container's /etc/passwd, else '/' (as runc does)."""
    try:
        with open(passwd_path) as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def exec_environment(process: dict) -> dict[str, str]:
    env = env_dict(process.get("env"))
    if "HOME" not in env:
        env["HOME"] = home_for(int((process.get("user") or {}).get("uid", 0)))
    return env
