"""hutch.fastjson: valid JSON decodes as json.loads does, dumps is byte-identical to
json.dumps, and every broken document is one ConfigError line with a line and column,
never another exception.

The bug this guards against only shows when `json` is not imported: the C scanner
raises its JSONDecodeError by looking `json.decoder` up in sys.modules, and hutch's
start path never imports json.  pytest has imported it, so every decode here runs
inside `json_unimported()`, which hides the json modules for the duration, as on
the real start path (tests/integration/test_oci_broken_json.py drives the binary)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.bundle import make_config
from hutch import fastjson
from hutch.errors import ConfigError
from hutch.oci.validate import load_config

SRC = Path(__file__).resolve().parents[2] / "src"
ONE_LINE_AT = re.compile(r"^invalid JSON at line (\d+), column (\d+): \S[^\n]*$")


class json_unimported:
    """Hide every json module from sys.modules (as on hutch's start path); put them back after."""

    def __enter__(self):
        self.saved = {name: mod for name, mod in sys.modules.items()
                      if name == "json" or name.startswith("json.")}
        for name in self.saved:
            del sys.modules[name]
        return self

    def __exit__(self, *exc):
        for name in [n for n in sys.modules if n == "json" or n.startswith("json.")]:
            del sys.modules[name]   # what the fallback imported afresh
        sys.modules.update(self.saved)
        return False


def decode(doc, where="config.json"):
    with json_unimported():
        return fastjson.loads(doc, where=where)


def config_error(doc, where="config.json") -> ConfigError:
    """The ConfigError decoding `doc` raises; any other outcome fails the test."""
    try:
        value = decode(doc, where)
    except ConfigError as err:
        assert "\n" not in str(err), f"more than one line: {str(err)!r}"
        assert err.where == where
        return err
    pytest.fail(f"decoded to {value!r:.80}, expected a ConfigError")


# --- broken documents: (document, (line, column) of the problem, a word of the message) ---

BROKEN = {
    "truncated-config": ('{"ociVersion": "1.0.2", "process": {', (1, 37), "property name"),
    "truncated-array": ("[1,2", (1, 5), "delimiter"),
    "truncated-after-key": ('{"a"', (1, 5), "delimiter"),
    "truncated-after-colon": ('{"a":', (1, 6), "value"),
    "unterminated-string": ('{"a": "abc', (1, 7), "Unterminated string"),
    "only-open-brace": ("{", (1, 2), "property name"),
    "missing-colon": ('{"a" 1}', (1, 6), "':' delimiter"),
    "missing-comma": ('{"a":1 "b":2}', (1, 8), "',' delimiter"),
    "missing-comma-multiline": ('{\n  "a": 1\n  "b": 2\n}', (3, 3), "',' delimiter"),
    "trailing-comma-object": ('{"a":1,}', (1, 8), "property name"),
    "trailing-comma-array": ("[1,2,]", (1, 6), "value"),
    "double-comma": ("[1,,2]", (1, 4), "value"),
    "missing-value": ('{"a":}', (1, 6), "value"),
    "single-quotes": ("{'a': 1}", (1, 2), "property name"),
    "bare-key": ("{a: 1}", (1, 2), "property name"),
    "bad-escape": ('{"a": "\\x"}', (1, 8), "escape"),
    "short-unicode-escape": ('"\\u12"', (1, 3), "escape"),
    "backslash-at-end": ('"\\', (1, 1), "Unterminated string"),
    "control-character-in-string": ('"a\tb"', (1, 3), "control character"),
    "nan": ('{"a": NaN}', (1, 7), "NaN"),
    "infinity": ("[Infinity]", (1, 2), "Infinity"),
    "minus-infinity": ('{"memory": -Infinity}', (1, 12), "-Infinity"),
    "deep-arrays": ("[" * 100000, (1, 100000), "nested 100000 levels"),
    "deep-objects": ('{"a":' * 100000, (1, 499996), "nested 100000 levels"),
    "deep-closed-arrays": ("[" * 100000 + "]" * 100000, (1, 100000), "too deep"),
    "lone-high-surrogate": ('"\\ud800"', (1, 2), "lone surrogate"),
    "lone-low-surrogate": ('["ok", "\\uDC00"]', (1, 9), "lone surrogate"),
    "high-surrogate-then-letter": ('"\\ud800\\u0041"', (1, 2), "lone surrogate"),
    "raw-lone-surrogate-in-str": ('"a\ud800"', (1, 3), "surrogate"),
    "bom-str": ("\ufeff{}", (1, 1), "byte order mark"),
    "bom-bytes": (b"\xef\xbb\xbf{}", (1, 1), "byte order mark"),
    "invalid-utf8": (b'{"a": "\xff"}', (1, 8), "UTF-8"),
    "invalid-utf8-multiline": (b'{\n  "a": "\xc3\x28"}', (2, 9), "UTF-8"),
    "utf8-encoded-surrogate": (b'"\xed\xa0\x80"', (1, 2), "UTF-8"),
    "truncated-utf8": (b'"\xc3', (1, 2), "UTF-8"),
    "empty": ("", (1, 1), "value"),
    "empty-bytes": (b"", (1, 1), "value"),
    "whitespace-only": (" \n\t ", (2, 3), "value"),
    "nul-byte": (b"\x00", (1, 1), "value"),
    "comment": ("// config\n{}", (1, 1), "value"),
    "extra-object": ("{} {}", (1, 4), "Extra data"),
    "extra-brace": ('{"a":1}}', (1, 8), "Extra data"),
    "extra-word": ("[1] x", (1, 5), "Extra data"),
    "leading-zero": ("01", (1, 2), "Extra data"),
    "partial-true": ("tru", (1, 1), "value"),
    "integer-too-long": ('{"n": ' + "1" * 5000 + "}", (1, 7), "5000 digits"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_document_is_one_config_error_line_with_position(case):
    doc, (line, column), word = BROKEN[case]
    err = config_error(doc)
    match = ONE_LINE_AT.match(err.message)
    assert match, err.message
    assert (int(match[1]), int(match[2])) == (line, column), err.message
    assert word in err.message


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_config_json_names_the_file(tmp_path, case):
    doc = BROKEN[case][0]
    (tmp_path / "config.json").write_bytes(doc.encode("utf-8", "surrogatepass") if isinstance(doc, str) else doc)
    with json_unimported(), pytest.raises(ConfigError) as info:
        load_config(str(tmp_path))
    assert info.value.where == str(tmp_path / "config.json")
    assert info.value.exit_code == 1
    assert "\n" not in str(info.value)
    assert info.value.message.startswith("invalid JSON at line ")


@pytest.mark.parametrize("value", [None, 42, 1.5, ["{}"], {"a": 1}, memoryview(b"{}")],
                         ids=lambda v: type(v).__name__)
def test_text_that_is_not_str_or_bytes_is_refused(value):
    err = config_error(value)
    assert err.message == f"JSON text must be str or bytes, not {type(value).__name__}"


@pytest.mark.parametrize("doc, kind", [
    ("[]", "an array"), ('["a"]', "an array"), ('"config"', "a string"), ("null", "null"),
    ("0", "a number"), ("true", "a boolean"),
])
def test_valid_document_that_is_not_an_object(tmp_path, doc, kind):
    (tmp_path / "config.json").write_text(doc)
    with json_unimported(), pytest.raises(ConfigError) as info:
        load_config(str(tmp_path))
    assert str(info.value) == f"{tmp_path / 'config.json'}: must hold a JSON object, not {kind}"


def test_load_file_names_the_file_it_cannot_read(tmp_path):
    with pytest.raises(ConfigError) as info:
        fastjson.load_file(str(tmp_path / "missing.json"))
    assert str(info.value) == f"{tmp_path / 'missing.json'}: no such file"
    with pytest.raises(ConfigError) as info:
        fastjson.load_file(str(tmp_path), where="--process")
    assert str(info.value) == "--process: cannot read: Is a directory"


def test_the_start_path_itself_never_tracebacks():
    """In a fresh `python -I -S` (as the hutch launcher runs), json is not imported
    until a document is broken, and a broken one is a ConfigError."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from hutch import fastjson\n"
        "from hutch.errors import ConfigError\n"
        "assert fastjson.loads('{\"a\": [1, 2]}') == {'a': [1, 2]}\n"
        "assert 'json' not in sys.modules\n"
        "try:\n"
        "    fastjson.loads('{\"ociVersion\": \"1.0.2\", \"process\": {', where='config.json')\n"
        "except ConfigError as err:\n"
        "    print(err)\n"
    )
    res = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(SRC)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ("config.json: invalid JSON at line 1, column 37: "
                          "Expecting property name enclosed in double quotes\n")


# --- valid documents: identical to json ------------------------------------------------

VALID = [
    json.dumps(make_config(["sh", "-c", "echo hi"]), indent=2),
    '{"hostname": "h\\u00e9llo", "raw": "h\u00e9llo \u4e2d\u6587 \U0001f600", "pair": "\\ud83d\\ude00"}',
    '{"big": 123456789012345678901234567890, "neg": -170141183460469231731687303715884105728}',
    '[0.1, 1e308, 5e-324, 1.7976931348623157e308, -0.0, 1E400, 2.5e-10, 0, -0]',
    ' \n\t{"a": {"b": [[], {}, [null, true, false]]}, "a": "duplicate: last wins"}\r\n',
    '"\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000"',
    "[" * 200 + "]" * 200,
    "null",
]


@pytest.mark.parametrize("doc", VALID, ids=range(len(VALID)))
def test_valid_documents_decode_as_json_loads(doc):
    expected = json.loads(doc)
    assert repr(decode(doc)) == repr(expected)   # repr: -0.0, inf and int/float kinds too
    assert repr(decode(doc.encode())) == repr(expected)


DUMPED = [
    make_config(["sh"]),
    {"unicode": "h\u00e9llo \u4e2d\u6587 \U0001f600", "ctl": "\x00\x1f\x7f", "quote": '"\\/'},
    {"big": 2 ** 200, "neg": -(2 ** 70), "floats": [0.1, 1e308, 5e-324, -0.0, 1e22, 123456789.125]},
    [None, True, False, [], {}, "", 0],
    {1: "int key", "nested": {"a": [{"b": [1, 2, {"c": None}]}]}},
]


@pytest.mark.parametrize("obj", DUMPED, ids=range(len(DUMPED)))
def test_dumps_is_byte_identical_to_compact_json_dumps(obj):
    assert fastjson.dumps(obj) == json.dumps(obj, separators=(",", ":"))


# --- properties: truncations and mutations of a real config.json ------------------------

REAL_CONFIG = json.dumps(make_config(["sh", "-c", "echo h\u00e9llo"]), indent="\t",
                         ensure_ascii=False).encode()


def parses_or_config_error(doc: bytes) -> None:
    """The property: a value (the one json.loads gives) or a one-line ConfigError."""
    try:
        value = decode(doc)
    except ConfigError as err:
        assert "\n" not in str(err)
        assert err.message.startswith("invalid JSON")
        return
    assert repr(value) == repr(json.loads(doc.decode("utf-8")))


def test_every_prefix_of_a_real_config_is_a_config_error():
    for end in range(len(REAL_CONFIG)):
        try:
            prefix = REAL_CONFIG[:end]
            err = config_error(prefix)
        except BaseException:
            print(f"prefix of {end} bytes: {REAL_CONFIG[:end][-40:]!r}")
            raise
        assert err.message.startswith("invalid JSON at line "), (end, err.message)


_mutation = st.tuples(st.integers(0, len(REAL_CONFIG) - 1),
                      st.sampled_from(["replace", "insert", "delete"]),
                      st.integers(0, 255))


def mutate(doc: bytes, edits) -> bytes:
    data = bytearray(doc)
    for pos, how, byte in edits:
        pos = min(pos, len(data) - 1)
        if how == "replace":
            data[pos] = byte
        elif how == "insert":
            data.insert(pos, byte)
        elif len(data) > 1:
            del data[pos]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_mutation, min_size=1, max_size=4))
def test_random_byte_mutations_parse_or_are_config_errors(edits):
    parses_or_config_error(mutate(REAL_CONFIG, edits))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, len(REAL_CONFIG)), st.lists(_mutation, max_size=2))
def test_truncated_and_mutated_configs_parse_or_are_config_errors(end, edits):
    parses_or_config_error(mutate(REAL_CONFIG, edits)[:end])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_parse_or_are_config_errors(doc):
    parses_or_config_error(doc)


# --- the other readers of user JSON: exec --process, update --resources ----------------

@pytest.mark.parametrize("doc, words", [
    (b'{"args": ["true"], "cwd": "/', "line 1, column 27: Unterminated string"),
    (b'["true"]', "must hold a JSON object, not an array"),
    (b'{"args": ["\xff"]}', "not valid UTF-8"),
    (b"", "line 1, column 1: Expecting value"),
])
def test_exec_process_file_is_one_line_naming_it(tmp_path, doc, words):
    from hutch.oci.execproc import load_process_file
    path = tmp_path / "process.json"
    path.write_bytes(doc)
    with json_unimported(), pytest.raises(ConfigError) as info:
        load_process_file(str(path))
    assert info.value.where == f"--process {path}"
    assert words in info.value.message and "\n" not in str(info.value)


@pytest.mark.parametrize("doc, words", [
    (b'{"memory": {"limit": NaN}}', "line 1, column 22: NaN is not valid JSON"),
    (b'{"pids": {"limit": 10}', "line 1, column 23: Expecting ',' delimiter"),
    (b"[" * 100000, "too deep"),
    (b"null", "must hold a JSON object, not null"),
])
def test_update_resources_file_is_one_line_naming_it(tmp_path, monkeypatch, doc, words):
    from hutch.cli.cgroups import _read_resources
    path = tmp_path / "resources.json"
    path.write_bytes(doc)
    with json_unimported(), pytest.raises(ConfigError) as info:
        _read_resources(str(path))
    assert info.value.where == f"--resources {path}"
    assert words in info.value.message and "\n" not in str(info.value)

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(doc)))   # update reads its bytes
    with json_unimported(), pytest.raises(ConfigError) as info:
        _read_resources("-")
    assert info.value.where == "--resources -" and words in info.value.message


def test_broken_document_where_json_cannot_be_imported(monkeypatch):
    """A container child after pivot_root imports nothing: still a ConfigError."""
    import builtins
    real_import = builtins.__import__

    def no_json(name, *args, **kw):
        if name == "json" or name.startswith("json."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_json)
    err = config_error('{"m": "half')
    assert err.message == "invalid JSON"
