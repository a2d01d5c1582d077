"""The process of `exec`: from --process FILE, or from the container's own process
section with the command-line overrides (as runc builds it)."""

from __future__ import annotations

from hutch import fastjson
from hutch.errors import ConfigError

CAP_SETS_EXTENDED_BY_CAP_FLAG = ("bounding", "effective", "permitted", "ambient")


def parse_user(text: str) -> tuple[int, int | None]:
    uid, _, gid = text.partition(":")
    try:
        return int(uid), (int(gid) if gid else None)
    except ValueError:
        raise ConfigError(f"invalid user {text!r}: expected UID[:GID]", where="--user") from None


def load_process_file(path: str) -> dict:
    """The process of `exec --process FILE`: a JSON object, or one line naming the file."""
    where = f"--process {path}"
    return fastjson.require_object(fastjson.load_file(path, where=where), where=where)


def build_exec_process(base: dict, opts: dict, args: list[str]) -> dict:
    if opts.get("process"):
        process = load_process_file(opts["process"])
    else:
        process = fastjson.loads(fastjson.dumps(base))   # a deep copy without importing copy
        process["args"] = list(args)
        process["terminal"] = bool(opts.get("tty"))
        env = [e for e in process.get("env") or []]
        for entry in opts.get("env") or ():
            key = entry.split("=", 1)[0]
            env = [e for e in env if e.split("=", 1)[0] != key] + [entry]
        process["env"] = env
        if opts.get("cwd"):
            process["cwd"] = opts["cwd"]
        if opts.get("user"):
            uid, gid = parse_user(opts["user"])
            user = process.setdefault("user", {})
            user["uid"] = uid
            if gid is not None:
                user["gid"] = gid
        if opts.get("additional-gids"):
            try:
                gids = [int(g) for g in opts["additional-gids"]]
            except ValueError:
                raise ConfigError("additional gids must be integers", where="--additional-gids") from None
            process.setdefault("user", {})["additionalGids"] = gids
        if opts.get("cap"):
            caps = process.setdefault("capabilities", {})
            for cap_set in CAP_SETS_EXTENDED_BY_CAP_FLAG:
                current = caps.setdefault(cap_set, [])
                current.extend(c for c in opts["cap"] if c not in current)
        if opts.get("no-new-privs"):
            process["noNewPrivileges"] = True
        if opts.get("apparmor"):
            process["apparmorProfile"] = opts["apparmor"]
        if opts.get("process-label"):
            process["selinuxLabel"] = opts["process-label"]
    args = process.get("args")
    if not args or not all(isinstance(a, str) for a in args):
        raise ConfigError("exec needs a command (args must be a non-empty list of strings)", where="process.args")
    from hutch.security.caps import to_mask
    for cap_set, names in (process.get("capabilities") or {}).items():
        to_mask(names, where=f"process.capabilities.{cap_set}")
    process.setdefault("cwd", "/")
    process.setdefault("user", {"uid": 0, "gid": 0})
    from hutch.oci.validate import validate_process
    validate_process(process)
    return process
