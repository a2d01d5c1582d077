"""The networking peers, shared by bench/net and the differential network tests:
podman/netavark bridge networks in a private podman (helpers.engines.Podman), hutch's own
networks when the binary has them, and host firewall snapshots.

Every name and subnet here is per process (like engines.NETWORK_NAME): two sessions at
once get distinct bridges, subnets and netavark IPAM entries.  Subnets are 10.2xx.N.0/24,
which cannot clash with the host (192.0.2.0/24 on eth0).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
from dataclasses import dataclass

from helpers.engines import run

INDEX = 20 + os.getpid() % 200


@dataclass(frozen=True)
class Subnet:
    """A /24 and the addresses a bridge network hands out from it."""
    cidr: str

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.ip_network(self.cidr)

    @property
    def gateway(self) -> str:
        """The first host address: what netavark (and hutch) give the bridge."""
        return str(self.network.network_address + 1)

    def host(self, n: int) -> str:
        return str(self.network.network_address + n)

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen


def subnet(second_octet: int) -> Subnet:
    """10.<second_octet>.<this process's index>.0/24."""
    return Subnet(f"10.{second_octet}.{INDEX}.0/24")


# ---------------------------------------------------------------- podman / netavark

def podman_network(podman, name: str, bridge: str, net: Subnet, *, internal: bool = False) -> str:
    """A netavark bridge network in the private podman's network config dir, written as
    the file `podman network create` would write (podman 4.3 cannot name the bridge, and a
    podmanN name could collide with another session's).  DNS is off: aardvark-dns would
    add a daemon to every start, and hutch has no DNS server to compare it with."""
    (podman.dirs["net"] / f"{name}.json").write_text(json.dumps({
        "name": name, "id": hashlib.sha256(name.encode()).hexdigest(),
        "driver": "bridge", "network_interface": bridge,
        "created": "2026-01-01T00:00:00Z",
        "subnets": [{"subnet": net.cidr, "gateway": net.gateway}],
        "ipv6_enabled": False, "internal": internal, "dns_enabled": False,
        "ipam_options": {"driver": "host-local"}}))
    listed = podman("network", "ls", "--format", "{{.Name}}", check=True).stdout.split()
    assert name in listed, f"podman does not see network {name}: {listed}"
    return name


# Bind mounts that make the host's dynamically linked programs (iperf3, iproute2's ip,
# dash) run in a busybox container: the host's /usr read-only, and /lib, /lib64 pointing
# into it as on the merged-/usr host.  The runtime makes the missing mount points.
HOST_USR = ("-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro")
# busybox's sh runs its own applets, and /usr/sbin/ip links to /bin/ip (busybox in the
# container): scripts that want the host's tools run under the host's dash, with /usr/bin
# first on PATH.
HOST_SHELL = ("/usr/bin/dash", "-c")
HOST_PATH = ("-e", "PATH=/usr/bin:/usr/sbin:/bin:/sbin")


# ---------------------------------------------------------------- hutch

def hutch_networking(*hutch: str) -> str | None:
    """None when this hutch (its argv prefix, e.g. `hutch --root DIR`) has networks
    (`hutch network ls` works), else why not."""
    try:
        res = subprocess.run([*hutch, "network", "ls"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"`hutch network ls` failed: {err}"
    if res.returncode != 0:
        first = (res.stderr or res.stdout).strip().splitlines()[:1]
        return ("hutch has no networking yet (`hutch network ls`: "
                f"{first[0] if first else 'exit ' + str(res.returncode)})")
    return None


# ---------------------------------------------------------------- host firewall

def iptables_rules() -> dict[str, list[str]]:
    """Every iptables/ip6tables chain and rule, without counters and comments (what must
    be the same before and after a test)."""
    found = {}
    for tool in ("iptables-save", "ip6tables-save"):
        if not shutil.which(tool):
            continue
        out = run([tool], timeout=20).stdout
        found[tool] = [line.split(" [", 1)[0] if line.startswith(":") else line
                       for line in out.splitlines() if line and not line.startswith("#")]
    return found


def nft_ruleset() -> str:
    return run(["nft", "list", "ruleset"], timeout=20).stdout if shutil.which("nft") else ""
