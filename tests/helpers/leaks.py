"""What a test run may leave on the machine: mounts, netns, links, cgroups, nft tables,
processes.  Compared before and after the session."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def _mounts() -> set[str]:
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4]
            if "hutch" in target or target.startswith("/tmp/") or target.startswith("/run/netns/"):
                out.add(target)
    return out


def _netns() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def _links() -> set[str]:
    try:
        out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line}


def _cgroups() -> set[str]:
    found = set()
    root = Path("/sys/fs/cgroup")
    for ctl in root.iterdir() if root.exists() else ():
        for depth in ("*", "*/*", "*/*/*"):
            try:
                for p in ctl.glob(depth):
                    if p.is_dir() and ("hutch" in p.name.lower() or "hutch-test" in str(p)):
                        found.add(str(p))
            except OSError:
                continue  # a cgroup removed while we looked
    return found


def _nft_tables() -> set[str]:
    try:
        out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return set(out.splitlines())


def _iptables_chains() -> set[str]:
    """`tool table chain` of every iptables/ip6tables chain (portmap's CNI-HOSTPORT-* chains
    live inside tables that may exist already, so the nft table scan does not see them)."""
    found = set()
    for tool in ("iptables-save", "ip6tables-save"):
        try:
            out = subprocess.run([tool], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        table = ""
        for line in out.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":"):
                found.add(f"{tool} {table} {line[1:].split()[0]}")
    return found


def _cni_state() -> set[str]:
    """libcni's result cache and host-local's default IPAM data (/var/lib/cni)."""
    root = Path("/var/lib/cni")
    return {str(p) for p in root.rglob("*")} | {str(root)} if root.exists() else set()


def _hutch_processes() -> set[str]:
    """Processes whose command line names hutch or a test bundle (container inits)."""
    found = set()
    me = os.getpid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "hutch-test-" in cmd or "hutch init" in cmd or "[hutch" in cmd:
            found.add(f"{pid} {cmd[:80]}")
    return found


def _orphans() -> set[str]:
    """Live processes adopted by pid 1 (not kernel threads, not zombies): a test's process
    whose parent was killed without it -- a shell's child, a daemon a test started and
    forgot -- ends up here.  Compared by pid and command line, so what ran before the
    session does not count."""
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if ppid == "1" and cmd and state != "Z":
            found.add(f"{pid} {cmd[:80]}")
    return found


_HOST_SYSCTLS = ("net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/ipv6/conf/all/forwarding",
                 "net/ipv4/conf/all/route_localnet", "net/ipv4/conf/eth0/forwarding")


def _host_sysctls() -> set[str]:
    """Host-wide network settings no test may change: hutch sets forwarding and
    route_localnet on its own bridges only (a peer such as netavark or a CNI plugin run in
    the host's namespace would turn ip_forward on for the whole host)."""
    found = set()
    for name in _HOST_SYSCTLS:
        try:
            with open(f"/proc/sys/{name}") as f:
                found.add(f"{name}={f.read().strip()}")
        except OSError:
            continue
    return found


SCANS = {"mounts": _mounts, "netns": _netns, "links": _links, "cgroups": _cgroups,
         "nft tables": _nft_tables, "iptables chains": _iptables_chains, "cni state": _cni_state,
         "processes": _hutch_processes, "orphaned processes": _orphans,
         "host sysctls": _host_sysctls}


def snapshot() -> dict[str, set[str]]:
    return {name: scan() for name, scan in SCANS.items()}


def new_since(before: dict[str, set[str]], after: dict[str, set[str]]) -> dict[str, list[str]]:
    return {k: sorted(after[k] - before.get(k, set())) for k in after if after[k] - before.get(k, set())}
