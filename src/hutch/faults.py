"""Fault injection: `HUTCH_FAULT=STEP hutch create ...` dies by SIGKILL at STEP.

Every step of a verb that leaves something behind calls `step(NAME)`; STEPS lists
them in order, and tests/unit/test_owned.py checks that every `step("...")` in the
source is listed here, so the crash tests (tests/integration/test_state_ownership.py for
create.*, test_net_crash.py for net.*) cover a new step as soon as it is written.
At layer 0, so that every layer can mark its steps.  Without the variable a step costs one comparison.
"""

from __future__ import annotations

import os

STEPS = (
    "create.dir",              # the container directory exists, no state yet
    "create.state",            # state.json and the config copy written
    "create.cgroup-recorded",  # the cgroup is in the journal, not made
    "create.cgroup-made",      # made and limits applied
    "create.pid-recorded",     # the container process exists and is in the journal
    "create.cgroup-joined",    # the process is in its cgroup
    "create.setup-done",       # parent-side setup (and prestart hooks) done
    "create.ready",            # the process waits for start; status not yet saved
    "create.saved",            # status "created" saved, pid file not yet written
    "delete.undone",           # delete: everything undone, directory still there
    "net.recorded",            # a network join is in the journal, nothing made
    "net.leased",              # its address and ports are leased, not yet wired
    "net.wired",               # veth, addresses, routes, ports made; hosts not yet rewritten
)

_TARGET = os.environ.get("HUTCH_FAULT")


def step(name: str) -> None:
    if _TARGET is not None and name == _TARGET:
        os.kill(os.getpid(), 9)
