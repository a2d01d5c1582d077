"""`hutch update|pause|resume|events|stats`: runc-compatible commands over a
container's cgroup.  Thin: parse, call hutch.cgroups, print."""

from __future__ import annotations

import argparse
import json
import sys
import time

from hutch.errors import ConfigError, StateError


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as a ConfigError (one line, exit 1)."""

    def error(self, message):
        raise ConfigError(message, where=self.prog)


def _load(g, container_id: str):
    from hutch.oci import state as st
    return st.load(g.root, container_id)


def _manager(state):
    import hutch.cgroups as cg
    return cg.from_state(state.cgroup)


def _require(state, *statuses: str):
    status = state.live_status()
    if status not in statuses:
        raise StateError(f"container {state.id} is {status}, not {' or '.join(statuses)}",
                         where=state.id)
    return status


# --- update ---------------------------------------------------------------------------

_UPDATE_FLAGS = ["memory", "memory-swap", "memory-reservation", "kernel-memory", "kernel-memory-tcp",
                 "cpu-shares", "cpu-quota", "cpu-period", "cpu-rt-runtime", "cpu-rt-period",
                 "cpuset-cpus", "cpuset-mems", "pids-limit", "blkio-weight", "cpus",
                 "memory-swappiness"]


def update(argv: list[str], g) -> int:
    p = _Parser(prog="update", description="update container resource limits")
    p.add_argument("-r", "--resources", help="JSON linux.resources from FILE, or - for stdin")
    for flag in _UPDATE_FLAGS:
        p.add_argument(f"--{flag}")
    p.add_argument("--cpu-share", dest="cpu_shares", help=argparse.SUPPRESS)   # runc's spelling
    p.add_argument("--l3-cache-schema")
    p.add_argument("--mem-bw-schema")
    p.add_argument("container_id")
    args = p.parse_args(argv)
    if args.l3_cache_schema or args.mem_bw_schema:
        raise ConfigError("Intel RDT is not supported by hutch", where="--l3-cache-schema")
    if args.resources:
        # as runc: with -r, the other limit flags are ignored
        resources = _read_resources(args.resources)
    else:
        resources = _resources_from_flags(args)
    from hutch.cgroups.check import validate
    validate(resources)
    if (resources.get("memory") or {}).get("kernel"):
        print("hutch: warning: kernel memory limits are not supported by the kernel; ignored",
              file=sys.stderr)
    state = _load(g, args.container_id)
    _require(state, "created", "running", "paused")
    _manager(state).apply(resources)
    return 0


def _resources_from_flags(args) -> dict:
    import hutch.cgroups as cg
    resources = cg.resources_from_options(
        memory=args.memory, memory_swap=args.memory_swap,
        memory_reservation=args.memory_reservation, kernel_memory=args.kernel_memory,
        memory_swappiness=args.memory_swappiness, cpus=args.cpus,
        cpu_shares=args.cpu_shares, cpu_quota=args.cpu_quota, cpu_period=args.cpu_period,
        cpu_rt_runtime=args.cpu_rt_runtime, cpu_rt_period=args.cpu_rt_period,
        cpuset_cpus=args.cpuset_cpus, cpuset_mems=args.cpuset_mems,
        pids_limit=args.pids_limit, blkio_weight=args.blkio_weight)
    if args.kernel_memory_tcp is not None:
        from hutch.cgroups.convert import parse_size
        resources.setdefault("memory", {})["kernelTCP"] = parse_size(
            args.kernel_memory_tcp, "--kernel-memory-tcp", allow_unlimited=True)
    return resources


def _read_resources(source: str) -> dict:
    """`update --resources FILE` (or - for stdin): a linux.resources object, or one line."""
    from hutch import fastjson
    where = f"--resources {source}"
    if source == "-":
        try:
            raw = sys.stdin.buffer.read()
        except (OSError, AttributeError) as err:   # no stdin, or a stdin without bytes
            raise ConfigError(f"cannot read standard input: {err}", where=where) from None
        data = fastjson.loads(raw, where=where)
    else:
        data = fastjson.load_file(source, where=where)
    return fastjson.require_object(data, where=where)


# --- pause / resume -----------------------------------------------------------------

def pause_resume(command: str, argv: list[str], g) -> int:
    p = _Parser(prog=command, description=f"{command} all processes of a container")
    p.add_argument("container_id")
    args = p.parse_args(argv)
    from hutch.oci import state as st
    with st.locked(g.root, args.container_id):
        state = st.load(g.root, args.container_id)
        m = _manager(state)
        if command == "pause":
            _require(state, "running", "created")
            m.freeze()
            state.status = "paused"
        else:
            _require(state, "paused")
            m.thaw()
            state.status = "running"
        st.save(g.root, state)
    return 0


# --- events ---------------------------------------------------------------------------

def _emit(kind: str, cid: str, data=None) -> None:
    event = {"type": kind, "id": cid}
    if data is not None:
        event["data"] = data
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def events(argv: list[str], g) -> int:
    p = _Parser(prog="events", description="container events: OOM kills and usage statistics")
    p.add_argument("--stats", action="store_true", help="print the container's stats once and exit")
    p.add_argument("--interval", default="5s", help="stats interval (default 5s)")
    p.add_argument("container_id")
    args = p.parse_args(argv)
    from hutch.cgroups.convert import parse_duration
    interval = parse_duration(args.interval, "--interval")
    state = _load(g, args.container_id)
    _require(state, "created", "running", "paused")
    m = _manager(state)
    if args.stats:
        _emit("stats", state.id, m.stats())
        return 0
    from hutch.errors import HutchError
    try:
        watch = m.oom_watch()
    except HutchError:
        watch = None                       # no memory controller: stats only
    next_stats = time.monotonic() + interval
    try:
        while True:
            timeout = max(0.0, min(next_stats - time.monotonic(), 0.5))
            if watch is not None:
                for _ in range(watch.wait(timeout)):
                    _emit("oom", state.id)
            else:
                time.sleep(timeout)
            if state.live_status() == "stopped" or not m.exists():
                if watch is not None:             # an OOM kill may be what stopped it
                    for _ in range(watch.wait(0)):
                        _emit("oom", state.id)
                return 0
            if time.monotonic() >= next_stats:
                _emit("stats", state.id, m.stats())
                next_stats += interval
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
    finally:
        if watch is not None:
            watch.close()


# --- stats ----------------------------------------------------------------------------

def _host_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _sample(states) -> dict:
    """{id: (monotonic ns, stats)} for containers whose cgroup can be read."""
    out = {}
    for state in states:
        try:
            out[state.id] = (time.monotonic_ns(), _manager(state).stats())
        except (StateError, OSError):
            continue
    return out


def _row(state, before, after, host_mem: int) -> dict:
    t0, s0 = before
    t1, s1 = after
    dt = max(1, t1 - t0)
    cpu_pct = 100.0 * max(0, s1["cpu"]["usage"]["total"] - s0["cpu"]["usage"]["total"]) / dt
    mem = s1["memory"]["usage"]
    limit = mem["limit"]
    if not limit or limit >= (1 << 62) or (host_mem and limit > host_mem):
        limit = host_mem
    usage = max(0, mem["usage"] - s1["memory"]["raw"].get("total_inactive_file",
                                                        s1["memory"]["raw"].get("inactive_file", 0)))
    read = sum(e["value"] for e in s1["blkio"].get("ioServiceBytesRecursive", []) if e["op"] == "Read")
    write = sum(e["value"] for e in s1["blkio"].get("ioServiceBytesRecursive", []) if e["op"] == "Write")
    return {"id": state.id, "status": state.live_status(), "cpu_percent": round(cpu_pct, 2),
            "memory_usage": usage, "memory_limit": limit,
            "memory_percent": round(100.0 * usage / limit, 2) if limit else 0.0,
            "pids": s1["pids"]["current"], "pids_limit": s1["pids"]["limit"],
            "block_read": read, "block_write": write}


def _human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.2f}{unit}"
        value /= 1024
    return str(n)


def format_table(rows: list[dict]) -> str:
    header = f"{'CONTAINER ID':<20} {'CPU %':>7}  {'MEM USAGE / LIMIT':<23} {'MEM %':>6}  " \
             f"{'PIDS':>5}  BLOCK I/O"
    lines = [header]
    for r in rows:
        mem = f"{_human(r['memory_usage'])} / {_human(r['memory_limit'])}"
        blk = f"{_human(r['block_read'])} / {_human(r['block_write'])}"
        lines.append(f"{r['id'][:20]:<20} {r['cpu_percent']:>6.2f}%  {mem:<23} "
                     f"{r['memory_percent']:>5.2f}%  {r['pids']:>5}  {blk}")
    return "\n".join(lines)


def stats(argv: list[str], g) -> int:
    p = _Parser(prog="stats", description="live CPU, memory, pids and I/O of containers")
    p.add_argument("--json", action="store_true", help="print one sample as JSON and exit")
    p.add_argument("--no-stream", action="store_true", help="print one sample and exit")
    p.add_argument("--interval", default="1s", help="refresh interval (default 1s)")
    p.add_argument("containers", nargs="*")
    args = p.parse_args(argv)
    from hutch.cgroups.convert import parse_duration
    from hutch.oci import state as st
    interval = parse_duration(args.interval, "--interval")
    if args.containers:
        states = [st.load(g.root, cid) for cid in args.containers]
        for state in states:
            _require(state, "created", "running", "paused")
    else:
        states = [s for s in st.list_states(g.root)
                  if s.cgroup and s.live_status() in ("created", "running", "paused")]
    host_mem = _host_memory()
    once = args.json or args.no_stream
    before = _sample(states)
    try:
        while True:
            time.sleep(min(interval, 0.5) if once else interval)
            after = _sample(states)
            rows = [_row(s, before[s.id], after[s.id], host_mem) for s in states
                    if s.id in before and s.id in after]
            if args.json:
                print(json.dumps(rows))
                return 0
            if once:
                print(format_table(rows))
                return 0
            sys.stdout.write("\x1b[H\x1b[2J" + format_table(rows) + "\n")
            sys.stdout.flush()
            before = after
    except (KeyboardInterrupt, BrokenPipeError):
        return 0


def main(command: str, argv: list[str], g) -> int:
    if command == "update":
        return update(argv, g)
    if command in ("pause", "resume"):
        return pause_resume(command, argv, g)
    if command == "events":
        return events(argv, g)
    if command == "stats":
        return stats(argv, g)
    raise ConfigError(f"unknown command {command!r}")
