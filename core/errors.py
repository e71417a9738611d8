"""The one error type users see for bad input: it names the field and the reason."""

from __future__ import annotations

import reprlib

# An error line quotes at most this much of a value, a field path or a reason: a value can be a
# megabyte long (an id from a hostile file, an alias-expanded list), the line stays readable.
EXCERPT_CHARS = 60
FIELD_CHARS = 160
REASON_CHARS = 300

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = _repr.maxlong = EXCERPT_CHARS
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6
_repr.maxlevel = 3


# Every character str.splitlines breaks a line at, written as an escape: an error is one line.
_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped (``\\n``): a value from the input cannot split an error."""
    return text.translate(_LINE_BREAKS)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def excerpt(value: object) -> str:
    """A short ``repr`` of ``value`` for an error message: long strings, big numbers and long or
    deep containers are cut (the one place error messages quote values from the input)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        # repr of a huge int costs quadratic time (and fails past 4300 digits): say its size.
        sign = "a negative" if value < 0 else "an"
        return f"{sign} integer of about {int(value.bit_length() * 0.30103):,} digits"
    try:
        return shorten(_repr.repr(value), EXCERPT_CHARS)
    except (ValueError, RecursionError):
        return f"a {type(value).__name__} value"


class SpecError(ValueError):
    """A workload, cluster or setting that cannot be used.

    ``field`` is a path into the input (``tasks[3].work``, ``links[a,b].bandwidth``),
    ``reason`` says what is wrong in words a user can act on. Both are kept to one line and cut
    to a bounded length (``FIELD_CHARS``, ``REASON_CHARS``), so the error stays one short line
    whatever the input.
    """

    def __init__(self, field: str, reason: str):
        self.field = shorten(one_line(str(field)), FIELD_CHARS)
        self.reason = shorten(one_line(str(reason)), REASON_CHARS)
        super().__init__(f"{self.field}: {self.reason}")
