"""Type checks for config values, shared by oci/validate, cgroups/check and security/process.

A config value is what the JSON decoder made: dict, list, str, int, float, bool or
None.  A check returns the value when it has the type (and, for integers, the range)
asked for, else raises the caller's error (hutch.errors.ConfigError) at ``where``.  The tests (true/false is
not an integer, 1.0 is not one either) are here once; the wording of a failure is
each caller's, pinned by its tests and by the runc-compatibility cases, so a caller
makes a :class:`Checker` with its own two message functions.

Layer 0 beside hutch.errors, so it imports nothing of hutch: the caller hands it
the error class.
"""

from __future__ import annotations

# What each check expects, as Checker.wrong_type receives it (ready for a message).
INTEGER, BOOLEAN, OBJECT, ARRAY, STRING = "an integer", "a boolean", "an object", "an array", "a string"


def kind(value) -> str:
    """JSON name of a Python value's type, for messages ("a string", "null", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def is_int(value) -> bool:
    """A JSON integer: an int that is not a bool (True is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


class Checker:
    """The type checks, worded one caller's way.

    wrong_type(value, expected, low, high) words a value of the wrong type (expected is
    INTEGER, BOOLEAN, OBJECT, ARRAY or STRING; low and high are the bounds of an
    integer, else None); out_of_range(value, low, high) an integer outside its bounds.
    A failure raises error(message, where=where, exit_code=exit_code)."""

    def __init__(self, wrong_type, out_of_range, error: type[Exception],
                 exit_code: int | None = None):
        self.wrong_type = wrong_type
        self.out_of_range = out_of_range
        self.error = error
        self.exit_code = exit_code

    def fail(self, where: str, message: str):
        raise self.error(message, where=where, exit_code=self.exit_code)

    def _expect(self, value, types, expected: str, where: str):
        if not isinstance(value, types):
            self.fail(where, self.wrong_type(value, expected, None, None))
        return value

    def integer(self, value, where: str, low: int, high: int) -> int:
        """An integer (not a boolean, not 1.0) within the inclusive bounds."""
        if not is_int(value):
            self.fail(where, self.wrong_type(value, INTEGER, low, high))
        if not low <= value <= high:
            self.fail(where, self.out_of_range(value, low, high))
        return value

    def boolean(self, value, where: str) -> bool:
        return self._expect(value, bool, BOOLEAN, where)

    def object(self, value, where: str) -> dict:
        return self._expect(value, dict, OBJECT, where)

    def array(self, value, where: str) -> list:
        return self._expect(value, list, ARRAY, where)

    def string(self, value, where: str) -> str:
        return self._expect(value, str, STRING, where)
