"""Compile an OCI ``linux.seccomp`` object into a classic BPF program.

The result has the layout libseccomp plus runc's -ENOSYS patch produce::

    ld  arch                     ; seccomp_data.arch
    jeq AUDIT_ARCH_X,  -> section X      (one per architecture in the profile)
    ret <bad arch>                       ; KILL_PROCESS
  section X:
    ld  nr
    [x86_64: x32 syscalls (bit 30) go to the x32 section, or are a bad arch]
    [nr > highest syscall the profile names -> ERRNO(ENOSYS)]   (runc's stub, so
        a libc probing a syscall newer than the profile falls back, e.g. clone3)
    [binary search on nr: jge PIVOT, 0, 1 ; ja upper_half ... down to groups of 16]
    jeq NR, 0, 1 ; ret ACTION            (a syscall with an unconditional rule)
    jeq NR, 0, 1 ; ja  block_NR          (a syscall with argument rules)
    ret <default action>                 (end of each group)
  block_NR:  rule 1 conditions ; ret ACTION ; rule 2 ... ; ret <default action>

Rule semantics follow runc + libseccomp: a rule whose action equals the default is
dropped; an unconditional rule for a syscall wins over its conditional ones; the
conditions of one rule are ANDed, except that a rule naming the same argument
twice is split into one rule per condition (ORed), as runc does; argument rules of
a syscall are tried in profile order.  Syscall names unknown on an architecture are
skipped, like libseccomp.  64-bit arguments are compared on both 32-bit halves on
64-bit ABIs; on i386 only the low half exists.

Everything here is pure (no syscalls), so it is unit tested without root;
:func:`install_filter` is the only part that touches the kernel.
"""

from __future__ import annotations

import errno
import os
import struct
from hutch.record import dataclass, field

from hutch.errors import ConfigError
# Imported here, not lazily: the compiler runs in the container's init after
# pivot_root, where the host's Python files may be out of reach.
from hutch.syscall import numbers

# --- kernel constants (linux/seccomp.h, linux/audit.h, linux/filter.h) -------------

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_KILL_THREAD = 0x00000000
SECCOMP_RET_TRAP = 0x00030000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_TRACE = 0x7FF00000
SECCOMP_RET_LOG = 0x7FFC0000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_DATA = 0x0000FFFF

SECCOMP_FILTER_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
}

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_AARCH64 = 0xC00000B7
AUDIT_ARCH_ARM = 0x40000028
X32_SYSCALL_BIT = 0x40000000

# classic BPF opcodes
BPF_LD_W_ABS = 0x20
BPF_ALU_AND_K = 0x54
BPF_JMP_JA = 0x05
BPF_JEQ_K = 0x15
BPF_JGT_K = 0x25
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06
BPF_MAXINSNS = 4096

# struct seccomp_data offsets
OFF_NR = 0
OFF_ARCH = 4
OFF_ARGS = 16

# The action when the calling ABI is not in the profile.  libseccomp's default is
# KILL (thread); killing the whole process avoids a half-dead multithreaded program.
BAD_ARCH_ACTION = SECCOMP_RET_KILL_PROCESS

_ACTIONS = {
    "SCMP_ACT_KILL": SECCOMP_RET_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": SECCOMP_RET_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": SECCOMP_RET_KILL_PROCESS,
    "SCMP_ACT_TRAP": SECCOMP_RET_TRAP,
    "SCMP_ACT_ERRNO": SECCOMP_RET_ERRNO,
    "SCMP_ACT_TRACE": SECCOMP_RET_TRACE,
    "SCMP_ACT_LOG": SECCOMP_RET_LOG,
    "SCMP_ACT_ALLOW": SECCOMP_RET_ALLOW,
}
_PERMISSIVE = (SECCOMP_RET_ALLOW, SECCOMP_RET_LOG)
_OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
        "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")
U64 = (1 << 64) - 1


@dataclass(frozen=True)
class Abi:
    """One syscall ABI a filter section handles."""
    name: str          # SCMP_ARCH_*
    audit_arch: int    # what seccomp_data.arch holds for it
    table: str         # its syscall numbers: hutch.syscall.numbers.table(table)
    bits: int          # argument width


ABIS = {
    "SCMP_ARCH_X86_64": Abi("SCMP_ARCH_X86_64", AUDIT_ARCH_X86_64, "X86_64", 64),
    "SCMP_ARCH_X32": Abi("SCMP_ARCH_X32", AUDIT_ARCH_X86_64, "X32", 64),
    "SCMP_ARCH_X86": Abi("SCMP_ARCH_X86", AUDIT_ARCH_I386, "I386", 32),
    "SCMP_ARCH_AARCH64": Abi("SCMP_ARCH_AARCH64", AUDIT_ARCH_AARCH64, "AARCH64", 64),
}
# ABIs runc accepts but hutch has no syscall table for: accepted and left out of the
# filter (their syscalls get the bad-arch action), so the usual aarch64 profile
# ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"] still loads.
UNSUPPORTED_ABIS = {
    "SCMP_ARCH_ARM", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
}
# Which ABIs can run on the machine: the native one always goes in the filter
# (libseccomp adds it implicitly), the others only when the profile lists them.
NATIVE_ABI = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}
COMPAT_ABIS = {
    "SCMP_ARCH_X86_64": ("SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "SCMP_ARCH_AARCH64": (),
}


@dataclass
class Cond:
    index: int
    op: str
    value: int
    value_two: int = 0


@dataclass
class Rule:
    action: int
    conds: list[Cond] = field(default_factory=list)


@dataclass
class Profile:
    """A validated profile: what the BPF generator works from."""
    default_action: int
    abis: list[Abi]
    rules: list[tuple[list[str], Rule]]   # (syscall names, rule) in profile order
    flags: int = 0


# --- parsing and validation ---------------------------------------------------------

def _int(value, where: str, low: int = 0, high: int = U64) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"must be an integer in [{low}, {high}], not {value!r}", where=where)
    return value


def parse_action(name, errno_ret, where: str, default_errno: int = errno.EPERM) -> int:
    """SECCOMP_RET_* value (with its data) for an OCI action name."""
    if name == "SCMP_ACT_NOTIFY":
        raise ConfigError("SCMP_ACT_NOTIFY (seccomp user notification) is not supported by hutch",
                          where=where)
    if name not in _ACTIONS:
        raise ConfigError(f"unknown seccomp action {name!r}", where=where)
    action = _ACTIONS[name]
    if action in (SECCOMP_RET_ERRNO, SECCOMP_RET_TRACE):
        data = default_errno if errno_ret is None else errno_ret
        # The kernel keeps 16 bits of data; errno values are far below that.
        action |= _int(data, where.rsplit(".", 1)[0] + ".errnoRet", 0, SECCOMP_RET_DATA)
    return action


def _parse_cond(arg, where: str) -> Cond:
    if not isinstance(arg, dict):
        raise ConfigError("must be an object with index, value and op", where=where)
    index = _int(arg.get("index"), f"{where}.index", 0, 5)
    op = arg.get("op")
    if op not in _OPS:
        raise ConfigError(f"unknown seccomp comparison {op!r} (expected one of {', '.join(_OPS)})",
                          where=f"{where}.op")
    value = _int(arg.get("value", 0), f"{where}.value")
    value_two = _int(arg.get("valueTwo", 0), f"{where}.valueTwo")
    return Cond(index, op, value, value_two)


def _parse_abis(arches, where: str) -> list[Abi]:
    native = NATIVE_ABI.get(os.uname().machine)
    if native is None:
        raise ConfigError(f"seccomp is not supported on {os.uname().machine}", where=where)
    names = [native]
    for i, arch in enumerate(arches or ()):
        if arch in ABIS:
            if arch != native and arch not in COMPAT_ABIS[native]:
                raise ConfigError(f"architecture {arch} cannot run on this {os.uname().machine} "
                                  "machine", where=f"{where}[{i}]")
            if arch not in names:
                names.append(arch)
        elif arch not in UNSUPPORTED_ABIS:
            raise ConfigError(f"unknown seccomp architecture {arch!r}", where=f"{where}[{i}]")
    return [ABIS[n] for n in names]


def parse_flags(flags, where: str = "linux.seccomp.flags") -> int:
    """seccomp(2) flag bits for the OCI ``flags`` list."""
    value = 0
    for i, name in enumerate(flags or ()):
        if name not in SECCOMP_FILTER_FLAGS:
            raise ConfigError(f"unknown or unsupported seccomp flag {name!r}", where=f"{where}[{i}]")
        value |= SECCOMP_FILTER_FLAGS[name]
    return value


def parse_profile(seccomp: dict, where: str = "linux.seccomp") -> Profile:
    """Validate the OCI object; every error names its JSON path."""
    if not isinstance(seccomp, dict):
        raise ConfigError("must be an object", where=where)
    default_errno = seccomp.get("defaultErrnoRet")
    if default_errno is not None:
        default_errno = _int(default_errno, f"{where}.defaultErrnoRet", 0, SECCOMP_RET_DATA)
    default = parse_action(seccomp.get("defaultAction"), default_errno, f"{where}.defaultAction")
    if seccomp.get("listenerPath"):
        raise ConfigError("seccomp user notification is not supported by hutch",
                          where=f"{where}.listenerPath")
    abis = _parse_abis(seccomp.get("architectures"), f"{where}.architectures")
    flags = parse_flags(seccomp.get("flags"), f"{where}.flags")
    rules = []
    for i, call in enumerate(seccomp.get("syscalls") or ()):
        here = f"{where}.syscalls[{i}]"
        if not isinstance(call, dict):
            raise ConfigError("must be an object", where=here)
        names = call.get("names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ConfigError("names must be a non-empty list of syscall names", where=f"{here}.names")
        action = parse_action(call.get("action"), call.get("errnoRet"), f"{here}.action")
        conds = [_parse_cond(a, f"{here}.args[{j}]") for j, a in enumerate(call.get("args") or ())]
        if action == default:
            continue  # runc/libseccomp: a rule with the default action changes nothing
        indexes = [c.index for c in conds]
        if len(set(indexes)) < len(indexes):
            # runc: the same argument twice means "any of these", one rule each.
            rules.extend((names, Rule(action, [c])) for c in conds)
        else:
            rules.append((names, Rule(action, conds)))
    return Profile(default, abis, rules, flags)


# --- code generation ---------------------------------------------------------------

class Assembler:
    """Collect instructions whose jump targets may be labels; resolve them at the end."""

    def __init__(self) -> None:
        self.code: list[list] = []     # [op, jt, jf, k]; jt/jf/k may be label names
        self.labels: dict[str, int] = {}
        self._count = 0

    def new_label(self, hint: str = "L") -> str:
        self._count += 1
        return f"{hint}{self._count}"

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def emit(self, op: int, k: int | str = 0, jt: int | str = 0, jf: int | str = 0) -> None:
        self.code.append([op, jt, jf, k])

    def load(self, offset: int) -> None:
        self.emit(BPF_LD_W_ABS, offset)

    def ret(self, action: int) -> None:
        self.emit(BPF_RET_K, action)

    def jump(self, target: str) -> None:
        self.emit(BPF_JMP_JA, target)

    def assemble(self) -> bytes:
        out = bytearray()
        for pc, (op, jt, jf, k) in enumerate(self.code):
            if op == BPF_JMP_JA:
                k = self._offset(pc, k, 0xFFFFFFFF)
            elif op & 0x07 == 0x05:  # conditional jump
                jt, jf = self._offset(pc, jt, 255), self._offset(pc, jf, 255)
            out += struct.pack("=HBBI", op, jt, jf, k & 0xFFFFFFFF)
        return bytes(out)

    def _offset(self, pc: int, target, limit: int) -> int:
        if isinstance(target, int):
            return target
        offset = self.labels[target] - pc - 1
        if not 0 <= offset <= limit:
            raise AssertionError(f"BPF jump to {target} out of range ({offset})")
        return offset


def _emit_cond(asm: Assembler, cond: Cond, bits: int, fail: str) -> None:
    """Fall through when the argument matches, jump to `fail` when it does not."""
    low = OFF_ARGS + 8 * cond.index          # little endian: low word first
    high = low + 4
    value_lo, value_hi = cond.value & 0xFFFFFFFF, cond.value >> 32
    two_lo, two_hi = cond.value_two & 0xFFFFFFFF, cond.value_two >> 32
    ok = asm.new_label("ok")
    op = cond.op
    if bits == 32:
        # Only the low half exists; compare it alone.
        asm.load(low)
        if op == "SCMP_CMP_MASKED_EQ":
            asm.emit(BPF_ALU_AND_K, value_lo)
            asm.emit(BPF_JEQ_K, two_lo, ok, fail)
        else:
            jop, jt, jf = _simple_jump(op, ok, fail)
            asm.emit(jop, value_lo, jt, jf)
        asm.label(ok)
        return
    if op == "SCMP_CMP_EQ":
        asm.load(high); asm.emit(BPF_JEQ_K, value_hi, 0, fail)
        asm.load(low); asm.emit(BPF_JEQ_K, value_lo, ok, fail)
    elif op == "SCMP_CMP_NE":
        asm.load(high); asm.emit(BPF_JEQ_K, value_hi, 0, ok)
        asm.load(low); asm.emit(BPF_JEQ_K, value_lo, fail, ok)
    elif op == "SCMP_CMP_MASKED_EQ":
        asm.load(high); asm.emit(BPF_ALU_AND_K, value_hi); asm.emit(BPF_JEQ_K, two_hi, 0, fail)
        asm.load(low); asm.emit(BPF_ALU_AND_K, value_lo); asm.emit(BPF_JEQ_K, two_lo, ok, fail)
    else:
        # Ordered comparisons: the high words decide unless they are equal.
        greater_wins = op in ("SCMP_CMP_GT", "SCMP_CMP_GE")
        on_hi_greater, on_hi_less = (ok, fail) if greater_wins else (fail, ok)
        asm.load(high)
        asm.emit(BPF_JGT_K, value_hi, on_hi_greater, 0)
        asm.emit(BPF_JEQ_K, value_hi, 0, on_hi_less)
        asm.load(low)
        jop, jt, jf = _simple_jump(op, ok, fail)
        asm.emit(jop, value_lo, jt, jf)
    asm.label(ok)


def _simple_jump(op: str, ok: str, fail: str):
    """Unsigned 32-bit comparison as (opcode, jt, jf)."""
    return {
        "SCMP_CMP_EQ": (BPF_JEQ_K, ok, fail),
        "SCMP_CMP_NE": (BPF_JEQ_K, fail, ok),
        "SCMP_CMP_GT": (BPF_JGT_K, ok, fail),
        "SCMP_CMP_GE": (BPF_JGE_K, ok, fail),
        "SCMP_CMP_LT": (BPF_JGE_K, fail, ok),
        "SCMP_CMP_LE": (BPF_JGT_K, fail, ok),
    }[op]


@dataclass
class _Entry:
    """What one syscall number does in one ABI."""
    unconditional: int | None = None
    rules: list[Rule] = field(default_factory=list)


def _entries(profile: Profile, abi: Abi) -> dict[int, _Entry]:
    table = numbers.table(abi.table)
    entries: dict[int, _Entry] = {}
    for names, rule in profile.rules:
        for name in names:
            nr = table.get(name)
            if nr is None:
                continue  # unknown on this ABI: skipped, like libseccomp
            entry = entries.setdefault(nr, _Entry())
            if rule.conds:
                entry.rules.append(rule)
            elif entry.unconditional is None:
                entry.unconditional = rule.action
    return entries


def _enosys_stub_wanted(profile: Profile) -> bool:
    """runc's patch: syscalls newer than the profile get ENOSYS, not the default."""
    return (profile.default_action & 0xFFFF0000) not in _PERMISSIVE and \
        profile.default_action != SECCOMP_RET_ERRNO | errno.ENOSYS


def _emit_abi(asm: Assembler, profile: Profile, abi: Abi, entries: dict[int, _Entry],
              x32_label: str | None, x32_is_bad: bool) -> None:
    asm.load(OFF_NR)
    if x32_label:
        asm.emit(BPF_JSET_K, X32_SYSCALL_BIT, 0, 1)
        asm.jump(x32_label)
    elif x32_is_bad:
        asm.emit(BPF_JSET_K, X32_SYSCALL_BIT, 0, 1)
        asm.ret(BAD_ARCH_ACTION)
    if entries and _enosys_stub_wanted(profile):
        asm.emit(BPF_JGT_K, max(entries), 0, 1)
        asm.ret(SECCOMP_RET_ERRNO | errno.ENOSYS)
    blocks: list[tuple[str, list[Rule]]] = []
    _emit_tree(asm, sorted(entries), entries, profile.default_action, blocks)
    for block, rules in blocks:
        asm.label(block)
        for rule in rules:
            next_rule = asm.new_label("next")
            for cond in rule.conds:
                _emit_cond(asm, cond, abi.bits, next_rule)
            asm.ret(rule.action)
            asm.label(next_rule)
        asm.ret(profile.default_action)


# A syscall number is found by binary search down to groups of this many, then a
# linear scan: a docker-style profile (~370 syscalls) costs ~25 instructions per
# syscall at run time instead of several hundred.
LEAF_SIZE = 16


def _emit_tree(asm: Assembler, nrs: list[int], entries: dict[int, _Entry], default: int,
               blocks: list) -> None:
    if len(nrs) > LEAF_SIZE:
        mid = len(nrs) // 2
        upper = asm.new_label("ge")
        asm.emit(BPF_JGE_K, nrs[mid], 0, 1)
        asm.jump(upper)   # a long jump: the lower half may be longer than 255
        _emit_tree(asm, nrs[:mid], entries, default, blocks)
        asm.label(upper)
        _emit_tree(asm, nrs[mid:], entries, default, blocks)
        return
    for nr in nrs:
        entry = entries[nr]
        asm.emit(BPF_JEQ_K, nr, 0, 1)
        if entry.unconditional is not None:
            asm.ret(entry.unconditional)
        else:
            block = asm.new_label(f"nr{nr}_")
            asm.jump(block)
            blocks.append((block, entry.rules))
    asm.ret(default)


def generate(profile: Profile) -> bytes:
    """BPF program (struct sock_filter[]) for a parsed profile."""
    asm = Assembler()
    by_name = {abi.name: abi for abi in profile.abis}
    sections = [abi for abi in profile.abis if abi.name != "SCMP_ARCH_X32"]
    labels = {abi.name: asm.new_label("arch") for abi in profile.abis}
    asm.load(OFF_ARCH)
    for abi in sections:
        asm.emit(BPF_JEQ_K, abi.audit_arch, 0, 1)
        asm.jump(labels[abi.name])
    asm.ret(BAD_ARCH_ACTION)
    for abi in sections:
        asm.label(labels[abi.name])
        is_x86_64 = abi.name == "SCMP_ARCH_X86_64"
        x32 = by_name.get("SCMP_ARCH_X32") if is_x86_64 else None
        _emit_abi(asm, profile, abi, _entries(profile, abi),
                  labels[x32.name] if x32 else None, is_x86_64 and x32 is None)
        if x32:
            asm.label(labels[x32.name])
            _emit_abi(asm, profile, x32, _entries(profile, x32), None, False)
    if len(asm.code) > BPF_MAXINSNS:
        raise ConfigError(f"the seccomp profile compiles to {len(asm.code)} BPF instructions, "
                          f"more than the kernel's limit of {BPF_MAXINSNS}", where="linux.seccomp")
    return asm.assemble()


def compile_filter(seccomp: dict, where: str = "linux.seccomp") -> bytes:
    """Compile an OCI ``linux.seccomp`` object into a BPF program (bytes of sock_filter)."""
    return generate(parse_profile(seccomp, where))


def filter_flags(seccomp: dict) -> int:
    """seccomp(2) flags the profile asks for."""
    return parse_flags(seccomp.get("flags"))


def install_filter(prog: bytes, flags: int = 0) -> None:
    """Load `prog` for the calling thread (needs no_new_privs or CAP_SYS_ADMIN)."""
    from hutch.syscall.seccomp import seccomp_set_mode_filter

    seccomp_set_mode_filter(prog, flags)
