"""The layering rule: a package imports only the layers below it; nothing imports cli;
only syscall/ uses ctypes; the container start path stays free of heavy modules."""

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "hutch"

# layer number of each package; a module may import its own package and lower layers.
LAYERS = {
    "errors": 0, "record": 0, "checks": 0, "faults": 0,                 # plain data helpers
    "fastjson": 1, "syscall": 1, "dbus": 1,                 # the only ctypes code; protocols
    "ns": 2, "fs": 2, "security": 2, "cgroups": 2, "net": 2,  # one concern each
    "oci": 3,                                               # spec, state, launcher, lifecycle
    "engine": 4, "trace": 4, "checkpoint": 4, "topo": 4,    # built on the runtime
    "tools": 5,
    "cli": 6, "__init__": 6,
}


def package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    """The module an ImportFrom names, with relative imports resolved against path."""
    if not node.level:
        return node.module or ""
    package = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
    return ".".join(base + ([node.module] if node.module else []))


def hutch_imports(path: Path):
    """(package, line) for every import of a hutch package in path, relative ones included."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = _absolute(path, node)
            parts = module.split(".")
            if parts[0] != "hutch":
                continue
            if len(parts) > 1:
                yield parts[1], node.lineno
            else:
                for alias in node.names:
                    yield alias.name, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hutch."):
                    yield alias.name.split(".")[1], node.lineno


def imports_module(path: Path, name: str) -> bool:
    """True when path imports `name` in any form (import x, import x.y, from x import y)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == name for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == name:
            return True
        if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__"
                and node.args and getattr(node.args[0], "value", None) == name):
            return True
    return False


def test_every_package_has_a_layer():
    unknown = sorted({package_of(p) for p in SRC.rglob("*.py")} - set(LAYERS))
    assert not unknown, f"packages with no layer in LAYERS: {unknown}"


def test_layers_import_only_downwards():
    violations = []
    for path in SRC.rglob("*.py"):
        pkg = package_of(path)
        for target, line in hutch_imports(path):
            if target not in LAYERS:
                violations.append(f"{path.relative_to(SRC)}:{line} imports unknown hutch.{target}")
            elif target != pkg and LAYERS[target] >= LAYERS[pkg]:
                violations.append(f"{path.relative_to(SRC)}:{line} imports hutch.{target}")
    assert not violations, "\n".join(violations)


def test_relative_imports_are_resolved(tmp_path):
    """The checker sees `from ..oci import x` as hutch.oci (a bypass otherwise)."""
    fake = SRC / "ns" / "example.py"
    node = ast.parse("from ..oci import state").body[0]
    assert _absolute(fake, node) == "hutch.oci"
    node = ast.parse("from . import join").body[0]
    assert _absolute(fake, node) == "hutch.ns"


def test_only_syscall_uses_ctypes():
    users = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
             if package_of(p) != "syscall" and (imports_module(p, "ctypes") or imports_module(p, "_ctypes"))]
    assert not users


def test_start_path_binds_libc_without_ctypes():
    """The calls of a container start go through hutch.syscall.ffi (_ctypes), never
    ctypes' 3 ms __init__; only the BPF loader may still want ctypes itself."""
    code = ("import sys; import hutch.cli.main, hutch.cli.oci, hutch.oci.container, hutch.oci.launcher, "
            "hutch.oci.init, hutch.syscall.libc, hutch.syscall.mountapi, hutch.syscall.seccomp, "
            "hutch.syscall.sched, hutch.security.caps; print(' '.join(sorted(sys.modules)))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert "_ctypes" in loaded and "ctypes" not in loaded


def test_start_path_imports_nothing_heavy():
    """`hutch create`/`run` must not load tracing, networking or argparse machinery."""
    code = ("import sys; import hutch.cli.main, hutch.cli.oci, hutch.cli.run, hutch.oci.container, "
            "hutch.oci.launcher, hutch.oci.init, hutch.oci.validate, hutch.engine.run, hutch.engine.runspec; print(' '.join(sorted(sys.modules)))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    heavy = {"json", "re", "dataclasses", "argparse", "threading", "asyncio", "pyroute2", "subprocess", "hutch.tools", "hutch.net", "hutch.trace", "hutch.checkpoint", "hutch.topo",
             "hutch.cgroups.stats", "socket", "tempfile", "email", "http"}
    assert not (loaded & heavy), loaded & heavy
    assert not [m for m in loaded if m.startswith("hutch.net")], "--net none loads networking"


def test_network_path_imports_nothing_heavy():
    """`hutch run --network`: the setup step's modules, still without json, re,
    subprocess, socket (the C _socket is enough) or ipaddress (net/addr.py)."""
    code = ("import sys; import hutch.net.attach, hutch.net.ipam, hutch.net.network, hutch.net.netlink, "
            "hutch.net.nft, hutch.net.hosts, hutch.net.addr, hutch.syscall.nftables; "
            "print(' '.join(sorted(sys.modules)))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    heavy = {"json", "re", "enum", "socket", "ipaddress", "dataclasses", "argparse", "threading",
             "subprocess", "pyroute2", "functools"}
    assert not (loaded & heavy), loaded & heavy


def test_systemd_driver_path_imports_nothing_heavy():
    """`create --systemd-cgroup` adds the driver, its properties and the D-Bus client:
    still no re/enum/socket (the C _socket is enough)."""
    code = ("import sys; import hutch.cgroups.systemd, hutch.cgroups.systemd_props, hutch.dbus, "
            "hutch.cgroups.v1, hutch.cgroups.v2; print(' '.join(sorted(sys.modules)))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    heavy = {"json", "re", "enum", "socket", "dataclasses", "argparse", "threading", "subprocess"}
    assert not (loaded & heavy), loaded & heavy
