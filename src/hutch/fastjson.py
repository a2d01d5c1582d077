"""JSON on the container-start path without importing `json`.

`import json` pulls in `re` and `enum` and costs about 6 ms here, a seventh of
runc's whole start time.  The C accelerator `_json` that `json` itself uses has
everything needed: `make_scanner` for decoding and `make_encoder` for encoding.
This module wires them up the way json.decoder/json.encoder do, for
config.json and state.json.  Output is compact and byte-for-byte what
`json.dumps(obj, separators=(",", ":"))` would give (ensure_ascii).

Decoding fails closed: every malformed document, whatever the C scanner does with
it, becomes one :class:`ConfigError` line ``invalid JSON at line L, column C: ...``
naming the file.  The C scanner cannot say what went wrong by itself: it raises
its JSONDecodeError by looking `json.decoder` up in sys.modules, which is not
there, and then fails with a SystemError.  So on any failure the standard parser
(imported only then) parses the text again to describe the error."""

from __future__ import annotations

import _json

from hutch.checks import kind
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
_BYTE_ORDER_MARK = "\ufeff"


# --- decoding ----------------------------------------------------------------------

def loads(text: str | bytes, where: str = "JSON"):
    """Decode `text` (str, or bytes in UTF-8); any problem is one ConfigError naming `where`."""
    text = _as_text(text, where)
    try:
        value = _scan_document(text)
    except Exception:   # anything at all, even a SystemError: the standard parser explains it
        return _parse_slowly_or_explain(text, where)
    _refuse_lone_surrogates(text, where)
    return value


def load_file(path: str, where: str | None = None):
    """Read and decode the JSON file `path`; any problem is one ConfigError naming the file."""
    where = where or path
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigError("no such file", where=where) from None
    except OSError as err:
        raise ConfigError(f"cannot read: {err.strerror or err}", where=where) from None
    return loads(raw, where=where)


def require_object(value, where: str) -> dict:
    """`value` if it is a JSON object; else one line saying what the document holds instead."""
    if not isinstance(value, dict):
        raise ConfigError(f"must hold a JSON object, not {kind(value)}", where=where)
    return value


def _as_text(text, where: str) -> str:
    if isinstance(text, str):
        return text
    if isinstance(text, (bytes, bytearray)):
        return _decode_utf8(bytes(text), where)
    raise ConfigError(f"JSON text must be str or bytes, not {type(text).__name__}", where=where)


def _decode_utf8(raw: bytes, where: str) -> str:
    """Strict UTF-8, as JSON requires.  (Go's decoder, runc's, turns bad bytes inside
    strings into U+FFFD; hutch refuses them rather than run a container with
    silently changed names or arguments.)"""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        line = raw.count(b"\n", 0, err.start) + 1
        column = len(raw[line_start:err.start].decode("utf-8")) + 1   # valid up to err.start
        raise _error_at(line, column, f"not valid UTF-8 (byte 0x{raw[err.start]:02x})", where) from None


def _scan_document(text: str):
    """The fast path: one value, surrounded by nothing but whitespace."""
    end = len(text)
    i = 0
    while i < end and text[i] in _WHITESPACE:
        i += 1
    value, i = _scan(text, i)
    while i < end and text[i] in _WHITESPACE:
        i += 1
    if i != end:
        raise ValueError("extra data")
    return value


# --- describing what is wrong (only ever on malformed input: `json` may be imported) ---

class _NonFiniteNumber(ValueError):
    """NaN or Infinity: Python's json accepts them, JSON (and runc) do not."""


class _IntegerTooLong(ValueError):
    """More digits than int() converts (sys.get_int_max_str_digits())."""


def _refuse_constant(name: str):
    raise _NonFiniteNumber(name)


def _int_or_refuse(digits: str) -> int:
    try:
        return int(digits)
    except ValueError:
        raise _IntegerTooLong(digits) from None


def _parse_slowly_or_explain(text: str, where: str):
    """Parse `text` with the standard parser: its value if it succeeds (the fast path
    failed for a reason of its own), else one ConfigError saying where and what."""
    if text.startswith(_BYTE_ORDER_MARK):
        # json would say "decode using utf-8-sig", Python advice that helps no user.
        raise _error_at(1, 1, "a byte order mark (U+FEFF) is not allowed at the start of JSON", where)
    try:
        import json
    except ImportError:   # in a container child after pivot_root: no module can be imported
        raise ConfigError("invalid JSON", where=where) from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_int=_int_or_refuse)
    except json.JSONDecodeError as err:
        raise _error_at(err.lineno, err.colno, _without_position_suffix(err.msg), where) from None
    except _NonFiniteNumber as err:
        raise _error_at_pos(text, _find_token(text, str(err)), f"{err} is not valid JSON", where) from None
    except _IntegerTooLong as err:
        raise _error_at_pos(text, _find_token(text, str(err)),
                            f"integer with {len(str(err).lstrip('-'))} digits is too long", where) from None
    except RecursionError:
        depth, pos = _deepest_nesting(text)
        raise _error_at_pos(text, pos, f"arrays and objects nested {depth} levels deep, too deep to parse",
                            where) from None
    except Exception as err:   # nothing else is known to happen; still one line, never a traceback
        raise ConfigError(f"invalid JSON: {_one_line(err)}", where=where) from None
    _refuse_lone_surrogates(text, where)
    return value


def _error_at(line: int, column: int, what: str, where: str) -> ConfigError:
    return ConfigError(f"invalid JSON at line {line}, column {column}: {what}", where=where)


def _error_at_pos(text: str, pos: int | None, what: str, where: str) -> ConfigError:
    if pos is None:
        return ConfigError(f"invalid JSON: {what}", where=where)
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return _error_at(line, column, what, where)


def _without_position_suffix(msg: str) -> str:
    """json's "Unterminated string starting at" expects a position after it; ours is before."""
    return msg.removesuffix(" starting at").removesuffix(" at")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _outside_strings(text: str):
    """(index, character) for every character that is not inside a string literal."""
    i, end = 0, len(text)
    while i < end:
        if text[i] == '"':
            i = _string_end(text, i)
        else:
            yield i, text[i]
            i += 1


def _string_end(text: str, opening: int) -> int:
    """Index just past the string literal that starts at `opening` (or the text's end)."""
    j = opening + 1
    while True:
        j = text.find('"', j)
        if j == -1:
            return len(text)
        backslashes = 0
        while text[j - 1 - backslashes] == "\\":
            backslashes += 1
        if backslashes % 2 == 0:
            return j + 1
        j += 1


def _find_token(text: str, token: str) -> int | None:
    """Where `token` (a number or constant) first starts outside string literals."""
    for i, _ in _outside_strings(text):
        if text.startswith(token, i):
            return i
    return None


def _deepest_nesting(text: str) -> tuple[int, int | None]:
    """The deepest nesting of [ and { and where it is first reached."""
    depth = deepest = 0
    where = None
    for i, ch in _outside_strings(text):
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest, where = depth, i
        elif ch in "]}":
            depth -= 1
    return deepest, where


# A lone surrogate (\ud800 with no low half after it) decodes to a str that cannot
# be encoded to UTF-8: it would fail much later, in execve or a write, with a
# traceback.  Both Python's json and Go's accept it; hutch refuses it here.
def _refuse_lone_surrogates(text: str, where: str) -> None:
    if "\\ud" in text or "\\uD" in text:   # cheap: almost every document skips the scan
        pos = _lone_surrogate_escape(text)
        if pos is not None:
            raise _error_at_pos(text, pos, f"{text[pos:pos + 6]} is a lone surrogate, not a character",
                                where)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:   # only a str handed in by Python code can hold one
            raise _error_at_pos(text, err.start, f"lone surrogate U+{ord(text[err.start]):04X}",
                                where) from None


def _lone_surrogate_escape(text: str) -> int | None:
    """Index of the first \\uXXXX escape that is half a surrogate pair, in a document
    already known to parse (so every backslash starts an escape inside a string)."""
    i = text.find("\\")
    while i != -1:
        if text[i + 1] != "u":
            i = text.find("\\", i + 2)
            continue
        code = int(text[i + 2:i + 6], 16)
        if 0xD800 <= code <= 0xDBFF and _is_low_surrogate_escape(text, i + 6):
            i = text.find("\\", i + 12)
            continue
        if 0xD800 <= code <= 0xDFFF:
            return i
        i = text.find("\\", i + 6)
    return None


def _is_low_surrogate_escape(text: str, i: int) -> bool:
    return text.startswith("\\u", i) and 0xDC00 <= int(text[i + 2:i + 6], 16) <= 0xDFFF


# --- encoding ----------------------------------------------------------------------

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
