"""Device access rules: OCI ``linux.resources.devices`` as v1 ``devices.allow/deny``
lines and as a cgroup v2 eBPF (BPF_PROG_TYPE_CGROUP_DEVICE) program.

Pure: this module only builds lines and instruction bytes.  Loading and attaching
the program is in :mod:`hutch.syscall.bpf`.
"""

from __future__ import annotations

import struct

from hutch.errors import ConfigError
from hutch.record import dataclass

# What runc (1.1, libcontainer/specconv AllowedDevices) always lets a container use,
# appended after the rules of config.json.
DEFAULT_ALLOWED = [
    {"allow": True, "type": "c", "major": -1, "minor": -1, "access": "m"},
    {"allow": True, "type": "b", "major": -1, "minor": -1, "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},    # /dev/null
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},    # /dev/random
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},    # /dev/full
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},    # /dev/tty
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},    # /dev/zero
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},    # /dev/urandom
    {"allow": True, "type": "c", "major": 136, "minor": -1, "access": "rwm"},  # /dev/pts/*
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},    # /dev/ptmx
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # /dev/net/tun
]


@dataclass(frozen=True)
class Rule:
    allow: bool
    type: str          # a, b, c
    major: int         # -1 = any
    minor: int         # -1 = any
    access: str        # subset of rwm, in rwm order

    @property
    def matches_all(self) -> bool:
        return self.type == "a" and self.major == -1 and self.minor == -1 and self.access == "rwm"

    def v1_line(self) -> str:
        """The line for devices.allow / devices.deny ('c 1:3 rwm', or 'a' for everything)."""
        if self.matches_all:
            return "a"
        major = "*" if self.major == -1 else str(self.major)
        minor = "*" if self.minor == -1 else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


def normalize(rules: list[dict], with_defaults: bool = True) -> list[Rule]:
    """OCI rules (already validated) -> Rule list, defaults appended like runc.

    A type-'a' rule that is not "everything" is split into b and c rules, because the
    v1 kernel interface reads a leading 'a' as "all devices, all access"."""
    out: list[Rule] = []
    every = list(rules) + (DEFAULT_ALLOWED if with_defaults else [])
    if not every or (every[0].get("type") or "a") != "a":
        # runc's device cgroup starts from deny-all unless the list opens with a type-'a'
        # rule; a v1 cgroup starts allow-all, so say it (the eBPF program denies anyway).
        out.append(Rule(False, "a", -1, -1, "rwm"))
    for raw in every:
        access = "".join(ch for ch in "rwm" if ch in raw.get("access", "rwm"))
        major = -1 if raw.get("major") is None else raw["major"]
        minor = -1 if raw.get("minor") is None else raw["minor"]
        rule = Rule(bool(raw["allow"]), raw.get("type", "a") or "a", major, minor, access)
        if rule.type == "a" and not rule.matches_all:
            out.append(Rule(rule.allow, "b", major, minor, access))
            out.append(Rule(rule.allow, "c", major, minor, access))
        else:
            out.append(rule)
    return out


def v1_writes(rules: list[Rule]) -> list[tuple[str, str]]:
    """(file, line) pairs in order: devices.allow or devices.deny."""
    return [("devices.allow" if r.allow else "devices.deny", r.v1_line()) for r in rules]


def parse_v1_list(text: str) -> list[Rule]:
    """devices.list ('c 1:3 rwm' lines; 'a *:* rwm' = all) -> allow rules."""
    out = []
    for line in text.split("\n"):
        parts = line.split()
        if len(parts) != 3:
            continue
        major, _, minor = parts[1].partition(":")
        out.append(Rule(True, parts[0], -1 if major == "*" else int(major),
                        -1 if minor == "*" else int(minor), parts[2]))
    return out


# --- the state a rule list leaves (runc's emulator) ----------------------------

class Emulator:
    """The devices cgroup state that an ordered list of allow/deny rules leaves, as runc's
    devices emulator computes it (libcontainer/cgroups/devices/devices_emulator.go).

    It starts as deny-all.  A rule of type 'a' (whatever its numbers and access) switches
    the mode and forgets all exceptions: allow -> default-allow ("blacklist"), deny ->
    default-deny ("whitelist").  Other rules add to the exceptions of the current mode
    (an allow in whitelist mode, a deny in blacklist mode), merging access letters, or
    take access letters away from the exactly matching exception.  Taking letters from a
    device that a wildcard exception (c *:3, c 1:*, c *:*) still grants is refused, as
    runc refuses it: the kernel would silently ignore it."""

    def __init__(self) -> None:
        self.default_allow = False
        self.rules: dict[tuple[str, int, int], frozenset] = {}   # (type, major, minor) -> access

    @property
    def is_blacklist(self) -> bool:
        return self.default_allow

    @property
    def allows_all(self) -> bool:
        return self.default_allow and not self.rules

    def apply(self, allow: bool, dtype: str, major: int, minor: int, access: str) -> None:
        if dtype == "a":
            self.default_allow = allow
            self.rules = {}
            return
        key, perms = (dtype, major, minor), frozenset(access)
        if allow != self.default_allow:
            self.rules[key] = self.rules.get(key, frozenset()) | perms
        else:
            self._remove(key, perms)

    def _remove(self, key: tuple[str, int, int], perms: frozenset) -> None:
        dtype, major, minor = key
        for wider in ((dtype, -1, minor), (dtype, major, -1), (dtype, -1, -1)):
            if wider == key:
                continue
            overlap = self.rules.get(wider, frozenset()) & perms
            if overlap:
                raise ValueError(f"rule {_rule_text(key, perms)} cannot punch a hole in the "
                                 f"wildcard rule {_rule_text(wider, self.rules[wider])}")
        left = self.rules.get(key, frozenset()) - perms
        if left:
            self.rules[key] = left
        else:
            self.rules.pop(key, None)

    def final_rules(self) -> list[tuple[str, int, int, str]]:
        """The exceptions as (type, major, minor, access) sorted like runc (major, minor,
        type; wildcards (-1) first); access in 'rwm' order.  In whitelist mode these are
        what is allowed, in blacklist mode what is denied."""
        keys = sorted(self.rules, key=lambda k: (k[1], k[2], k[0]))
        return [(t, ma, mi, _access(self.rules[(t, ma, mi)])) for t, ma, mi in keys]


def _access(perms) -> str:
    return "".join(ch for ch in "rwm" if ch in perms)


def _rule_text(key: tuple[str, int, int], perms) -> str:
    dtype, major, minor = key
    num = (lambda n: "*" if n == -1 else str(n))
    return f"'{dtype} {num(major)}:{num(minor)} {_access(perms)}'"


def emulate_rules(rules: list | None, with_defaults: bool = True, purpose: str = "") -> Emulator:
    """OCI linux.resources.devices (validated), runc's default rules appended as runc's
    specconv does, run through the emulator.

    The OCI dicts are read directly rather than through normalize(), which
    splits a partial type-'a' rule into b and c rules, while runc's emulator (and the v1
    kernel) treat any type-'a' rule as a switch of mode."""
    emu = Emulator()
    user = list(rules or [])
    extra = DEFAULT_ALLOWED if with_defaults else []
    for index, raw in enumerate(user + list(extra)):
        dtype = raw.get("type") or "a"
        major = -1 if raw.get("major") is None else raw["major"]
        minor = -1 if raw.get("minor") is None else raw["minor"]
        access = raw.get("access", "rwm")
        try:
            emu.apply(bool(raw["allow"]), dtype, major, minor, access)
        except ValueError as err:
            base = "linux.resources.devices"
            where = f"{base}[{index}]" if index < len(user) else base
            what = "" if index < len(user) else " (a default rule runc always adds)"
            for_whom = f" {purpose}" if purpose else ""
            raise ConfigError(f"device rules cannot be expressed{for_whom}{what}: {err}",
                              where=where) from None
    return emu


# --- eBPF program -------------------------------------------------------------
# struct bpf_cgroup_dev_ctx { u32 access_type /* (access << 16) | type */; u32 major; u32 minor; }
BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR = 1, 2
BPF_DEVCG_ACC_MKNOD, BPF_DEVCG_ACC_READ, BPF_DEVCG_ACC_WRITE = 1, 2, 4

# opcodes (linux/bpf_common.h, linux/bpf.h)
_LDXW = 0x61          # BPF_LDX | BPF_MEM | BPF_W
_AND32_K = 0x54       # BPF_ALU | BPF_AND | BPF_K
_RSH32_K = 0x74       # BPF_ALU | BPF_RSH | BPF_K
_MOV32_K = 0xB4       # BPF_ALU | BPF_MOV | BPF_K
_MOV32_X = 0xBC       # BPF_ALU | BPF_MOV | BPF_X
_JNE_K = 0x55         # BPF_JMP | BPF_JNE | BPF_K
_JNE_X = 0x5D         # BPF_JMP | BPF_JNE | BPF_X
_EXIT = 0x95          # BPF_JMP | BPF_EXIT


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _access_mask(access: str) -> int:
    return ((BPF_DEVCG_ACC_READ if "r" in access else 0) |
            (BPF_DEVCG_ACC_WRITE if "w" in access else 0) |
            (BPF_DEVCG_ACC_MKNOD if "m" in access else 0))


def _rule_block(rule: Rule) -> list[bytes]:
    """Instructions testing one rule; each test jumps past the block when it fails.

    Registers set by the prologue: R2 = device type, R3 = access, R4 = major, R5 = minor."""
    tests: list[tuple[int, int, int, int]] = []   # (code, dst, src, imm) of a jump; 'off' filled later
    body: list[bytes] = []
    if rule.type != "a":
        tests.append((_JNE_K, 2, 0, BPF_DEVCG_DEV_BLOCK if rule.type == "b" else BPF_DEVCG_DEV_CHAR))
    if rule.access != "rwm":
        tests.append(("access", 0, 0, _access_mask(rule.access)))
    if rule.major != -1:
        tests.append((_JNE_K, 4, 0, rule.major))
    if rule.minor != -1:
        tests.append((_JNE_K, 5, 0, rule.minor))
    # Count instructions: a plain test is 1, the access test is 3 (mov, and, jne).
    sizes = [3 if t[0] == "access" else 1 for t in tests]
    tail = 2                                         # mov r0, verdict; exit
    remaining = sum(sizes) + tail
    for test, size in zip(tests, sizes):
        remaining -= size
        if test[0] == "access":
            # the requested access must be a subset of the rule's: (R3 & mask) == R3
            body.append(_insn(_MOV32_X, dst=1, src=3))
            body.append(_insn(_AND32_K, dst=1, imm=test[3]))
            body.append(_insn(_JNE_X, dst=1, src=3, off=remaining))
        else:
            body.append(_insn(test[0], dst=test[1], imm=test[3], off=remaining))
    body.append(_insn(_MOV32_K, dst=0, imm=1 if rule.allow else 0))
    body.append(_insn(_EXIT))
    return body


def bpf_program(rules: list[Rule]) -> bytes:
    """A device program: the last matching rule decides (as with v1 writes); no match denies."""
    insns = [
        _insn(_LDXW, dst=2, src=1, off=0), _insn(_AND32_K, dst=2, imm=0xFFFF),  # R2 = type
        _insn(_LDXW, dst=3, src=1, off=0), _insn(_RSH32_K, dst=3, imm=16),      # R3 = access
        _insn(_LDXW, dst=4, src=1, off=4),                                      # R4 = major
        _insn(_LDXW, dst=5, src=1, off=8),                                      # R5 = minor
    ]
    for rule in reversed(rules):
        if rule.matches_all:
            # unconditional: nothing before it can matter, and the verifier rejects dead code
            insns += [_insn(_MOV32_K, dst=0, imm=1 if rule.allow else 0), _insn(_EXIT)]
            return b"".join(insns)
        insns.extend(_rule_block(rule))
    insns.append(_insn(_MOV32_K, dst=0, imm=0))
    insns.append(_insn(_EXIT))
    return b"".join(insns)


def emulate(rules: list[Rule], dtype: str, major: int, minor: int, access: str) -> bool:
    """What the program (and v1 semantics) decide for one request; used by unit tests."""
    verdict = False
    for rule in rules:
        if rule.type not in ("a", dtype):
            continue
        if rule.major not in (-1, major) or rule.minor not in (-1, minor):
            continue
        if set(access) <= set(rule.access):
            verdict = rule.allow
    return verdict
