"""Capability names and numbers (linux/capability.h), and mask helpers."""

from __future__ import annotations

from hutch.record import dataclass

from hutch.errors import ConfigError

CAPABILITIES = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}
CAP_NAMES = {v: k for k, v in CAPABILITIES.items()}

# docker/podman's default set for containers.
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]


_last_cap: int | None = None


def last_cap() -> int:
    """Highest capability number the running kernel knows, asked of the kernel itself
    (prctl PR_CAPBSET_READ), never read from /proc: inside a container /proc may be
    the container's to fake, and a low number here would leave capabilities undropped."""
    global _last_cap
    if _last_cap is None:
        from hutch import syscall as hsys
        from hutch.errors import SysCallError

        def known(cap: int) -> bool:
            try:
                hsys.prctl(hsys.PR_CAPBSET_READ, cap)
                return True
            except SysCallError:
                return False
        cap = max(CAPABILITIES.values())
        while known(cap + 1):
            cap += 1
        while cap > 0 and not known(cap):
            cap -= 1
        _last_cap = cap
    return _last_cap


def normalize(name: str) -> str:
    name = name.strip().upper()
    return name if name.startswith("CAP_") else "CAP_" + name


def to_mask(names, where: str = "capabilities") -> int:
    """Mask of capability names; an unknown name is a ConfigError naming `where`."""
    mask = 0
    for i, name in enumerate(names or ()):
        if not isinstance(name, str):
            raise ConfigError(f"capability must be a string, not {name!r}", where=f"{where}[{i}]")
        number = CAPABILITIES.get(normalize(name))
        if number is None:
            raise ConfigError(f"unknown capability {name!r}", where=f"{where}[{i}]")
        mask |= 1 << number
    return mask


def to_names(mask: int) -> list[str]:
    return [CAP_NAMES.get(i, f"CAP_{i}") for i in range(64) if mask >> i & 1]


def all_caps_mask() -> int:
    return (1 << (last_cap() + 1)) - 1


# --- the five sets of process.capabilities ---------------------------------------

CAP_SET_NAMES = ("bounding", "effective", "permitted", "inheritable", "ambient")


@dataclass(frozen=True)
class CapSets:
    """The five capability sets as 64-bit masks (bit N = capability number N)."""
    bounding: int = 0
    effective: int = 0
    permitted: int = 0
    inheritable: int = 0
    ambient: int = 0

    def masked(self, mask: int) -> "CapSets":
        return CapSets(*(getattr(self, n) & mask for n in CAP_SET_NAMES))

    def as_status(self) -> dict[str, int]:
        """The same sets under the names /proc/PID/status uses."""
        return {"CapBnd": self.bounding, "CapEff": self.effective, "CapPrm": self.permitted,
                "CapInh": self.inheritable, "CapAmb": self.ambient}


def from_process(process: dict | None, where: str = "process.capabilities") -> CapSets:
    """Masks of ``process.capabilities``; a missing object or set is empty (as in runc)."""
    caps = (process or {}).get("capabilities") or {}
    if not isinstance(caps, dict):
        raise ConfigError("must be an object with bounding/effective/permitted/inheritable/"
                          "ambient lists", where=where)
    for key in caps:
        if key not in CAP_SET_NAMES:
            raise ConfigError(f"unknown capability set {key!r}", where=f"{where}.{key}")
    masks = {}
    for name in CAP_SET_NAMES:
        names = caps.get(name) or []
        if not isinstance(names, list):
            raise ConfigError("must be a list of capability names", where=f"{where}.{name}")
        masks[name] = to_mask(names, f"{where}.{name}")
    return CapSets(**masks)


def check_consistent(sets: CapSets, where: str = "process.capabilities") -> None:
    """Refuse what capset(2) would refuse, naming the set and the capability."""
    extra = sets.effective & ~sets.permitted
    if extra:
        raise ConfigError(f"{', '.join(to_names(extra))} in effective but not in permitted "
                          "(the kernel requires effective to be a subset of permitted)",
                          where=f"{where}.effective")
    extra = sets.inheritable & ~sets.bounding
    if extra:
        raise ConfigError(f"{', '.join(to_names(extra))} in inheritable but not in bounding "
                          "(the kernel refuses an inheritable capability outside the bounding set)",
                          where=f"{where}.inheritable")


def after_exec(sets: CapSets, uid: int, no_new_privs: bool = False) -> CapSets:
    """The sets the program has after execve(2) of a file without file capabilities
    or set-id bits, given the sets the runtime left (capabilities(7) transformation).

    uid 0 is treated as having all file capabilities: the permitted set becomes
    inheritable | bounding (capped at the old permitted set under no_new_privs, which
    forbids gaining privileges), and effective = permitted.  Any other uid keeps only
    the ambient set, in permitted and effective: a non-root user's effective
    capabilities are dropped unless they are ambient (what runc's containers show).
    """
    ambient = sets.ambient
    if uid == 0:
        permitted = sets.inheritable | sets.bounding
        if no_new_privs:
            permitted &= sets.permitted
        permitted |= ambient
        effective = permitted
    else:
        permitted = effective = ambient
    return CapSets(sets.bounding, effective, permitted, sets.inheritable, ambient)


def read_status_caps(pid: int | str = "self") -> CapSets:
    """The five sets of a process from /proc/PID/status."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"):
                values[key] = int(value.strip(), 16)
    return CapSets(values["CapBnd"], values["CapEff"], values["CapPrm"], values["CapInh"],
                   values["CapAmb"])


def runtime_permitted_mask() -> int:
    """The capabilities this process can hand to a container: its own permitted set.

    What `--privileged` should ask for: on a host whose root lacks a capability
    (CAP_SYS_RESOURCE on some VMs) asking for every capability the kernel knows makes
    capset fail, in runc as in hutch."""
    from hutch import syscall as hsys

    return hsys.capget()[1]
