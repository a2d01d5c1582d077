"""containerd's CRI plugin -- what the kubelet talks to -- on a private socket, driven over
gRPC from Python, with the OCI runtime under test as the runc shim's `BinaryName`.

One daemon serves two runtime handlers, `runc` and `hutch` (a pod picks one with
RunPodSandboxRequest.runtime_handler, as a Kubernetes RuntimeClass does).  Each handler's
binary is a logging wrapper (helpers.engines.runtime_wrapper) so the runtime's command lines
can be read back.  Everything the daemon keeps lives under one temp directory: root, state,
socket, the network namespaces (netns_mounts_under_state_dir), the CNI config, host-local's
IPAM data, the pod logs.  What cannot live there is named so that it is ours alone:

- the CNI bridge `hutchcri<N>` and subnet 10.232.<N>.0/24 (N from the pid, as in
  helpers.engines), removed at stop (the bridge plugin never deletes its bridge);
- the cgroup parent `/hutch-test-cri-<pid>` in every hierarchy;
- portmap's iptables chains (CNI-HOSTPORT-*, and CNI-DN-* per pod, which its DEL removes):
  the shared chains and the jumps to them are deleted at stop when they were not there
  before, and an nft table iptables-nft made for them is dropped once it is empty again;
- libcni's result cache under /var/lib/cni/results (files named after our network).

Two machine facts shape the config: `restrict_oom_score_adj = true` (root here lacks
CAP_SYS_RESOURCE, so the sandbox's oomScoreAdj -998 would be refused) and the CRI plugin
enabled on a socket of its own.

The gRPC stubs are generated at run time from the CRI's api.proto (../shared/cri, or
HUTCH_CRI_PROTO) with grpcio-tools into a temp directory.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from helpers.engines import (IMAGE, cgroup_dirs, force_delete_leftovers, keep_calls_log,
                             kill_session_processes, mounts_under, oci_archive, private_containerd_config, quietly,
                             read_calls, remove_cgroup_tree, run, runtime_wrapper, unmount_under)

REPO = Path(__file__).resolve().parents[2]
CRI_NAMESPACE = "k8s.io"           # the containerd namespace the CRI plugin works in
_NET_INDEX = 20 + os.getpid() % 200
NETWORK_NAME = f"hutchcri{_NET_INDEX}"
BRIDGE_NAME = f"hutchcri{_NET_INDEX}"
SUBNET = f"10.232.{_NET_INDEX}.0/24"
GATEWAY = f"10.232.{_NET_INDEX}.1"
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
CNI_CACHE = Path("/var/lib/cni")
# The image's default command, so that the same image serves as the pod's pause container
# (kept running until StopPodSandbox kills it) and as the workload image (commands given).
PAUSE_CMD = ("sleep", "2147483647")
CALL_TIMEOUT = 30


class CriUnavailable(Exception):
    """A prerequisite is missing on this machine (the test skips with this reason)."""


def missing_prerequisites() -> str | None:
    """Why the CRI path cannot run here, or None."""
    missing = [b for b in ("containerd", "ctr", "containerd-shim-runc-v2", "iptables", "nft")
               if not shutil.which(b)]
    missing += [str(CNI_BIN_DIR / p) for p in CNI_PLUGINS if not (CNI_BIN_DIR / p).exists()]
    if missing:
        return ("not installed: " + ", ".join(missing)
                + " (apt-get install containerd containernetworking-plugins iptables nftables)")
    try:
        proto_path()
        importlib.import_module("grpc")
        importlib.import_module("grpc_tools.protoc")
    except (CriUnavailable, ImportError) as e:
        return str(e)
    return None


# ---------------------------------------------------------------- gRPC stubs

def proto_path() -> Path:
    candidates = [os.environ.get("HUTCH_CRI_PROTO"), REPO.parent / "shared" / "cri" / "api.proto"]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise CriUnavailable("the CRI definition api.proto is not found (../shared/cri/api.proto "
                         "or HUTCH_CRI_PROTO)")


def load_stubs(dest: Path):
    """Generate api_pb2 / api_pb2_grpc from api.proto into dest and import them.
    Returns (messages module, grpc module)."""
    from grpc_tools import protoc
    proto = proto_path()
    dest.mkdir(parents=True, exist_ok=True)
    # protoc wants the .proto inside an include directory: compile a copy next to its output
    shutil.copy(proto, dest / "api.proto")
    rc = protoc.main(["protoc", f"-I{dest}", f"--python_out={dest}", f"--grpc_python_out={dest}",
                      str(dest / "api.proto")])
    if rc != 0:
        raise RuntimeError(f"grpc_tools.protoc failed on {proto} (exit {rc})")
    sys.path.insert(0, str(dest))
    try:
        for name in ("api_pb2", "api_pb2_grpc"):
            sys.modules.pop(name, None)
        return importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc")
    finally:
        sys.path.remove(str(dest))


# ---------------------------------------------------------------- host state

def firewall() -> str:
    """The whole firewall as the kernel holds it: `nft list ruleset` (iptables-nft's rules
    included), plus iptables-legacy's tables if that binary exists."""
    text = run(["nft", "list", "ruleset"], timeout=20).stdout
    if shutil.which("iptables-legacy-save"):
        legacy = run(["iptables-legacy-save"], timeout=20).stdout
        text += "\n# legacy\n" + "\n".join(l for l in legacy.splitlines() if not l.startswith("#"))
    return text


IPTABLES = ("iptables", "ip6tables")    # portmap writes its chains for both families


def _iptables_chains(tool: str, table: str) -> dict[str, list[list[str]]]:
    """{chain: [rule argv `-A CHAIN ...`]} of one table (shlex: rules carry quoted comments)."""
    out = run([f"{tool}-save", "-t", table], timeout=20).stdout
    chains: dict[str, list[list[str]]] = {}
    for line in out.splitlines():
        if line.startswith(":"):
            chains.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            words = shlex.split(line)
            chains.setdefault(words[1], []).append(words)
    return chains


def _is_portmap_chain(chain: str) -> bool:
    return chain.startswith(("CNI-HOSTPORT-", "CNI-DN-"))


def portmap_chains(table: str = "nat") -> set[str]:
    """`tool:chain` of every portmap chain, IPv4 and IPv6."""
    return {f"{tool}:{c}" for tool in IPTABLES if shutil.which(f"{tool}-save")
            for c in _iptables_chains(tool, table) if _is_portmap_chain(c)}


def drop_portmap_chains(before: set[str], table: str = "nat") -> None:
    """Delete the portmap chains that appeared since `before`: first every rule jumping to
    them, then their rules, then the chains."""
    for tool in IPTABLES:
        if not shutil.which(f"{tool}-save"):
            continue
        chains = _iptables_chains(tool, table)
        ours = {c for c in chains if _is_portmap_chain(c) and f"{tool}:{c}" not in before}
        for chain, rules in chains.items():
            if chain in ours:
                continue
            for words in rules:
                if "-j" in words and words[words.index("-j") + 1] in ours:
                    run([tool, "-t", table, "-D", *words[1:]], timeout=20)
        for chain in ours:
            run([tool, "-t", table, "-F", chain], timeout=20)
        for chain in ours:
            run([tool, "-t", table, "-X", chain], timeout=20)


def nft_tables() -> set[str]:
    out = run(["nft", "list", "tables"], timeout=20).stdout
    return {line.strip() for line in out.splitlines() if line.startswith("table ")}


def _nft_table_has_rules(table: str) -> bool:
    """True when an nft table holds any rule or any chain other than an empty base chain."""
    out = run(["nft", "list", *table.split()], timeout=20).stdout
    for raw in out.splitlines():
        line = raw.strip()
        if not line or line in ("{", "}") or line.startswith(("table ", "chain ", "type ", "#")):
            continue
        return True
    return False


def drop_empty_new_nft_tables(before: set[str]) -> None:
    """iptables-nft creates `table ip nat` (and ip6tables-nft `table ip6 nat`) for portmap's
    first rule and never removes it:
    drop such a table once it is empty again, if it did not exist before."""
    for table in sorted(nft_tables() - before):
        if table in ("table ip nat", "table ip6 nat") and not _nft_table_has_rules(table):
            run(["nft", "delete", *table.split()], timeout=20)


def links() -> set[str]:
    out = run(["ip", "-o", "link"], timeout=20).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line}


def cni_cache_files() -> set[str]:
    """libcni's result cache and host-local's default data (we give host-local a private
    dataDir, so only the result cache should ever see our network)."""
    if not CNI_CACHE.is_dir():
        return set()
    return {str(p) for p in CNI_CACHE.rglob("*")}


def free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class HostState:
    """What a CRI session may change on the host, recorded before it starts."""
    links: set[str]
    firewall: str
    nft_tables: set[str]
    portmap_chains: set[str]
    cni_cache: set[str]
    cni_cache_existed: bool
    ip_forward: str

    @classmethod
    def now(cls) -> "HostState":
        return cls(links=links(), firewall=firewall(), nft_tables=nft_tables(),
                   portmap_chains=portmap_chains(), cni_cache=cni_cache_files(),
                   cni_cache_existed=CNI_CACHE.exists(),
                   ip_forward=Path("/proc/sys/net/ipv4/ip_forward").read_text())


def firewall_difference(before: str, after: str) -> list[str]:
    """Lines added or removed between two firewall listings, ignoring lines that belong to
    podman's netavark (another test session on this machine may be using it meanwhile)."""
    def lines(text):
        # counters tick with traffic: compare the rules, not their packet counts
        return {re.sub(r"counter packets \d+ bytes \d+", "counter", l.strip())
                for l in text.splitlines() if l.strip() and "NETAVARK" not in l}
    b, a = lines(before), lines(after)
    return sorted(f"+ {l}" for l in a - b) + sorted(f"- {l}" for l in b - a)


# ---------------------------------------------------------------- the daemon

@dataclass
class CriContainerd:
    """containerd with the CRI plugin on a private socket; handlers name real runtimes."""
    base: Path
    runtimes: dict[str, str]            # runtime handler -> the real runtime binary
    api: object = None                  # api_pb2
    runtime_service: object = None
    image_service: object = None
    channel: object = None
    proc: subprocess.Popen = None
    wrappers: dict[str, Path] = field(default_factory=dict)
    before: HostState = None
    stopped: bool = False

    # ------------------------------------------------------------ names and places
    @property
    def socket(self) -> Path:
        return self.base / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.base / "cni-conf"

    @property
    def log_dir(self) -> Path:
        return self.base / "pod-logs"

    @property
    def cgroup_parent(self) -> str:
        return f"/hutch-test-cri-{os.getpid()}"

    def runtime_root(self, handler: str) -> Path:
        return self.base / f"runtime-root-{handler}"

    def calls_log(self, handler: str) -> Path:
        return self.base / f"{handler}-calls.log"

    def calls(self, handler: str) -> list[str]:
        return read_calls(self.calls_log(handler))

    # ------------------------------------------------------------ config
    def config_toml(self) -> str:
        cri = '[plugins."io.containerd.grpc.v1.cri"]'
        lines = [
            *private_containerd_config(self.base, self.socket),
            # the opt plugin would otherwise create /opt/containerd
            '[plugins."io.containerd.internal.v1.opt"]', f'  path = "{self.base / "opt"}"',
            cri,
            f'  sandbox_image = "{IMAGE}"',
            "  restrict_oom_score_adj = true",
            "  netns_mounts_under_state_dir = true",
            "  disable_apparmor = true",
            '  stream_server_address = "127.0.0.1"',
            '  stream_server_port = "0"',
            f"{cri[:-1]}.cni]",
            f'  bin_dir = "{CNI_BIN_DIR}"',
            f'  conf_dir = "{self.cni_conf_dir}"',
            "  max_conf_num = 1",
            f"{cri[:-1]}.containerd]",
            '  snapshotter = "overlayfs"',
            f'  default_runtime_name = "{next(iter(self.runtimes))}"',
        ]
        for handler in self.runtimes:
            table = f'{cri[:-1]}.containerd.runtimes.{handler}]'
            lines += [table, '  runtime_type = "io.containerd.runc.v2"',
                      f"{table[:-1]}.options]",
                      f'  BinaryName = "{self.wrappers[handler]}"',
                      f'  Root = "{self.runtime_root(handler)}"',
                      "  SystemdCgroup = false"]
        return "\n".join(lines) + "\n"

    def cni_conflist(self) -> dict:
        return {
            "cniVersion": "0.4.0",
            "name": NETWORK_NAME,
            "plugins": [
                {"type": "bridge", "bridge": BRIDGE_NAME, "isGateway": True, "ipMasq": False,
                 "ipam": {"type": "host-local", "dataDir": str(self.base / "cni-ipam"),
                          "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                # snat (the default) is what makes 127.0.0.1:hostPort reach the pod: portmap
                # sets route_localnet on the bridge and masquerades localhost's traffic.
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }

    # ------------------------------------------------------------ start
    def start(self, rootfs: Path) -> None:
        self.before = HostState.now()
        if BRIDGE_NAME in self.before.links:
            raise RuntimeError(f"bridge {BRIDGE_NAME} already exists: another session uses it")
        for d in ("root", "state", "opt", "images", "cni-ipam"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        self.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for handler, binary in self.runtimes.items():
            self.runtime_root(handler).mkdir(parents=True, exist_ok=True)
            self.wrappers[handler] = runtime_wrapper(binary, self.base / f"wrap-{handler}",
                                                     self.calls_log(handler))
        (self.cni_conf_dir / f"10-{NETWORK_NAME}.conflist").write_text(
            json.dumps(self.cni_conflist(), indent=1))
        config = self.base / "config.toml"
        config.write_text(self.config_toml())
        self.api, grpc_api = load_stubs(self.base / "stubs")
        log = open(self.base / "containerd.log", "w")
        self.proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        import grpc
        self.channel = grpc.insecure_channel(f"unix://{self.socket}")
        self.runtime_service = grpc_api.RuntimeServiceStub(self.channel)
        self.image_service = grpc_api.ImageServiceStub(self.channel)
        self._wait_ready()
        archive = oci_archive(rootfs, self.base / "images" / "busybox.oci.tar", cmd=PAUSE_CMD)
        run(self.ctr_argv("images", "import", archive), check=True, timeout=120)
        self._wait_image()

    def ctr_argv(self, *args) -> list[str]:
        return ["ctr", "-a", str(self.socket), "-n", CRI_NAMESPACE, *map(str, args)]

    def daemon_log(self, tail: int = 3000) -> str:
        try:
            return (self.base / "containerd.log").read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def _wait_ready(self, limit: float = 30) -> None:
        """Until the CRI answers Version (the daemon boots in well under a second)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("containerd exited:\n" + self.daemon_log())
            if self.socket.exists():
                try:
                    self.runtime_service.Version(self.api.VersionRequest(), timeout=5)
                    return
                except Exception:       # grpc.RpcError while the plugin is still loading
                    pass
            time.sleep(0.05)
        raise RuntimeError("containerd's CRI did not answer:\n" + self.daemon_log())

    def _wait_image(self, limit: float = 30) -> None:
        """The CRI plugin learns of an imported image through an event: wait for it."""
        deadline = time.monotonic() + limit
        spec = self.api.ImageSpec(image=IMAGE)
        while time.monotonic() < deadline:
            if self.image_service.ImageStatus(self.api.ImageStatusRequest(image=spec),
                                              timeout=CALL_TIMEOUT).image.id:
                return
            time.sleep(0.05)
        raise RuntimeError(f"the CRI does not see the imported image {IMAGE}")

    # ------------------------------------------------------------ calls
    def call(self, method: str, **fields):
        """One RuntimeService call: call("ExecSync", container_id=..., cmd=[...])."""
        request = getattr(self.api, f"{method}Request")(**fields)
        return getattr(self.runtime_service, method)(request, timeout=CALL_TIMEOUT)

    # ------------------------------------------------------------ configs
    def pod_config(self, name: str, *, host_port: int | None = None, container_port: int = 8080,
                   hostname: str | None = None):
        api = self.api
        ports = [api.PortMapping(protocol=api.TCP, container_port=container_port,
                                 host_port=host_port, host_ip="127.0.0.1")] if host_port else []
        logs = self.log_dir / name
        logs.mkdir(parents=True, exist_ok=True)
        return api.PodSandboxConfig(
            metadata=api.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="hutch-test",
                                            attempt=0),
            hostname=hostname or name, log_directory=str(logs), port_mappings=ports,
            linux=api.LinuxPodSandboxConfig(cgroup_parent=self.cgroup_parent))

    def container_config(self, name: str, command: list[str], *, locked: bool = False,
                         memory_limit: int = 0):
        """A container of the busybox image; `locked` is the restricted security context a
        hardened pod spec asks for (RuntimeDefault seccomp, uid 1000, read-only root
        filesystem, no_new_privs)."""
        api = self.api
        security = api.LinuxContainerSecurityContext()
        if locked:
            security = api.LinuxContainerSecurityContext(
                seccomp=api.SecurityProfile(profile_type=api.SecurityProfile.RuntimeDefault),
                run_as_user=api.Int64Value(value=1000), readonly_rootfs=True, no_new_privs=True)
        return api.ContainerConfig(
            metadata=api.ContainerMetadata(name=name, attempt=0),
            image=api.ImageSpec(image=IMAGE), command=command, log_path=f"{name}.log",
            linux=api.LinuxContainerConfig(
                resources=api.LinuxContainerResources(memory_limit_in_bytes=memory_limit),
                security_context=security))

    # ------------------------------------------------------------ teardown
    def remove_all_pods(self) -> None:
        """StopPodSandbox + RemovePodSandbox for every pod the daemon knows (which also
        removes their containers)."""
        for pod in self.call("ListPodSandbox").items:
            quietly_rpc(self.call, "StopPodSandbox", pod_sandbox_id=pod.id)
            quietly_rpc(self.call, "RemovePodSandbox", pod_sandbox_id=pod.id)

    def stop(self) -> None:
        """Remove every pod, stop the daemon, then sweep what the CRI path leaves by design
        (the bridge, portmap's shared chains, the cgroup parent) or by accident (shims,
        containers the runtime still knows, mounts).  Idempotent."""
        if self.stopped:
            return
        self.stopped = True
        if self.proc and self.proc.poll() is None:
            quietly_rpc(self.remove_all_pods)
            quietly(run, self.ctr_argv("images", "remove", IMAGE), timeout=30)
        if self.channel is not None:
            self.channel.close()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        for handler, binary in self.runtimes.items():
            # force_delete_leftovers reads --root from the logged argv
            quietly(force_delete_leftovers, binary, self.calls_log(handler))
            kill_session_processes(None, self.calls_log(handler))
        kill_session_processes(self.base, None)
        unmount_under(self.base)
        for path in cgroup_dirs(self.cgroup_parent.lstrip("/")):
            remove_cgroup_tree(path)
        if BRIDGE_NAME in links():
            run(["ip", "link", "delete", BRIDGE_NAME], timeout=20)
        if self.before is not None:
            drop_portmap_chains(self.before.portmap_chains)
            drop_empty_new_nft_tables(self.before.nft_tables)
            self._drop_cni_cache()
            Path("/proc/sys/net/ipv4/ip_forward").write_text(self.before.ip_forward)
        for handler in self.runtimes:     # kept as <base>-<handler>-runtime-calls.log
            keep_calls_log(self.calls_log(handler), self.base.with_name(f"{self.base.name}-{handler}"))
        shutil.rmtree(self.base, ignore_errors=True)

    def _drop_cni_cache(self) -> None:
        """libcni's cached results for our network (normally removed by CNI DEL), and the
        /var/lib/cni tree itself if it only exists because of this session."""
        for path in cni_cache_files() - self.before.cni_cache:
            if NETWORK_NAME in Path(path).name and Path(path).is_file():
                Path(path).unlink()
        if not self.before.cni_cache_existed and CNI_CACHE.is_dir():
            if not any(p.is_file() for p in CNI_CACHE.rglob("*")):
                shutil.rmtree(CNI_CACHE, ignore_errors=True)

    def leftovers(self) -> dict[str, list[str]]:
        """What differs on the host from before start (call after stop)."""
        found = {}
        b = self.before
        if self.proc and self.proc.poll() is None:
            found["containerd"] = [str(self.proc.pid)]
        if (left := mounts_under(self.base)):
            found["mounts"] = left
        if (left := sorted(links() - b.links)):
            found["links"] = left
        if (left := [str(p) for p in cgroup_dirs(self.cgroup_parent.lstrip("/"))]):
            found["cgroups"] = left
        if (left := firewall_difference(b.firewall, firewall())):
            found["firewall"] = left
        if (left := sorted(cni_cache_files() - b.cni_cache)):
            found["/var/lib/cni"] = left
        if CNI_CACHE.exists() != b.cni_cache_existed:
            found["/var/lib/cni"] = found.get("/var/lib/cni", []) + [str(CNI_CACHE)]
        if Path("/proc/sys/net/ipv4/ip_forward").read_text() != b.ip_forward:
            found["ip_forward"] = [Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()]
        return found


def quietly_rpc(fn, *args, **kw):
    """A teardown step over gRPC: an RPC error (or a dead daemon) must not stop the next."""
    try:
        return fn(*args, **kw)
    except Exception:       # grpc.RpcError and friends; cleanup goes on regardless
        return None


# ---------------------------------------------------------------- reading results

def cri_log_lines(path: Path) -> list[tuple[str, str]]:
    """(stream, text) of each line of a CRI container log: `<time> <stream> <F|P> <text>`."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4:
            found.append((parts[1], parts[3]))
    return found


def dnat_rules_for(port: int) -> list[str]:
    """portmap's DNAT rules for a host port (iptables-save syntax)."""
    out = run(["iptables-save", "-t", "nat"], timeout=20).stdout
    return [l for l in out.splitlines() if "DNAT" in l and re.search(rf"--dport {port}\b", l)]


def fetch(port: int, timeout: float = 10) -> str:
    """Connect to 127.0.0.1:port and read until EOF, retrying until the server is up."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                if data:
                    return data.decode(errors="replace")
                last = "connected, no data"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    return f"<no answer: {last}>"
