"""set_mempolicy(2): the NUMA memory policy of the calling thread (kept across fork and execve)."""

from __future__ import annotations

from hutch.syscall import ffi

from hutch.syscall.libc import syscall

# Bits in a nodemask word (unsigned long).
WORD_BITS = ffi.sizeof(ffi.c_ulong) * 8


def set_mempolicy(mode: int, nodes: frozenset[int] | set[int] = frozenset()) -> None:
    """Set the thread's policy: mode (a MPOL_* mode or'ed with MPOL_F_* flags) over nodes."""
    if not nodes:
        syscall("set_mempolicy", ffi.c_int(mode), None, ffi.c_ulong(0),
                detail=f"mode {mode:#x}")
        return
    words = max(nodes) // WORD_BITS + 1
    mask = (ffi.c_ulong * words)()
    for node in nodes:
        mask[node // WORD_BITS] |= 1 << (node % WORD_BITS)
    # maxnode counts bits; the kernel reads maxnode - 1 of them (a historical off-by-one).
    syscall("set_mempolicy", ffi.c_int(mode), mask, ffi.c_ulong(words * WORD_BITS + 1),
            detail=f"mode {mode:#x} nodes {sorted(nodes)}")
