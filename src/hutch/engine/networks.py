"""Bridge networks from Python, over the same store as `hutch network`.

    >>> import hutch
    >>> hutch.networks.create("lab", subnet="10.77.0.0/24")["subnets"]
    [{'subnet': '10.77.0.0/24', 'gateway': '10.77.0.1'}]
    >>> with hutch.Container(["python3", "-m", "http.server", "80"], net="lab",
    ...                      publish=["8080:80"]) as c:
    ...     c.start(); hutch.networks.endpoints(c.id)
    {'lab': {'ips': ['10.77.0.2/24'], 'ports': [{'host_ip': '', 'host_port': 8080, ...}], ...}}
    >>> hutch.networks.remove("lab")

Every function takes root= (the state root; the default one otherwise).
"""

from __future__ import annotations

from hutch.net import network as _store
from hutch.oci.state import default_root


def create(name: str, *, subnet: str | None = None, gateway: str | None = None,
           internal: bool = False, subnet6: str | None = None, gateway6: str | None = None,
           mtu: int | None = None, bridge: str | None = None, root: str | None = None) -> dict:
    """Define a network (its bridge is made when the first container joins); returns
    what inspect() returns."""
    root = root or default_root()
    made = _store.create(root, name, subnet=subnet, gateway=gateway, internal=internal,
                         subnet6=subnet6, gateway6=gateway6, mtu=mtu, bridge=bridge)
    return _store.inspect(root, made.name)


def list(root: str | None = None) -> "list[dict]":
    root = root or default_root()
    return [_store.inspect(root, n.name) for n in _store.list_all(root)]


def inspect(name: str, root: str | None = None) -> dict:
    """The definition, "live" (its bridge exists) and "containers": id -> ips, ports."""
    return _store.inspect(root or default_root(), name)


def remove(name: str, root: str | None = None) -> None:
    """Remove a network no container is on (HutchError naming them otherwise)."""
    _store.remove(root or default_root(), name)


def endpoints(container_id: str, root: str | None = None) -> dict:
    """The container's place on each network: network name -> ips, ports, interfaces."""
    root = root or default_root()
    out = {}
    for n in _store.list_all(root):
        info = _store.inspect(root, n.name)["containers"].get(container_id)
        if info is not None:
            out[n.name] = info
    return out
