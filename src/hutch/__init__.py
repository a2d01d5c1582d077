"""hutch: Linux containers from first principles.

`hutch.run(args, ...)` runs a command in a new container like subprocess.run;
`hutch.Container` starts, waits for, signals and inspects one; `hutch.networks`
creates, lists, inspects and removes bridge networks (`net=`/`publish=` join them).  Submodules load
lazily so that `import hutch` stays cheap on the container-start path.
"""

__version__ = "0.1.0"
__all__ = ["run", "Container", "HutchError", "networks"]


def __getattr__(name):
    if name == "networks":
        from hutch.engine import networks
        return networks
    if name in ("run", "Container"):
        from hutch.engine import api
        return getattr(api, name)
    if name == "HutchError":
        from hutch.errors import HutchError
        return HutchError
    raise AttributeError(f"module 'hutch' has no attribute {name!r}")
