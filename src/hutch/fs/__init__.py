"""The container's filesystem: rootfs, mounts, /dev, masked and read-only paths.

Submodules: ``options`` (mount option words -> flags, pure), ``resolve`` (paths
resolved inside a root with openat2), ``mounts`` (one spec mount entry), ``devices``
(/dev nodes, symlinks, console), ``rootfs`` (the whole sequence: setup_rootfs,
finish_rootfs).  Nothing is imported here so ``import hutch.fs`` stays free.
"""
