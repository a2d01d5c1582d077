"""The layering rule: a package imports only the layers below it; nothing imports cli;
only syscall/ uses ctypes; the container start path stays free of heavy modules."""

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "hutch"

# layer number of each package; a module may import its own package and lower layers.
LAYERS = {"errors": 0, "record": 0, "fastjson": 1, "syscall": 1, "dbus": 1, "ns": 2, "fs": 2, "security": 2, "cgroups": 2,
          "oci": 3, "net": 3, "trace": 3, "checkpoint": 3, "image": 3,
          "tools": 4, "api": 4, "cli": 5, "__init__": 5}


def package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def hutch_imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hutch"):
            parts = node.module.split(".")
            if len(parts) > 1:
                yield parts[1], node.lineno
            else:
                for alias in node.names:
                    yield alias.name, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hutch."):
                    yield alias.name.split(".")[1], node.lineno


def test_layers_import_only_downwards():
    violations = []
    for path in SRC.rglob("*.py"):
        pkg = package_of(path)
        for target, line in hutch_imports(path):
            if target in LAYERS and target != pkg and LAYERS[target] >= LAYERS[pkg]:
                violations.append(f"{path.relative_to(SRC)}:{line} imports hutch.{target}")
    assert not violations, "\n".join(violations)


def test_only_sys_uses_ctypes():
    users = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
             if package_of(p) != "syscall" and "import ctypes" in p.read_text()]
    assert not users


def test_start_path_imports_nothing_heavy():
    """`hutch create`/`run` must not load tracing, networking or argparse machinery."""
    code = ("import sys; import hutch.cli.main, hutch.cli.oci, hutch.cli.run, hutch.oci.container, "
            "hutch.oci.launcher, hutch.oci.init, hutch.oci.validate; print(' '.join(sorted(sys.modules)))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    heavy = {"json", "re", "dataclasses", "argparse", "threading", "asyncio", "pyroute2", "subprocess", "hutch.tools", "hutch.net",
             "hutch.cgroups.stats", "socket", "tempfile", "email", "http"}
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
