"""The ownership journal (oci/owned.py) and the fault-injection steps (faults.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hutch.errors import HutchError
from hutch import faults
from hutch.oci import owned

SRC = Path(__file__).resolve().parents[2] / "src" / "hutch"


def test_entries_come_back_in_order_with_their_latest_data(tmp_path):
    owned.record(str(tmp_path), {"kind": "cgroup", "driver": "v1", "created": []})
    owned.record(str(tmp_path), {"kind": "process", "pid": 7, "start": 1})
    owned.record(str(tmp_path), {"kind": "cgroup", "driver": "v1", "created": ["/x"]})
    entries = owned.read(str(tmp_path))
    assert [e["kind"] for e in entries] == ["cgroup", "process"]   # the cgroup keeps its place
    assert entries[0]["created"] == ["/x"]


def test_a_torn_last_line_is_ignored_quietly_a_damaged_one_is_reported(tmp_path):
    owned.record(str(tmp_path), {"kind": "file", "key": "file:/a", "path": "/a"})
    journal = tmp_path / owned.JOURNAL
    with open(journal, "a") as f:
        f.write('{"kind": "file", "pa')          # the runtime killed while appending
    warnings = []
    assert [e["path"] for e in owned.read(str(tmp_path), warnings.append)] == ["/a"]
    assert warnings == []
    journal.write_text('garbage\n{"kind": "file", "key": "f", "path": "/b"}\n')
    assert [e["path"] for e in owned.read(str(tmp_path), warnings.append)] == ["/b"]
    assert len(warnings) == 1 and "line 1" in warnings[0] and "\n" not in warnings[0]


def test_undo_runs_in_reverse_and_goes_on_after_a_failure(monkeypatch):
    done = []
    monkeypatch.setitem(owned.UNDO, "a", lambda e: done.append("a"))
    monkeypatch.setitem(owned.UNDO, "b", lambda e: (_ for _ in ()).throw(HutchError("busy")))
    monkeypatch.setitem(owned.UNDO, "c", lambda e: done.append("c"))
    warnings = []
    owned.undo_all([{"kind": "a"}, {"kind": "b"}, {"kind": "c"}, {"kind": "nope"}], warnings.append)
    assert done == ["c", "a"]
    assert any("busy" in w for w in warnings) and any("unknown kind" in w for w in warnings)


def test_undo_of_things_never_made_is_not_an_error(tmp_path):
    warnings = []
    owned.undo_all([{"kind": "file", "path": str(tmp_path / "never")},
                    {"kind": "process", "pid": 0, "start": None}], warnings.append)
    assert warnings == []


def test_a_kind_without_an_undo_is_refused_before_it_is_written(tmp_path):
    with pytest.raises(HutchError):
        owned.record(str(tmp_path), {"kind": "no-such-kind"})
    assert not (tmp_path / owned.JOURNAL).exists()


def _step_calls() -> list[tuple[str, str]]:
    calls = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "step"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                calls.append((node.args[0].value, f"{path.relative_to(SRC)}:{node.lineno}"))
    return calls


def test_every_fault_step_in_the_code_is_listed_and_every_listed_step_exists():
    calls = _step_calls()
    used = {name for name, _ in calls}
    assert not [where for name, where in calls if name not in faults.STEPS], "steps missing from STEPS"
    assert used == set(faults.STEPS)
    assert len(faults.STEPS) == len(set(faults.STEPS))
