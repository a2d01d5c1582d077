"""runc-compatible --log output (containerd's shim reads it as JSON lines)."""

from __future__ import annotations

import json
import time


def write_log(g, level: str, message: str) -> None:
    if not g.log:
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
    if g.log_format == "json":
        line = json.dumps({"level": level, "msg": message, "time": stamp})
    else:
        line = f'time="{stamp}" level={level} msg="{message}"'
    try:
        with open(g.log, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass
