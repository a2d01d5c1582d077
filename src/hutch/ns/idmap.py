"""User-namespace id maps: parse, validate and write /proc/PID/{uid,gid}_map.

Pure functions except `write_maps`, which the parent calls after the child has
unshared its user namespace (a process cannot usefully map itself as root).
"""

from __future__ import annotations

import os

from hutch.record import dataclass

from hutch.errors import ConfigError

MAX_ID = 2**32 - 1


@dataclass(frozen=True)
class IdMapping:
    container_id: int
    host_id: int
    size: int

    def line(self) -> str:
        return f"{self.container_id} {self.host_id} {self.size}"


def parse_mapping(text: str, where: str) -> IdMapping:
    """Parse 'CONTAINER:HOST:SIZE' (as --uidmap takes it)."""
    parts = text.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ConfigError(f"invalid id map {text!r}: expected CONTAINER:HOST:SIZE", where=where)
    return check_mapping(IdMapping(*map(int, parts)), where)


def from_oci(entries, where: str) -> list[IdMapping]:
    """Mappings from config.json's linux.uidMappings / gidMappings."""
    out = []
    for i, entry in enumerate(entries or ()):
        try:
            mapping = IdMapping(int(entry["containerID"]), int(entry["hostID"]), int(entry["size"]))
        except (KeyError, TypeError, ValueError):
            raise ConfigError("needs integer containerID, hostID and size", where=f"{where}[{i}]") from None
        out.append(check_mapping(mapping, f"{where}[{i}]"))
    check_no_overlap(out, where)
    return out


def to_oci(mappings: list[IdMapping]) -> list[dict]:
    return [{"containerID": m.container_id, "hostID": m.host_id, "size": m.size} for m in mappings]


def check_mapping(m: IdMapping, where: str) -> IdMapping:
    if m.size < 1:
        raise ConfigError("id map size must be at least 1", where=where)
    # The kernel rejects a range whose end wraps its u32 (first + size must stay below 2^32).
    if m.container_id + m.size > MAX_ID or m.host_id + m.size > MAX_ID:
        raise ConfigError("id map range exceeds 2^32-1", where=where)
    return m


def check_no_overlap(mappings: list[IdMapping], where: str) -> None:
    """The kernel rejects overlapping ranges on either side; say so before it does."""
    for side in ("container_id", "host_id"):
        ranges = sorted((getattr(m, side), getattr(m, side) + m.size) for m in mappings)
        for (_, end), (start, _) in zip(ranges, ranges[1:]):
            if start < end:
                raise ConfigError(f"id map ranges overlap on the {side.replace('_', ' ')} side", where=where)
    if len(mappings) > 340:
        raise ConfigError("at most 340 id map lines are allowed", where=where)


def host_id(mappings: list[IdMapping], container_id: int) -> int | None:
    """The host id that container_id maps to, or None if unmapped."""
    for m in mappings:
        if m.container_id <= container_id < m.container_id + m.size:
            return m.host_id + container_id - m.container_id
    return None


def default_mapping() -> IdMapping:
    """Container root -> an unprivileged host range (podman's/user-namespace convention)."""
    return IdMapping(0, 100000, 65536)


def write_maps(pid: int, uid_maps: list[IdMapping], gid_maps: list[IdMapping]) -> None:
    """Write the maps of pid's user namespace (gid_map needs no setgroups change as root)."""
    from hutch.errors import SysCallError
    if os.geteuid() != 0 and gid_maps:
        # Unprivileged writers must give up setgroups(2) in the namespace first.
        try:
            with open(f"/proc/{pid}/setgroups", "w") as f:
                f.write("deny")
        except OSError as exc:
            raise SysCallError("write setgroups", exc.errno or 0, "deny") from None
    for name, maps in (("uid_map", uid_maps), ("gid_map", gid_maps)):
        if not maps:
            continue
        path = f"/proc/{pid}/{name}"
        try:
            with open(path, "w") as f:
                f.write("\n".join(m.line() for m in maps) + "\n")
        except OSError as exc:
            raise SysCallError(f"write {name}", exc.errno or 0, " ".join(m.line() for m in maps)) from None
