"""Usage statistics shaped like the "data" object of `runc events --stats`
(runc's types.Stats: cpu, memory, pids, blkio, hugetlb)."""

from __future__ import annotations

import os

from hutch.cgroups.common import read_flat_keyed, read_int, read_or

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_NS_PER_TICK = 1_000_000_000 // _CLK_TCK


def _ints(path: str) -> list[int]:
    text = read_or(path, "") or ""
    return [int(x) for x in text.split() if x.lstrip("-").isdigit()]


def empty() -> dict:
    return {"cpu": {"usage": {"total": 0, "kernel": 0, "user": 0},
                    "throttling": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
            "memory": {"usage": {"limit": 0, "usage": 0, "max": 0, "failcnt": 0},
                       "swap": {"limit": 0, "usage": 0, "max": 0, "failcnt": 0},
                       "kernel": {"limit": 0, "usage": 0, "max": 0, "failcnt": 0},
                       "kernelTCP": {"limit": 0, "usage": 0, "max": 0, "failcnt": 0},
                       "cache": 0, "raw": {}},
            "pids": {"current": 0, "limit": 0},
            "blkio": {}, "hugetlb": {}}


def _v1_mem_entry(d: str, prefix: str) -> dict:
    return {"limit": read_int(os.path.join(d, f"{prefix}.limit_in_bytes")),
            "usage": read_int(os.path.join(d, f"{prefix}.usage_in_bytes")),
            "max": read_int(os.path.join(d, f"{prefix}.max_usage_in_bytes")),
            "failcnt": read_int(os.path.join(d, f"{prefix}.failcnt"))}


def _blkio_v1_entries(path: str) -> list[dict]:
    """'8:0 Read 4096' lines -> [{major, minor, op, value}] (the 'Total' line dropped)."""
    out = []
    for line in (read_or(path, "") or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, minor = parts[0].split(":")
            out.append({"major": int(major), "minor": int(minor), "op": parts[1],
                        "value": int(parts[2])})
        elif len(parts) == 2 and ":" in parts[0]:
            major, minor = parts[0].split(":")
            out.append({"major": int(major), "minor": int(minor), "op": "", "value": int(parts[1])})
    return out


def v1_stats(paths: dict[str, str]) -> dict:
    s = empty()
    acct = paths.get("cpuacct")
    if acct:
        usage = s["cpu"]["usage"]
        usage["total"] = read_int(os.path.join(acct, "cpuacct.usage"))
        usage["percpu"] = _ints(os.path.join(acct, "cpuacct.usage_percpu"))
        usage["percpu_kernel"] = _ints(os.path.join(acct, "cpuacct.usage_percpu_sys"))
        usage["percpu_user"] = _ints(os.path.join(acct, "cpuacct.usage_percpu_user"))
        ticks = read_flat_keyed(os.path.join(acct, "cpuacct.stat"))
        usage["user"] = ticks.get("user", 0) * _NS_PER_TICK
        usage["kernel"] = ticks.get("system", 0) * _NS_PER_TICK
    if paths.get("cpu"):
        st = read_flat_keyed(os.path.join(paths["cpu"], "cpu.stat"))
        s["cpu"]["throttling"] = {"periods": st.get("nr_periods", 0),
                                  "throttled_periods": st.get("nr_throttled", 0),
                                  "throttled_time": st.get("throttled_time", 0)}
    mem = paths.get("memory")
    if mem:
        raw = read_flat_keyed(os.path.join(mem, "memory.stat"))
        m = s["memory"]
        m["raw"] = raw
        m["cache"] = raw.get("total_cache", raw.get("cache", 0))
        m["usage"] = _v1_mem_entry(mem, "memory")
        m["swap"] = _v1_mem_entry(mem, "memory.memsw")
        m["kernel"] = _v1_mem_entry(mem, "memory.kmem")
        m["kernelTCP"] = _v1_mem_entry(mem, "memory.kmem.tcp")
        m["use_hierarchy"] = read_int(os.path.join(mem, "memory.use_hierarchy")) == 1
    if paths.get("pids"):
        s["pids"] = {"current": read_int(os.path.join(paths["pids"], "pids.current")),
                     "limit": read_int(os.path.join(paths["pids"], "pids.max"))}
    blk = paths.get("blkio")
    if blk:
        # CFQ/BFQ files when present, else the throttle files (what runc falls back to)
        if os.path.exists(os.path.join(blk, "blkio.io_service_bytes_recursive")):
            pre = "blkio."
        elif os.path.exists(os.path.join(blk, "blkio.bfq.io_service_bytes_recursive")):
            pre = "blkio.bfq."
        else:
            pre = "blkio.throttle."
        s["blkio"] = {
            "ioServiceBytesRecursive": _blkio_v1_entries(os.path.join(blk, pre + "io_service_bytes_recursive")),
            "ioServicedRecursive": _blkio_v1_entries(os.path.join(blk, pre + "io_serviced_recursive")),
        }
    hug = paths.get("hugetlb")
    if hug:
        for name in sorted(os.listdir(hug)):
            if name.startswith("hugetlb.") and name.endswith(".limit_in_bytes") and ".rsvd." not in name:
                size = name.split(".")[1]
                s["hugetlb"][size] = {
                    "usage": read_int(os.path.join(hug, f"hugetlb.{size}.usage_in_bytes")),
                    "max": read_int(os.path.join(hug, f"hugetlb.{size}.max_usage_in_bytes")),
                    "failcnt": read_int(os.path.join(hug, f"hugetlb.{size}.failcnt"))}
    return s


def v2_stats(d: str) -> dict:
    s = empty()
    cpu = read_flat_keyed(os.path.join(d, "cpu.stat"))
    s["cpu"]["usage"] = {"total": cpu.get("usage_usec", 0) * 1000,
                         "user": cpu.get("user_usec", 0) * 1000,
                         "kernel": cpu.get("system_usec", 0) * 1000}
    s["cpu"]["throttling"] = {"periods": cpu.get("nr_periods", 0),
                              "throttled_periods": cpu.get("nr_throttled", 0),
                              "throttled_time": cpu.get("throttled_usec", 0) * 1000}
    if os.path.exists(os.path.join(d, "memory.current")):
        raw = read_flat_keyed(os.path.join(d, "memory.stat"))
        events = read_flat_keyed(os.path.join(d, "memory.events"))
        m = s["memory"]
        m["raw"] = raw
        m["cache"] = raw.get("file", 0)
        m["usage"] = {"limit": read_int(os.path.join(d, "memory.max")),
                      "usage": read_int(os.path.join(d, "memory.current")),
                      "max": read_int(os.path.join(d, "memory.peak")),
                      "failcnt": events.get("max", 0)}
        m["swap"] = {"limit": read_int(os.path.join(d, "memory.swap.max")),
                     "usage": read_int(os.path.join(d, "memory.swap.current")),
                     "max": read_int(os.path.join(d, "memory.swap.peak")), "failcnt": 0}
    if os.path.exists(os.path.join(d, "pids.current")):
        s["pids"] = {"current": read_int(os.path.join(d, "pids.current")),
                     "limit": read_int(os.path.join(d, "pids.max"))}
    io_bytes, io_ops = [], []
    for line in (read_or(os.path.join(d, "io.stat"), "") or "").splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, minor = (int(x) for x in parts[0].split(":"))
        kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        for key, op, target in (("rbytes", "Read", io_bytes), ("wbytes", "Write", io_bytes),
                                ("rios", "Read", io_ops), ("wios", "Write", io_ops)):
            if key in kv:
                target.append({"major": major, "minor": minor, "op": op, "value": int(kv[key])})
    s["blkio"] = {"ioServiceBytesRecursive": io_bytes, "ioServicedRecursive": io_ops}
    try:
        names = sorted(os.listdir(d))
    except OSError:
        names = []
    for name in names:
        if name.startswith("hugetlb.") and name.endswith(".current") and ".rsvd." not in name:
            size = name.split(".")[1]
            events = read_flat_keyed(os.path.join(d, f"hugetlb.{size}.events"))
            s["hugetlb"][size] = {"usage": read_int(os.path.join(d, name)),
                                  "max": read_int(os.path.join(d, f"hugetlb.{size}.max")),
                                  "failcnt": events.get("max", 0)}
    return s
