"""The runc-compatible verbs: create start run state list kill delete exec ps spec features."""

from __future__ import annotations

from hutch.cli.flags import Flag, int_flag, parse
from hutch.errors import ConfigError

CREATE_FLAGS = [
    Flag("bundle", ("b",), value=True, default="."),
    Flag("console-socket", value=True),
    Flag("pid-file", value=True),
    Flag("no-pivot"),
    Flag("no-new-keyring"),
    Flag("preserve-fds", value=True),
]
RUN_FLAGS = CREATE_FLAGS + [Flag("detach", ("d",)), Flag("keep"), Flag("no-subreaper")]
EXEC_FLAGS = [
    Flag("console-socket", value=True), Flag("cwd", value=True), Flag("env", ("e",), value=True, repeat=True),
    Flag("tty", ("t",)), Flag("user", ("u",), value=True), Flag("additional-gids", ("g",), value=True, repeat=True),
    Flag("process", ("p",), value=True), Flag("detach", ("d",)), Flag("pid-file", value=True),
    Flag("process-label", value=True), Flag("apparmor", value=True), Flag("no-new-privs"),
    Flag("cap", ("c",), value=True, repeat=True), Flag("preserve-fds", value=True),
    Flag("cgroup", value=True, repeat=True), Flag("ignore-paused"),
]


def _one_id(positionals: list[str], command: str) -> str:
    if len(positionals) != 1:
        raise ConfigError(f"{command} requires exactly 1 argument: the container id", where=command)
    return positionals[0]


def main(command: str, argv: list[str], g) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(f"usage: hutch {command} [OPTIONS] ...  (flags as runc {command})")
        return 0
    return HANDLERS[command](argv, g)


def cmd_create(argv, g) -> int:
    from hutch.oci import container
    opts, pos = parse(argv, CREATE_FLAGS, interspersed=True)
    container.create(g.root, _one_id(pos, "create"), opts["bundle"], _create_options(opts, g))
    return 0


def _create_options(opts: dict, g):
    from hutch.oci.container import CreateOptions
    return CreateOptions(console_socket=opts["console-socket"], pid_file=opts["pid-file"],
                         preserve_fds=int_flag(opts, "preserve-fds"), no_pivot=bool(opts["no-pivot"]),
                         no_new_keyring=bool(opts["no-new-keyring"]), systemd_cgroup=g.systemd_cgroup)


def cmd_start(argv, g) -> int:
    from hutch.oci import container
    _, pos = parse(argv, [], interspersed=True)
    container.start(g.root, _one_id(pos, "start"))
    return 0


def cmd_run(argv, g) -> int:
    """OCI `run`: create + start; attached unless --detach, then delete (unless --keep)."""
    from hutch.oci import container
    opts, pos = parse(argv, RUN_FLAGS, interspersed=True)
    container_id = _one_id(pos, "run")
    options = _create_options(opts, g)
    if opts["detach"]:
        container.create(g.root, container_id, opts["bundle"], options)
        container.start(g.root, container_id)
        return 0
    from hutch.oci.attach import run_attached
    return run_attached(g.root, container_id, opts["bundle"], options, keep=bool(opts["keep"]))


def cmd_state(argv, g) -> int:
    from hutch.oci import container
    _, pos = parse(argv, [], interspersed=True)
    print(pretty_json(container.get_state(g.root, _one_id(pos, "state"))))
    return 0


def pretty_json(obj, indent: str = "  ", level: int = 0) -> str:
    """json.dumps(obj, indent="  "), byte for byte, without importing json (6 ms: re, enum)."""
    from hutch import fastjson
    pad, inner = indent * level, indent * (level + 1)
    if isinstance(obj, dict) and obj:
        items = [f"{inner}{fastjson.dumps(str(k))}: {pretty_json(v, indent, level + 1)}"
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, (list, tuple)) and obj:
        items = [f"{inner}{pretty_json(v, indent, level + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return fastjson.dumps(obj)


def cmd_list(argv, g) -> int:
    from hutch.oci import container
    opts, _ = parse(argv, [Flag("format", ("f",), value=True, default="table"), Flag("quiet", ("q",))])
    import json
    rows = container.list_containers(g.root)
    if opts["quiet"]:
        for row in rows:
            print(row["id"])
    elif opts["format"] == "json":
        print(json.dumps(rows))
    elif opts["format"] == "table":
        table = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
        table += [[r["id"], str(r["pid"]), r["status"], r["bundle"], r["created"], r["owner"]] for r in rows]
        print(format_table(table), end="")
    else:
        raise ConfigError(f"invalid format option {opts['format']!r}", where="--format")
    return 0


def format_table(rows: list[list[str]], minwidth: int = 12, padding: int = 3) -> str:
    """Columns as Go's tabwriter(minwidth=12, padding=3) lays them out (runc's list/ps)."""
    widths = [max(minwidth, max(len(r[i]) for r in rows) + padding) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("".join(cells))
    return "\n".join(lines) + "\n"


def cmd_kill(argv, g) -> int:
    from hutch.oci import container
    opts, pos = parse(argv, [Flag("all", ("a",))], interspersed=True)
    if not 1 <= len(pos) <= 2:
        raise ConfigError("kill requires the container id and an optional signal", where="kill")
    sig = container.parse_signal(pos[1] if len(pos) == 2 else "SIGTERM")
    container.kill(g.root, pos[0], sig, all_processes=bool(opts["all"]))
    return 0


def cmd_delete(argv, g) -> int:
    from hutch.oci import container
    opts, pos = parse(argv, [Flag("force", ("f",))], interspersed=True)
    if not pos:
        raise ConfigError("delete requires at least 1 container id", where="delete")
    for container_id in pos:
        container.delete(g.root, container_id, force=bool(opts["force"]))
    return 0


def cmd_ps(argv, g) -> int:
    from hutch.oci import container
    from hutch.oci.ps import container_pids, ps_table
    opts, pos = parse(argv, [Flag("format", ("f",), value=True, default="table")])
    if not pos:
        raise ConfigError("ps requires the container id", where="ps")
    state = container.st.load(g.root, pos[0])
    pids = container_pids(state)
    if opts["format"] == "json":
        import json
        print(json.dumps(pids))
        return 0
    print(ps_table(pids, pos[1:] or ["-ef"]), end="")
    return 0


def cmd_exec(argv, g) -> int:
    from hutch.oci import container
    from hutch.oci.execproc import build_exec_process
    opts, pos = parse(argv, EXEC_FLAGS)
    if not pos:
        raise ConfigError("exec requires the container id", where="exec")
    container_id, args = pos[0], pos[1:]
    state = container.st.load(g.root, container_id)
    saved = container.load_spec(g.root, state)
    process = build_exec_process(saved.get("process") or {}, opts, args)
    if process.get("terminal") and not opts["console-socket"] and not opts["detach"]:
        from hutch.oci.attach import exec_with_tty
        return exec_with_tty(g.root, container_id, process, pid_file=opts["pid-file"],
                             preserve_fds=int_flag(opts, "preserve-fds"))
    started = container.exec_process(g.root, container_id, process, console_socket=opts["console-socket"],
                                     pid_file=opts["pid-file"], detach=bool(opts["detach"]),
                                     preserve_fds=int_flag(opts, "preserve-fds"), loaded=(state, saved))
    started.exec_result()
    if opts["detach"]:
        return 0
    from hutch.oci.attach import wait_forwarding_signals
    return wait_forwarding_signals(started.pid)


def cmd_spec(argv, g) -> int:
    from hutch.oci.spec import spec_command
    return spec_command(argv)


def cmd_features(argv, g) -> int:
    from hutch.oci.features import features_command
    return features_command(argv)


HANDLERS = {"create": cmd_create, "start": cmd_start, "run": cmd_run, "state": cmd_state,
            "list": cmd_list, "kill": cmd_kill, "delete": cmd_delete, "ps": cmd_ps,
            "exec": cmd_exec, "spec": cmd_spec, "features": cmd_features}
