"""Text that came from a gateway, made safe to show: it can hold anything, escape sequences too."""

from __future__ import annotations

import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A spreadsheet takes a cell starting with one of these for a formula (OWASP's list for CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def printable(text: str) -> str:
    """`text` with its control characters (escape sequences, line breaks, bells) shown as `?`."""
    return _CONTROL.sub("?", text)


def spreadsheet_cell(value: Any) -> Any:
    """A CSV cell no spreadsheet takes for a formula, no terminal for a command; numbers as they are."""
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA_STARTS):
        value = "'" + value
    return printable(value)
