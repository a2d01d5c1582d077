"""Process security for containers: what the program may do once it runs.

- ``caps``: capability names/numbers, the five sets of ``process.capabilities`` as
  masks, and the kernel's execve transformation (what the program ends up with).
- ``process``: ``prepare_process`` (rlimits, oomScoreAdj, ioPriority, scheduler,
  personality, umask, LSM labels) and ``finalize_process`` (groups/uid/gid, bounding,
  capset, ambient, no_new_privs, seccomp), called by the container init.
- ``seccomp``: a pure compiler from OCI ``linux.seccomp`` to classic BPF, plus
  ``install_filter``; the syscall numbers come from :mod:`hutch.syscall.numbers`.
"""
