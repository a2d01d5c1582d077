"""`hutch features`: what this runtime supports, shaped like `runc features` output.

The document has the same keys as runc 1.1's (the OCI "features" structure) so
that engines probing a runtime find what they expect; the values describe hutch.
"""

from __future__ import annotations

import json

from hutch.errors import EXIT_OCI_ERROR, ConfigError
from hutch.oci import validate

OCI_VERSION_MIN = "1.0.0"
OCI_VERSION_MAX = "1.2.0"   # the newest spec whose fields validate.py knows


def mount_options() -> list[str]:
    """The option words hutch's mount code turns into flags, propagation, recursive
    attributes or extensions (anything else in "options" is filesystem data, e.g. mode=755)."""
    from hutch.fs import options
    words = (set(options.FLAG_WORDS) | set(options.PROPAGATION_WORDS)
             | set(options.RECURSIVE_WORDS) | set(options.RECURSIVE_ATIME_WORDS)
             | set(options.RECURSIVE_ATIME_CLEAR_WORDS) | set(options.EXTENSION_WORDS))
    return sorted(words)


def seccomp_features() -> dict:
    """What hutch's own filter compiler (hutch.security.seccomp) handles: the actions it
    can encode (not SCMP_ACT_NOTIFY) and the ABIs it can filter on this machine (the
    native one and its compat ABIs, e.g. x86_64 with x86 and x32)."""
    import os
    from hutch.security import seccomp
    native = seccomp.NATIVE_ABI.get(os.uname().machine)
    archs = [native, *seccomp.COMPAT_ABIS.get(native, ())] if native else []
    actions = []
    for name in validate.SECCOMP_ACTIONS:
        try:
            seccomp.parse_action(name, None, "features")
        except ConfigError:
            continue
        actions.append(name)
    return {
        "enabled": bool(archs),
        "actions": sorted(actions),
        "operators": sorted(validate.SECCOMP_OPERATORS),
        "archs": sorted(archs),
    }


def features() -> dict:
    """The features document, in runc's key order."""
    from hutch.security.caps import CAPABILITIES
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": list(validate.HOOK_NAMES),
        "mountOptions": mount_options(),
        "linux": {
            "namespaces": sorted(validate.NAMESPACE_TYPES),
            "capabilities": sorted(CAPABILITIES, key=CAPABILITIES.get),
            # v1 and v2 through the file system; systemd (--systemd-cgroup) as root only.
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": False},
            "seccomp": seccomp_features(),
            # hutch loads no AppArmor profile and sets no SELinux label.
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {
            "dev.hutch.version": hutch_version(),
        },
    }


def hutch_version() -> str:
    """The installed package's version (from its metadata, so it never drifts)."""
    from importlib import metadata
    try:
        return metadata.version("hutch")
    except metadata.PackageNotFoundError:
        return "unknown"


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
