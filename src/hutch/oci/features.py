"""`hutch features`: what this runtime supports, shaped like `runc features` output.

The document has the same keys as runc 1.1's (the OCI "features" structure) so
that engines probing a runtime find what they expect; the values describe hutch.
"""

from __future__ import annotations

import json

from hutch.errors import EXIT_OCI_ERROR, ConfigError
from hutch.oci import validate

HUTCH_VERSION = "0.1.0"
OCI_VERSION_MIN = "1.0.0"
OCI_VERSION_MAX = "1.2.0"   # the newest spec whose fields validate.py knows

# Mount options hutch turns into mount flags, propagation or recursive attributes
# (anything else in "options" is passed to the filesystem as data, e.g. "mode=755").
MOUNT_OPTIONS = (
    "acl", "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "iversion",
    "lazytime", "loud", "mand", "noacl", "noatime", "nodev", "nodiratime", "noexec",
    "noiversion", "nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid", "nosymfollow",
    "private", "ratime", "rbind", "rdev", "rdiratime", "relatime", "remount", "rexec",
    "rnoatime", "rnodev", "rnodiratime", "rnoexec", "rnorelatime", "rnostrictatime", "rnosuid",
    "rnosymfollow", "ro", "rprivate", "rrelatime", "rro", "rrw", "rshared", "rslave",
    "rstrictatime", "rsuid", "rsymfollow", "runbindable", "rw", "shared", "silent", "slave",
    "strictatime", "suid", "symfollow", "sync", "tmpcopyup", "unbindable",
)


def features() -> dict:
    """The features document, in runc's key order."""
    from hutch.security.caps import CAPABILITIES
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": list(validate.HOOK_NAMES),
        "mountOptions": sorted(MOUNT_OPTIONS),
        "linux": {
            "namespaces": sorted(validate.NAMESPACE_TYPES),
            "capabilities": sorted(CAPABILITIES, key=CAPABILITIES.get),
            # cgroup v1 and v2 are driven through the filesystem; no systemd driver.
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {
                "enabled": True,
                "actions": sorted(validate.SECCOMP_ACTIONS),
                "operators": sorted(validate.SECCOMP_OPERATORS),
                "archs": sorted(validate.SECCOMP_ARCHS),
            },
            # hutch loads no AppArmor profile and sets no SELinux label.
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {
            "dev.hutch.version": HUTCH_VERSION,
        },
    }


def render_features(doc: dict) -> str:
    """As runc prints it: four-space indentation and a final newline."""
    return json.dumps(doc, indent=4) + "\n"


def features_command(argv: list[str]) -> int:
    """`hutch features`: print the document; any argument is a usage error (exit 1) as in runc."""
    if argv and argv[0] in ("-h", "--help"):
        print("usage: hutch features\n\nShow the enabled features, as JSON.")
        return 0
    if argv:
        raise ConfigError('"features" requires exactly 0 argument(s)', where="features",
                          exit_code=EXIT_OCI_ERROR)
    print(render_features(features()), end="")
    return 0
