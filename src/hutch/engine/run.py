"""`hutch run`: build the spec from RunOptions, create, stay attached, wait, delete;
and collection of what earlier runs killed half-way left behind."""

from __future__ import annotations

import os

from hutch.oci import container
from hutch.oci.attach import run_attached


def run_container(options, root: str, systemd_cgroup: bool = False) -> int:
    """What `hutch run` does: build the spec from RunOptions, stay attached to our
    stdio (stdin only with -i), a pty with -t, and clean up at exit."""
    from hutch.engine.runspec import build_spec, check_rootfs
    check_rootfs(options)
    join_container_network(options, root)
    container_id = options.container_id()
    spec = build_spec(options, container_id)
    collect_stale_runs(root)
    if not options.interactive and not options.tty:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    # Without limits no cgroup is made (faster), unless systemd is to hold the container.
    create = container.CreateOptions(use_init=options.init, systemd_cgroup=systemd_cgroup,
                                     cgroup=bool(options.resources) or systemd_cgroup)
    return run_attached(root, container_id, os.getcwd(), create, spec=spec,
                        interactive=options.interactive)


def join_container_network(options, root: str) -> None:
    """--network container:ID: join that container's network namespace (by its pid's
    nsfs file, checked to be that container's process)."""
    if not options.net.startswith("container:"):
        return
    from hutch.errors import ConfigError, HutchError
    from hutch.oci import state as st
    other = options.net.partition(":")[2]
    try:
        state = st.load(root, other)
    except HutchError as err:
        raise ConfigError(f"--network container:{other}: {err.message}", where="--network") from None
    if state.live_status() not in ("created", "running", "paused") or not state.pid:
        raise ConfigError(f"--network container:{other}: the container is not running", where="--network")
    options.join_ns = [*options.join_ns, f"network:/proc/{state.pid}/ns/net"]


def collect_stale_runs(root: str) -> None:
    """Delete what earlier `hutch run`s could not (they were SIGKILLed): their process is
    gone, their state and cgroups are not."""
    from hutch.errors import HutchError
    from hutch.oci import state as st
    for state in st.list_states(root):
        if state.annotations.get("org.hutch.run") != "true":
            continue
        status = state.live_status()
        try:
            if status == "stopped":
                container.delete(root, state.id, force=True)
            elif status == "creating" and not st.is_locked(root, state.id):
                container.delete_abandoned(root, state.id)   # its create was killed half-way
        except HutchError:
            pass
