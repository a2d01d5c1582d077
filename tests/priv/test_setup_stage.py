"""The parent-side setup stage: work a caller attaches between "the container's namespaces
exist" and "its program runs" (network setup first of all), with its undo in the state.

Driven through the library (oci.container.create with CreateOptions.setup), as the
engine and the networking layer use it.  A setup step here moves a real veth end into
the container's network namespace and pins that namespace with a bind mount; the
container's program must see both at its first instruction, and delete must undo both,
also when a later step fails."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from hutch.errors import HutchError
from hutch.oci import container, owned
from hutch.oci.launcher import wait_status

from helpers.bundle import make_config

pytestmark = pytest.mark.priv


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


def _undo_link(entry: dict) -> None:
    res = _ip("link", "del", entry["name"])
    if res.returncode != 0 and "Cannot find device" not in res.stderr:
        raise HutchError(f"ip link del {entry['name']}: {res.stderr.strip()}")


@pytest.fixture
def link_kind():
    """A kind owned by a layer above oci/ registers its undo (as net/ or engine/ will)."""
    owned.register("test-link", _undo_link)
    yield "test-link"
    owned.UNDO.pop("test-link", None)


def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def _spec(rootfs, args) -> dict:
    spec = make_config(args)
    spec["root"]["path"] = str(rootfs)
    return spec


def _run(tmp_path, rootfs, args, setup):
    root = str(tmp_path / "state")
    cid = f"hutch-test-setup-{uuid.uuid4().hex[:8]}"
    out = open(tmp_path / "out", "w+")
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        options = container.CreateOptions(foreground=True, stdio=(null, out.fileno(), out.fileno()),
                                          setup=tuple(setup))
        state, started = container.create(root, cid, str(tmp_path), options, spec=_spec(rootfs, args))
        try:
            container.release(root, state, started)
            code = wait_status(started.pid)
        finally:
            container.delete(root, cid, force=True)
        out.seek(0)
        return code, out.read(), root, cid
    finally:
        os.close(null)
        out.close()


def test_setup_runs_before_the_program_and_its_undo_runs_on_delete(tmp_path, rootfs, link_kind):
    host_end = f"vh{uuid.uuid4().hex[:8]}"
    pin = str(tmp_path / "netns-pin")
    seen = {}

    def wire(ctx):
        seen["pid"] = ctx.pid
        seen["journal"] = os.path.exists(os.path.join(container_dir(ctx), owned.JOURNAL))
        ctx.own({"kind": link_kind, "key": f"link:{host_end}", "name": host_end})
        res = _ip("link", "add", host_end, "type", "veth", "peer", "name", "ceth0",
                  "netns", str(ctx.pid))
        assert res.returncode == 0, res.stderr
        ctx.own({"kind": "file", "key": f"file:{pin}", "path": pin})
        open(pin, "w").close()
        ctx.own({"kind": "mount", "key": f"mount:{pin}", "path": pin})
        subprocess.run(["mount", "--bind", f"/proc/{ctx.pid}/ns/net", pin], check=True)
        seen["netns"] = os.stat(f"/proc/{ctx.pid}/ns/net").st_ino

    def container_dir(ctx):
        from hutch.oci.state import container_dir as cdir
        return cdir(ctx.root, ctx.state.id)

    code, out, root, cid = _run(tmp_path, rootfs, ["sh", "-c", "ip -o link show ceth0 && stat -L -c %i /proc/self/ns/net"],
                                [wire])
    assert code == 0, out
    assert "ceth0" in out                                    # there before the program ran
    assert str(seen["netns"]) in out.split()                 # the pin is the container's netns
    assert seen["journal"]                                    # the process was recorded first
    assert _ip("link", "show", host_end).returncode != 0     # undone on delete
    assert not _mounted(pin) and not os.path.exists(pin)
    assert not os.path.exists(os.path.join(root, cid))


def test_a_failing_setup_step_undoes_what_the_earlier_ones_made(tmp_path, rootfs, link_kind):
    host_end = f"vh{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "program-ran"

    def wire(ctx):
        ctx.own({"kind": link_kind, "key": f"link:{host_end}", "name": host_end})
        assert _ip("link", "add", host_end, "type", "veth", "peer", "name", "ceth0",
                   "netns", str(ctx.pid)).returncode == 0

    def refuse(ctx):
        raise HutchError("no address left in 10.99.0.0/30", where="network")

    with pytest.raises(HutchError) as exc:
        _run(tmp_path, rootfs, ["sh", "-c", f"touch {marker}"], [wire, refuse])
    assert "no address left" in str(exc.value)
    assert _ip("link", "show", host_end).returncode != 0
    assert os.listdir(tmp_path / "state") == []             # no state, no lock file
    assert not marker.exists()
