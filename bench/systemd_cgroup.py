#!/usr/bin/env python3
"""Container lifecycle with the systemd cgroup driver: hutch vs runc, side by side.

This host's PID 1 is not systemd, so the benchmark boots the host's systemd in a
throw-away machine (the tests' tests/helpers/systemd_machine.py) and times, inside it,
`create` + `start` + `kill` + `delete --force` of a busybox `sleep` with
`--systemd-cgroup` and a memory and pids limit, for each runtime in turn (interleaved
rounds).  Every cycle makes and removes a transient scope over D-Bus.

Run as root from the repository: .venv/bin/python bench/systemd_cgroup.py [ROUNDS]
Prints medians and the ratio hutch/runc (lower is better for hutch)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from helpers.systemd_machine import SystemdMachine, available  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
HUTCH = os.path.join(os.path.dirname(sys.executable), "hutch")
RUNC = shutil.which("runc") or "/usr/sbin/runc"

# Runs inside the machine, as a transient service: times each cycle with perf_counter.
TIMER = r"""
import json, statistics, subprocess, sys, time
bundle, rounds, runtimes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
VERBS = ("create", "start", "kill", "delete")
def cycle(rt, cid, into):
    # the container inherits the runtime's stdio: never a pipe we would wait on
    q = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
             check=True)
    for verb, args in zip(VERBS, (["create", "--bundle", bundle, cid], ["start", cid],
                                  ["kill", cid, "KILL"], ["delete", "--force", cid])):
        t0 = time.perf_counter()
        subprocess.run([rt, "--systemd-cgroup", *args], **q)
        into.setdefault(verb, []).append((time.perf_counter() - t0) * 1000)
times = {rt: {} for rt in runtimes}
for i in range(rounds + 1):
    for rt in runtimes:
        cycle(rt, f"bench-{i}", times[rt] if i else {})     # round 0 warms caches
out = {rt: {verb: statistics.median(v) for verb, v in per.items()} for rt, per in times.items()}
for rt, per in times.items():
    out[rt]["total"] = statistics.median([sum(x) for x in zip(*per.values())])
print(json.dumps(out))
"""

def make_bundle(tmp: Path) -> Path:
    rootfs = tmp / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    (rootfs / "bin" / "sleep").symlink_to("busybox")
    subprocess.run([RUNC, "spec"], cwd=tmp, check=True)
    config = json.loads((tmp / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/sleep", "3600"]
    config["root"]["path"] = str(rootfs)
    config["linux"]["cgroupsPath"] = "system.slice:bench:c"
    config["linux"]["resources"].update(memory={"limit": 64 << 20}, pids={"limit": 100})
    (tmp / "config.json").write_text(json.dumps(config))
    (tmp / "timer.py").write_text(TIMER)
    return tmp


def main() -> int:
    # a SIGTERM (timeout, Ctrl-C of a wrapper) still stops the machine in `finally`
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    why = available()
    if why:
        print(f"cannot boot a systemd machine here: {why}")
        return 1
    with tempfile.TemporaryDirectory(prefix="hutch-bench-sd-") as tmp:
        bundle = make_bundle(Path(tmp) / "bundle")
        machine = SystemdMachine(Path(tmp) / "machine", Path(tmp)).start()
        try:
            res = machine.run([sys.executable, str(bundle / "timer.py"), str(bundle), str(ROUNDS),
                               HUTCH, RUNC], timeout=600)
        finally:
            machine.stop()
    if res.returncode != 0:
        print(res.stdout + res.stderr)
        return 1
    medians = json.loads(res.stdout.strip().splitlines()[-1])
    hutch, runc = medians[HUTCH], medians[RUNC]
    print(f"systemd cgroup driver, median of {ROUNDS} rounds (ms):")
    print(f"  {'':8} {'hutch':>8} {'runc':>8} {'ratio':>6}")
    for verb in ("create", "start", "kill", "delete", "total"):
        print(f"  {verb:8} {hutch[verb]:8.1f} {runc[verb]:8.1f} {hutch[verb] / runc[verb]:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
