"""JSON on the container-start path without importing `json`.

`import json` pulls in `re` and `enum` and costs about 6 ms here, a seventh of
runc's whole start time.  The C accelerator `_json` that `json` itself uses has
everything needed: `make_scanner` for decoding and `make_encoder` for encoding.
This module wires them up the way json.decoder/json.encoder do, for
config.json and state.json.  Output is compact and byte-for-byte what
`json.dumps(obj, separators=(",", ":"))` would give (ensure_ascii)."""

from __future__ import annotations

import _json

from hutch.errors import ConfigError


class _DecoderContext:
    """The attributes _json.make_scanner reads from a json.JSONDecoder."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str):
        raise ValueError(f"{name} is not valid JSON")


_scan = _json.make_scanner(_DecoderContext())
_WHITESPACE = " \t\n\r"


def loads(text: str, where: str = "JSON"):
    """Decode text; errors become ConfigError naming `where` with line and column."""
    end = len(text)
    i = 0
    while i < end and text[i] in _WHITESPACE:
        i += 1
    try:
        value, i = _scan(text, i)
    except StopIteration as exc:
        raise _error(text, exc.value, where, "expecting a value") from None
    except ValueError as exc:
        if hasattr(exc, "lineno"):   # json.JSONDecodeError, raised by the C scanner
            raise ConfigError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                              where=where) from None
        raise ConfigError(f"invalid JSON: {exc}", where=where) from None
    while i < end and text[i] in _WHITESPACE:
        i += 1
    if i != end:
        raise _error(text, i, where, "extra data")
    return value


def _error(text: str, pos: int, where: str, what: str) -> ConfigError:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return ConfigError(f"invalid JSON at line {line}, column {column}: {what}", where=where)


def _floatstr(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"cannot encode {value!r} in JSON")
    return float.__repr__(value)


def _default(obj):
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_encode = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None, ":", ",",
                             False, False, False)


def dumps(obj) -> str:
    return "".join(_encode(obj, 0))
