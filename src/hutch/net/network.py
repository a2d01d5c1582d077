"""Bridge networks: their definitions and leases, as files under the state root.

    ROOT/.net/networks/NAME.json   the definition (subnets, gateways, bridge, flags)
    ROOT/.net/leases/NAME.json     who holds which address and host ports (ipam.py)
    ROOT/.net/.NAME.lock           flock()ed by whoever changes the network or its leases
    ROOT/.net/.store.lock          flock()ed while networks are created or removed

A network's live part -- its bridge, the gateway addresses, its firewall entries -- is
made when the first container joins and taken away when the last one leaves
(attach.py), so an unused network costs nothing on the host.  Its bridge carries an
alias naming the network and the root: hutch never deletes a bridge it did not make.
"""

from __future__ import annotations

import os

from hutch import fastjson
from hutch.errors import ConfigError, HutchError, NotFoundError
from hutch.record import dataclass, field

DEFAULT_NETWORK = "hutch0"
DEFAULT_SUBNET = "10.66.0.0/16"
AUTO_SUBNETS = ("10.67.{}.0/24", 256)        # what `network create` picks without --subnet
DEFAULT_MTU = 1500
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass
class Subnet:
    subnet: str              # "10.66.0.0/16", "fd42::/64"
    gateway: str             # the bridge's address in it


@dataclass
class Network:
    name: str
    bridge: str
    subnets: list = field(default_factory=list)      # [Subnet]
    internal: bool = False
    mtu: int = DEFAULT_MTU
    created: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "driver": "bridge", "bridge": self.bridge,
                "subnets": [{"subnet": s.subnet, "gateway": s.gateway} for s in self.subnets],
                "internal": self.internal, "mtu": self.mtu, "created": self.created}

    @classmethod
    def from_json(cls, data: dict, where: str) -> "Network":
        """A definition read back, checked as `network create` checks what it writes: a
        file edited by hand must not reach nft commands, sysfs paths or IPAM unchecked."""
        try:
            network = cls(name=data["name"], bridge=data["bridge"], internal=bool(data.get("internal")),
                          subnets=[Subnet(s["subnet"], s["gateway"]) for s in data["subnets"]],
                          mtu=int(data.get("mtu") or DEFAULT_MTU), created=data.get("created", ""))
            check_name(network.name)
            _check_bridge_name(network.bridge, [])
            if not network.subnets or not 68 <= network.mtu <= 65535:
                raise ValueError("no subnet, or an MTU outside 68-65535")
            for s in network.subnets:
                _check_subnet(s)
        except (KeyError, TypeError, ValueError, AttributeError, HutchError) as err:
            text = err.message if isinstance(err, HutchError) else err
            raise ConfigError(f"not a valid network definition ({text})", where=where) from None
        return network

    def subnet_of(self, family: int) -> Subnet | None:
        for s in self.subnets:
            if (":" in s.subnet) == (family == 6):
                return s
        return None

    def alias(self, root: str) -> str:
        """What the bridge's alias says: who made it (IFALIASZ allows 255 bytes)."""
        return f"hutch network {self.name} {root}"[:255]


# -- paths and locks -----------------------------------------------------------------

def net_dir(root: str) -> str:
    return os.path.join(root, ".net")


def _definition_path(root: str, name: str) -> str:
    return os.path.join(net_dir(root), "networks", check_name(name) + ".json")


def check_name(name: str) -> str:
    if (not name or len(name) > 64 or not set(name) <= _NAME_CHARS or name[0] in ".-"):
        raise ConfigError(f"invalid network name {name!r}: use up to 64 letters, digits, _ . -",
                          where="network name")
    return name


class lock:
    """`with lock(root, name):` -- an exclusive flock on the network (or the store)."""

    def __init__(self, root: str, name: str):
        self.path = os.path.join(net_dir(root), f".{name}.lock")

    def __enter__(self):
        import fcntl
        _ensure_dirs(os.path.dirname(self.path))
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def store_lock(root: str) -> lock:
    return lock(root, "store")


def _ensure_dirs(netdir: str) -> None:
    for sub in ("", "networks", "leases"):
        os.makedirs(os.path.join(netdir, sub), mode=0o700, exist_ok=True)


def read_json(path: str) -> dict | None:
    """The JSON object in path; None if there is no such file; ConfigError if damaged."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    return fastjson.require_object(fastjson.loads(raw, where=path), path)


def write_json_atomic(path: str, data: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(fastjson.dumps(data))
    os.rename(tmp, path)


# -- the store -----------------------------------------------------------------------

def load(root: str, name: str) -> Network:
    path = _definition_path(root, name)
    data = read_json(path)
    if data is None:
        raise NotFoundError(f"network {name} not found (hutch network ls lists them)",
                            where="--network")
    network = Network.from_json(data, path)
    if network.name != name:
        raise ConfigError(f"not a valid network definition (it names network {network.name!r})", where=path)
    return network


def load_or_default(root: str, name: str) -> Network:
    """The network; the default one is defined on first use."""
    if name == DEFAULT_NETWORK and not os.path.exists(_definition_path(root, name)):
        try:
            return create(root, DEFAULT_NETWORK)
        except ConfigError as err:
            if "already exists" not in err.message:
                raise
    return load(root, name)


def list_all(root: str) -> list[Network]:
    directory = os.path.join(net_dir(root), "networks")
    try:
        names = sorted(n[:-5] for n in os.listdir(directory) if n.endswith(".json"))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        try:
            out.append(load(root, name))
        except HutchError:
            continue     # removed while we looked, or damaged: `inspect` names it
    return out


def create(root: str, name: str, subnet: str | None = None, gateway: str | None = None,
           internal: bool = False, subnet6: str | None = None, gateway6: str | None = None,
           mtu: int | None = None, bridge: str | None = None) -> Network:
    """Define a network (nothing is made on the host until a container joins it)."""
    from hutch.net import ipam
    check_name(name)
    if mtu is not None and not 68 <= mtu <= 65535:
        raise ConfigError(f"invalid MTU {mtu}: use 68-65535", where="--mtu")
    with store_lock(root):
        if os.path.exists(_definition_path(root, name)):
            raise ConfigError(f"network {name} already exists", where="network name")
        others = list_all(root)
        taken = [s.subnet for n in others for s in n.subnets] + ipam.host_routes()
        subnets = [ipam.pick_subnet(subnet, gateway, taken, name, _auto(name), "--subnet")]
        if subnet6 is not None:
            subnets.append(ipam.pick_subnet(subnet6, gateway6, taken, name, None, "--subnet6"))
        elif gateway6 is not None:
            raise ConfigError("--gateway6 needs --subnet6", where="--gateway6")
        network = Network(name=name, bridge=bridge or _pick_bridge(name, others),
                          subnets=[Subnet(s, g) for s, g in subnets], internal=internal,
                          mtu=mtu or DEFAULT_MTU, created=_now())
        _check_bridge_name(network.bridge, others)
        _ensure_dirs(net_dir(root))
        write_json_atomic(_definition_path(root, name), network.to_json())
        return network


def remove(root: str, name: str) -> None:
    """Remove a network no container uses; its live part goes too (idempotent)."""
    from hutch.net import attach, ipam
    network = load(root, name)
    with store_lock(root), lock(root, name):
        holders = sorted(ipam.read_leases(root, name)["leases"])
        if holders:
            raise HutchError(f"network {name} is in use by container(s) {', '.join(holders)}",
                             where="network rm")
        attach.teardown_network(root, network)
        for path in (ipam.leases_path(root, name), _definition_path(root, name)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def inspect(root: str, name: str) -> dict:
    """The definition, whether it is live (its bridge exists), and who is on it."""
    from hutch.net import ipam
    network = load(root, name)
    leases = ipam.read_leases(root, name)["leases"]
    return {**network.to_json(), "live": os.path.exists(f"/sys/class/net/{network.bridge}"),
            "containers": {cid: {"ips": lease["ips"], "ports": lease.get("ports") or [],
                                 "interface": lease.get("ifname"), "host_interface": lease.get("host_if")}
                           for cid, lease in sorted(leases.items())}}


def _auto(name: str):
    return DEFAULT_SUBNET if name == DEFAULT_NETWORK else AUTO_SUBNETS


def _pick_bridge(name: str, others: list[Network]) -> str:
    if name == DEFAULT_NETWORK:
        return "hutch0"
    used = {n.bridge for n in others}
    for i in range(1, 10000):
        candidate = f"hutch{i}"
        if candidate not in used and not os.path.exists(f"/sys/class/net/{candidate}"):
            return candidate
    raise HutchError("no free bridge name hutch1..hutch9999", where="network create")


def _check_subnet(s: Subnet) -> None:
    from hutch.net import addr
    net = addr.ip_network(s.subnet, strict=True)
    if addr.ip_address(s.gateway) not in net:
        raise ValueError(f"gateway {s.gateway} is not in {s.subnet}")


def _check_bridge_name(bridge: str, others: list[Network]) -> None:
    # Only these characters: the name goes into nftables commands and sysfs paths.
    if not bridge or len(bridge) > 15 or not set(bridge) <= _NAME_CHARS or bridge[0] in ".-":
        raise ConfigError(f"invalid bridge name {bridge!r}: 1-15 letters, digits, _ . -",
                          where="--bridge")
    for other in others:
        if other.bridge == bridge:
            raise ConfigError(f"bridge {bridge} is network {other.name}'s already", where="--bridge")


def _now() -> str:
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
