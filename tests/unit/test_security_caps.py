"""Pure parts of hutch.security: capability sets, the exec model, input validation."""

from __future__ import annotations

import pytest

from hutch.errors import ConfigError
from hutch.security import caps as capmod
from hutch.security import process as proc


def mask(*names):
    return capmod.to_mask(names)


def test_lead_helpers_still_work():
    assert capmod.to_mask(["CAP_KILL", "net_bind_service"]) == 1 << 5 | 1 << 10
    assert capmod.to_names(1 << 5 | 1 << 21) == ["CAP_KILL", "CAP_SYS_ADMIN"]
    assert capmod.normalize("chown") == "CAP_CHOWN"
    assert capmod.all_caps_mask() == (1 << (capmod.last_cap() + 1)) - 1
    assert set(capmod.DEFAULT_CAPS) <= set(capmod.CAPABILITIES)


def test_missing_object_or_set_is_empty():
    assert capmod.from_process({}) == capmod.CapSets()
    assert capmod.from_process({"capabilities": None}) == capmod.CapSets()
    sets = capmod.from_process({"capabilities": {"bounding": ["CAP_KILL"]}})
    assert sets == capmod.CapSets(bounding=mask("CAP_KILL"))


def test_unknown_capability_names_its_path():
    with pytest.raises(ConfigError) as info:
        capmod.from_process({"capabilities": {"permitted": ["CAP_KILL", "CAP_FLY"]}})
    assert info.value.where == "process.capabilities.permitted[1]"
    with pytest.raises(ConfigError) as info:
        capmod.from_process({"capabilities": {"ambiant": []}})
    assert info.value.where == "process.capabilities.ambiant"


def test_consistency_rules_of_capset():
    with pytest.raises(ConfigError) as info:
        capmod.check_consistent(capmod.CapSets(effective=mask("CAP_KILL")))
    assert info.value.where == "process.capabilities.effective" and "CAP_KILL" in str(info.value)
    with pytest.raises(ConfigError) as info:
        capmod.check_consistent(capmod.CapSets(inheritable=mask("CAP_CHOWN")))
    assert info.value.where == "process.capabilities.inheritable"


# Values observed under runc 1.1.5 on this kernel (see tests/priv/test_security_runc.py).
FOUR = mask("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_ADMIN", "CAP_SYS_ADMIN")


def test_exec_model_root_with_no_new_privs():
    sets = capmod.CapSets(bounding=FOUR, effective=mask("CAP_AUDIT_WRITE", "CAP_KILL"),
                          permitted=FOUR, inheritable=mask("CAP_KILL"), ambient=mask("CAP_KILL"))
    after = capmod.after_exec(sets, uid=0, no_new_privs=True)
    assert (after.permitted, after.effective, after.ambient) == (FOUR, FOUR, mask("CAP_KILL"))


def test_exec_model_root_without_no_new_privs_gains_the_bounding_set():
    sets = capmod.CapSets(bounding=FOUR, permitted=mask("CAP_KILL"))
    assert capmod.after_exec(sets, uid=0).effective == FOUR
    assert capmod.after_exec(sets, uid=0, no_new_privs=True).effective == mask("CAP_KILL")


def test_exec_model_non_root_keeps_only_ambient():
    sets = capmod.CapSets(bounding=FOUR, effective=FOUR, permitted=FOUR,
                          inheritable=mask("CAP_KILL"), ambient=mask("CAP_KILL"))
    after = capmod.after_exec(sets, uid=1000, no_new_privs=True)
    assert (after.permitted, after.effective, after.bounding) == \
        (mask("CAP_KILL"), mask("CAP_KILL"), FOUR)
    assert capmod.after_exec(capmod.CapSets(effective=FOUR, permitted=FOUR), 1000).effective == 0


@pytest.mark.parametrize("process,linux,where", [
    ({"rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]}, {}, "process.rlimits[0].type"),
    ({"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}] * 2}, {},
     "process.rlimits[1].type"),
    ({"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 1}]}, {}, "process.rlimits[0]"),
    ({"rlimits": [{"type": "RLIMIT_NOFILE", "soft": -1, "hard": 1}]}, {},
     "process.rlimits[0].soft"),
    ({"oomScoreAdj": 1001}, {}, "process.oomScoreAdj"),
    ({"ioPriority": {"class": "IOPRIO_CLASS_FAST", "priority": 1}}, {}, "process.ioPriority.class"),
    ({"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 8}}, {},
     "process.ioPriority.priority"),
    ({"scheduler": {"policy": "SCHED_FAST"}}, {}, "process.scheduler.policy"),
    ({"scheduler": {"policy": "SCHED_FIFO"}}, {}, "process.scheduler.priority"),
    ({"scheduler": {"policy": "SCHED_OTHER", "nice": 20}}, {}, "process.scheduler.nice"),
    ({"scheduler": {"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_X"]}}, {},
     "process.scheduler.flags[0]"),
    ({}, {"personality": {"domain": "LINUX64"}}, "linux.personality.domain"),
    ({}, {"personality": {"domain": "LINUX", "flags": ["FAST"]}}, "linux.personality.flags[0]"),
    ({"user": {"uid": "root"}}, {}, "process.user.uid"),
    ({"user": {"uid": 0, "gid": 0, "umask": "022"}}, {}, "process.user.umask"),
    ({"user": {"uid": 0, "gid": 0, "additionalGids": [1, -2]}}, {},
     "process.user.additionalGids[1]"),
    ({"capabilities": {"effective": ["CAP_KILL"]}}, {}, "process.capabilities.effective"),
    ({}, {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                      "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}},
     "linux.seccomp.syscalls[0].action"),
])
def test_bad_input_names_its_json_path(process, linux, where):
    with pytest.raises(ConfigError) as info:
        proc.validate(process, linux)
    assert info.value.where == where, str(info.value)


def test_lsm_labels_need_the_lsm():
    if not proc.apparmor_enabled():
        with pytest.raises(ConfigError, match="apparmor is not enabled on this host"):
            proc.validate({"apparmorProfile": "docker-default"}, {})
    if not proc.selinux_enabled():
        with pytest.raises(ConfigError, match="selinux is not enabled on this host"):
            proc.validate({"selinuxLabel": "system_u:system_r:container_t:s0"}, {})
    proc.validate({"apparmorProfile": "", "selinuxLabel": ""}, {})  # empty means unset


def test_plan_of_a_full_process():
    p = proc.plan({"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}],
                   "oomScoreAdj": -5, "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 3},
                   "scheduler": {"policy": "SCHED_RR", "priority": 10,
                                 "flags": ["SCHED_FLAG_RESET_ON_FORK"]},
                   "user": {"uid": 5, "gid": 6, "additionalGids": [7], "umask": 0o077},
                   "noNewPrivileges": True,
                   "capabilities": {"bounding": ["CAP_KILL"], "permitted": ["CAP_KILL"]}},
                  {"personality": {"domain": "LINUX32", "flags": ["ADDR_NO_RANDOMIZE"]},
                   "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}})
    assert [(r.name, r.soft, r.hard) for r in p.rlimits] == [("RLIMIT_NOFILE", 1024, 2048)]
    assert p.ioprio == 2 << 13 | 3
    assert (p.scheduler.policy, p.scheduler.priority, p.scheduler.flags) == (2, 10, 1)
    assert p.personality == 0x0008 | 0x0040000
    assert (p.user.uid, p.user.gid, p.user.additional_gids, p.user.umask) == (5, 6, [7], 0o077)
    assert p.caps.permitted == mask("CAP_KILL") and p.no_new_privs
    assert p.seccomp_prog and len(p.seccomp_prog) % 8 == 0


def test_default_umask_is_runcs():
    assert proc.plan({}, {}).user.umask == 0o022
