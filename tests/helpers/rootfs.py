"""Build a minimal root filesystem from Debian's static busybox (no download)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def find_busybox() -> str:
    for path in BUSYBOX_CANDIDATES:
        if os.path.exists(path):
            return path
    raise RuntimeError("busybox is not installed (apt-get install busybox-static)")


def build_busybox_rootfs(dest: Path) -> Path:
    busybox = find_busybox()
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root",
              "run", "var/tmp"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, dest / "bin/busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout
    for name in applets.split():
        link = dest / "bin" / name
        if name != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (dest / "etc/passwd").write_text(PASSWD)
    (dest / "etc/group").write_text(GROUP)
    (dest / "etc/hostname").write_text("busybox\n")
    os.chmod(dest / "tmp", 0o1777)
    return dest
