"""hutch.checks: the type checks behind oci/validate, cgroups/check and security/process,
each worded as its caller always has."""

from __future__ import annotations

import pytest

from hutch import checks
from hutch.cgroups import check as cgroups_check
from hutch.errors import EXIT_OCI_ERROR, ConfigError
from hutch.oci import validate
from hutch.security import process


@pytest.mark.parametrize("value, name", [
    (None, "null"), (True, "a boolean"), (0, "a number"), (1.5, "a number"), ("", "a string"),
    ([], "an array"), ({}, "an object"),
])
def test_kind(value, name):
    assert checks.kind(value) == name


def test_is_int():
    assert checks.is_int(0) and checks.is_int(-(1 << 70))
    assert not checks.is_int(True) and not checks.is_int(1.0) and not checks.is_int("1")


def error(check, *args) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        check(*args)
    return info.value


def test_checker_returns_good_values_and_words_bad_ones():
    seen = []
    checker = checks.Checker(lambda *a: seen.append(a) or "wrong", lambda *a: seen.append(a) or "range",
                             ConfigError, 7)
    assert checker.integer(3, "w", 0, 3) == 3
    assert checker.object({}, "w") == {} and checker.array([], "w") == [] and checker.string("", "w") == ""
    assert checker.boolean(False, "w") is False
    err = error(checker.integer, True, "x.y", 0, 3)
    assert (err.message, err.where, err.exit_code) == ("wrong", "x.y", 7)
    assert error(checker.integer, 4, "w", 0, 3).message == "range"
    assert error(checker.boolean, 0, "w").message == "wrong"
    assert seen == [(True, checks.INTEGER, 0, 3), (4, 0, 3), (0, checks.BOOLEAN, None, None)]


# The three wordings, as their tests and the runc cases pin them.

def test_oci_wording():
    err = error(validate._int, 1.0, "process.user.uid", (0, 3))
    assert (str(err), err.exit_code) == ("process.user.uid: must be an integer, not a number (1.0)",
                                         EXIT_OCI_ERROR)
    assert error(validate._int, 9, "w", (0, 3)).message == "9 is out of range (0..3)"
    assert error(validate._bool, "yes", "w").message == "must be a boolean (true or false), not a string"
    assert error(validate._obj, [], "w").message == "must be an object, not an array"
    assert error(validate._list, None, "w").message == "must be an array, not null"
    assert error(validate._str, 1, "w").message == "must be a string, not a number"


def test_cgroups_wording():
    assert error(cgroups_check._int, "1", "w", 0, 3).message == "invalid value '1': expected an integer"
    assert error(cgroups_check._int, 9, "w", 0, 3).message == "invalid value 9: must be between 0 and 3"
    assert error(cgroups_check._bool, 1, "w").message == "invalid value 1: expected true or false"
    assert error(cgroups_check._dict, [], "w").message == "invalid value []: expected an object"
    assert error(cgroups_check._list, {}, "w").message == "invalid value {}: expected an array"
    assert error(cgroups_check._int, 9, "w", 0, 3).exit_code is None


def test_process_wording():
    assert error(process._int, True, "w", 0, 7).message == "must be an integer in [0, 7], not True"
    assert error(process._int, 8, "w", 0, 7).message == "must be an integer in [0, 7], not 8"
    assert error(process._object, [], "w").message == "must be an object"
    assert process._object(None, "w") == {}
