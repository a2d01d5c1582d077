"""/etc/hosts and /etc/resolv.conf for networked containers.

Each container gets both files in its state directory, bind-mounted read-only over
its /etc/hosts and /etc/resolv.conf.  Names stay current without a DNS daemon: when
a container joins or leaves a network, hutch rewrites the hosts file of every member
in place (same inode, so the bind mounts show the new text at once), and programs
read /etc/hosts on every lookup (glibc and musl have no cache of it).  A container
started later is therefore known by name to those started before it.
"""

from __future__ import annotations

import os

from hutch.syscall.proc import read_text

HOSTS = "hosts"
RESOLV = "resolv.conf"
_HEADER = ("127.0.0.1\tlocalhost\n"
           "::1\tlocalhost ip6-localhost ip6-loopback\n")


def render(own: list[tuple[str, list[str]]], peers: list[tuple[str, list[str]]]) -> str:
    """own and peers: (address, names) pairs; own first, then the peers by address."""
    lines = [_HEADER]
    seen = set()
    for address, names in own + sorted(peers, key=_address_key):
        names = [n for n in dict.fromkeys(names) if _is_host_name(n)]
        if address in seen or not names:
            continue
        seen.add(address)
        lines.append(f"{address}\t{' '.join(names)}\n")
    return "".join(lines)


_HOST_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")


def _is_host_name(name: str) -> bool:
    """Only plain names reach a hosts file: one container's name must not add lines to
    its peers' files (a hostname with a newline and "10.0.0.1 example.com")."""
    return 0 < len(name) <= 253 and set(name) <= _HOST_NAME_CHARS


def _address_key(pair):
    address = pair[0]
    if ":" in address:
        return (6, address)
    return (4, tuple(int(p) for p in address.split(".")))


def write_in_place(path: str, text: str) -> None:
    """Rewrite path keeping its inode (a bind mount of it sees the change).  A reader
    racing this sees the old or the new text for all but a few bytes of the tail."""
    data = text.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return                          # the container is being deleted
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def create_files(directory: str) -> tuple[str, str]:
    """The two files, made before the container's mounts (their text comes later)."""
    hosts, resolv = os.path.join(directory, HOSTS), os.path.join(directory, RESOLV)
    for path, text in ((hosts, _HEADER), (resolv, resolv_conf())):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    return hosts, resolv


def resolv_conf(source: str = "/etc/resolv.conf") -> str:
    """The host's resolver settings without loopback nameservers (unreachable from a
    container's own network namespace); systemd-resolved's upstream list if the host
    only has its stub."""
    text = read_text(source)
    kept, dropped = _without_loopback(text)
    if dropped and not any(line.startswith("nameserver") for line in kept):
        upstream = read_text("/run/systemd/resolve/resolv.conf")
        if upstream:
            kept, _ = _without_loopback(upstream)
    return "".join(kept)


def _without_loopback(text: str) -> tuple[list[str], bool]:
    kept, dropped = [], False
    for line in text.splitlines(keepends=True):
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1 and (
                words[1].startswith("127.") or words[1] == "::1"):
            dropped = True
            continue
        kept.append(line if line.endswith("\n") else line + "\n")
    return kept, dropped


