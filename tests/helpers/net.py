"""Helpers for the networking tests: a private state root with its own networks,
containers running servers in the background, and host-side views of links, nft and
leases that do not go through hutch.

Traffic goes only to 127.0.0.1, to the test's own bridges' gateway addresses and to
containers' addresses (inside namespaces the tests made)."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import time

from helpers.run import hutch_executable

# A TCP and UDP server that answers every connection/datagram with NAME (its first
# argument) and says "ready" once both sockets listen.
SERVER = r"""
import socket, sys, threading
name, port = sys.argv[1].encode(), int(sys.argv[2])
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", port)); tcp.listen(16)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("0.0.0.0", port))
def serve_udp():
    while True:
        data, peer = udp.recvfrom(100); udp.sendto(name + b":" + data, peer)
threading.Thread(target=serve_udp, daemon=True).start()
print("ready", flush=True)
while True:
    conn, peer = tcp.accept(); conn.sendall(name + b" " + peer[0].encode()); conn.close()
"""

# A client: connect to HOST PORT over tcp (or udp) and print the answer or the error.
CLIENT = r"""
import socket, sys
host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "tcp"
try:
    if proto == "udp":
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2); s.sendto(b"hi", (host, port)); print(s.recvfrom(100)[0].decode())
    else:
        s = socket.create_connection((host, port), timeout=2); print(s.recv(100).decode())
except OSError as e:
    print("error", type(e).__name__)
"""


def random_subnet() -> tuple[str, str]:
    """A /24 unlikely to be anyone's: 10.2[00-49].X.0/24, and its gateway."""
    base = f"10.{random.randint(200, 249)}.{random.randint(0, 255)}"
    return f"{base}.0/24", f"{base}.1"


class Net:
    """hutch with a private --root: networks, containers, and what they left."""

    def __init__(self, root: str):
        self.root = root
        self.exe = hutch_executable()
        self.servers: list[subprocess.Popen] = []

    def hutch(self, *args, check=True, timeout=60, env=None) -> subprocess.CompletedProcess:
        result = subprocess.run([self.exe, "--root", self.root, *args], capture_output=True,
                                text=True, timeout=timeout, env=env)
        if check:
            assert result.returncode == 0, f"hutch {' '.join(args)}: {result.returncode} {result.stderr}"
        return result

    def create(self, bundle, cid: str, check=True) -> subprocess.CompletedProcess:
        """OCI create: the container keeps its stdio, so it must not be our pipes (the
        call would wait for the container to exit); errors go to a file."""
        import tempfile
        with tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run([self.exe, "--root", self.root, "create", "--bundle", str(bundle), cid],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=60)
            err.seek(0)
            result = subprocess.CompletedProcess(proc.args, proc.returncode, "", err.read())
        if check:
            assert result.returncode == 0, f"create {cid}: {result.stderr}"
        return result

    def network(self, name: str, *extra: str) -> str:
        subnet, _ = random_subnet()
        self.hutch("network", "create", "--subnet", subnet, *extra, name)
        return subnet

    def run(self, *args, check=True, timeout=60) -> subprocess.CompletedProcess:
        return self.hutch("run", *args, check=check, timeout=timeout)

    def client(self, run_args: list[str], host: str, port: int, proto: str = "tcp") -> str:
        """Run the client in a new container; its answer."""
        return self.run(*run_args, "--", "python3", "-c", CLIENT, host, str(port), proto).stdout.strip()

    def server(self, name: str, *run_args: str, port: int = 80) -> subprocess.Popen:
        """A container named name running SERVER on port, in the background, ready."""
        proc = subprocess.Popen([self.exe, "--root", self.root, "run", "--name", name, *run_args,
                                 "--", "python3", "-u", "-c", SERVER, name, str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.servers.append(proc)
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            raise AssertionError(f"server {name} did not start: {line!r} {proc.stderr.read()}")
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()        # hutch run forwards it to the container
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            stream.close()

    def ip_of(self, name: str, network: str) -> str:
        info = json.loads(self.hutch("network", "inspect", network).stdout)[0]
        return info["containers"][name]["ips"][0].partition("/")[0]

    def leases(self, network: str) -> dict:
        with open(os.path.join(self.root, ".net", "leases", network + ".json")) as f:
            return json.load(f)["leases"]

    def links(self) -> list[str]:
        """Host links made for this root: bridges and veths say so in their alias."""
        out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
        return sorted(link["ifname"] for link in json.loads(out)
                      if link.get("ifalias", "").endswith(" " + self.root))

    def cleanup(self) -> None:
        for proc in self.servers:
            self.stop(proc)
        listing = subprocess.run([self.exe, "--root", self.root, "list", "-q"], capture_output=True, text=True)
        for cid in listing.stdout.split():
            subprocess.run([self.exe, "--root", self.root, "delete", "--force", cid], capture_output=True)
        nets = subprocess.run([self.exe, "--root", self.root, "network", "ls", "--format", "json"],
                              capture_output=True, text=True)
        for net in json.loads(nets.stdout or "[]"):
            subprocess.run([self.exe, "--root", self.root, "network", "rm", net["name"]], capture_output=True)


def tcp_from_host(host: str, port: int, timeout: float = 2.0) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            return s.recv(100).decode()
    except OSError as err:
        return f"error {type(err).__name__}"


def udp_from_host(host: str, port: int, timeout: float = 2.0) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(b"hi", (host, port))
            return s.recvfrom(100)[0].decode()
        except OSError as err:
            return f"error {type(err).__name__}"


def host_links() -> set[str]:
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    return {link["ifname"] for link in json.loads(out)}


def link_info(name: str) -> dict | None:
    out = subprocess.run(["ip", "-j", "-d", "link", "show", name], capture_output=True, text=True)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def nft_table() -> str | None:
    out = subprocess.run(["nft", "list", "table", "inet", "hutch"], capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else None


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
