"""A small stand-in for the parts of `dataclasses` hutch uses.

`import dataclasses` costs about 17 ms here (it pulls in inspect, ast, copy,
...), more than a third of runc's whole start time; container start is the hot
path.  This builds the same __init__/__repr__/__eq__ (and __hash__ for frozen
records) from the class annotations, with `field(default=..., default_factory=...)`,
`fields()` and `asdict()`.  Frozen records are not enforced read-only.
"""

from __future__ import annotations

_MISSING = object()


class Field:
    __slots__ = ("name", "default", "default_factory", "repr")

    def __init__(self, default=_MISSING, default_factory=_MISSING, repr=True):
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr


def field(*, default=_MISSING, default_factory=_MISSING, repr: bool = True) -> Field:
    return Field(default, default_factory, repr)


def _annotations(cls) -> list[str]:
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        for name, kind in klass.__dict__.get("__annotations__", {}).items():
            if "ClassVar" in str(kind) or name in names:
                continue
            names.append(name)
    return names


def _compile_init(cls, specs: list[Field]):
    """The class's __init__, compiled from its fields (with __post_init__ called after)."""
    env = {"_MISSING": _MISSING}
    params, body = [], []
    for spec in specs:
        if spec.default_factory is not _MISSING:
            env[f"_f_{spec.name}"] = spec.default_factory
            params.append(f"{spec.name}=_MISSING")
            body.append(f"self.{spec.name} = _f_{spec.name}() if {spec.name} is _MISSING else {spec.name}")
        elif spec.default is not _MISSING:
            env[f"_d_{spec.name}"] = spec.default
            params.append(f"{spec.name}=_d_{spec.name}")
            body.append(f"self.{spec.name} = {spec.name}")
        else:
            params.append(spec.name)
            body.append(f"self.{spec.name} = {spec.name}")
    if getattr(cls, "__post_init__", None) is not None:
        body.append("self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}):\n    " + "\n    ".join(body or ["pass"])
    exec(source, env)  # noqa: S102 - generated from the class's own annotations
    return env["__init__"]


def _install_lazy_init(cls, specs: list[Field]) -> None:
    """Compile __init__ on the first instantiation, not at import: compiling costs
    ~0.1 ms a class, and most record classes a command imports are never made."""
    def __init__(self, *args, **kwargs):
        init = _compile_init(cls, specs)
        cls.__init__ = init
        init(self, *args, **kwargs)
    cls.__init__ = __init__


def _build(cls, frozen: bool, eq: bool):
    specs: list[Field] = []
    for name in _annotations(cls):
        value = getattr(cls, name, _MISSING)
        spec = value if isinstance(value, Field) else Field(default=value)
        spec.name = name
        specs.append(spec)
        if isinstance(value, Field):
            if spec.default is _MISSING:
                delattr(cls, name) if name in cls.__dict__ else None
            else:
                setattr(cls, name, spec.default)
    _install_lazy_init(cls, specs)
    cls.__record_fields__ = tuple(specs)
    names = tuple(s.name for s in specs)
    shown = tuple(s.name for s in specs if s.repr)

    def __repr__(self):
        return f"{type(self).__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in shown) + ")"
    cls.__repr__ = __repr__
    if eq:
        def __eq__(self, other):
            if other.__class__ is not self.__class__:
                return NotImplemented
            return all(getattr(self, n) == getattr(other, n) for n in names)
        cls.__eq__ = __eq__
        if frozen:
            cls.__hash__ = lambda self: hash(tuple(getattr(self, n) for n in names))
        else:
            cls.__hash__ = None
    return cls


def dataclass(cls=None, *, frozen: bool = False, eq: bool = True, **_ignored):
    """Decorator compatible with @dataclasses.dataclass for plain records."""
    if cls is None:
        return lambda c: _build(c, frozen, eq)
    return _build(cls, frozen, eq)


def fields(obj_or_cls) -> tuple[Field, ...]:
    return obj_or_cls.__record_fields__


def asdict(obj) -> dict:
    def convert(value):
        if hasattr(value, "__record_fields__"):
            return {f.name: convert(getattr(value, f.name)) for f in value.__record_fields__}
        if isinstance(value, list):
            return [convert(v) for v in value]
        if isinstance(value, tuple):
            return tuple(convert(v) for v in value)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value
    return convert(obj)


def is_record(obj) -> bool:
    return hasattr(obj, "__record_fields__")
