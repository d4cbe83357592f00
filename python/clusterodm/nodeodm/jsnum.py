"""JavaScript number coercion, because NodeODM parses query values and options with JS semantics.

``parse_int``/``parse_float`` return ``None`` where JavaScript would produce ``NaN``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# JS String.prototype.trim whitespace (WhiteSpace + LineTerminator).
_JS_WS = (
    " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_INT_RE = re.compile(r"([+-]?)(0[xX][0-9a-fA-F]+|[0-9]+)")
_FLOAT_RE = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")


class Undefined:
    """JavaScript ``undefined`` (a field that was not sent at all), distinct from ``None`` (JSON null)."""

    _instance: Undefined | None = None

    def __new__(cls) -> Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED = Undefined()


def number_to_str(value: float) -> str:
    """Format a number the way JavaScript's ``String(n)`` does (``5.0`` -> ``"5"``, ``nan`` -> ``"NaN"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exp = text.split("e")
        if mantissa.endswith(".0"):
            mantissa = mantissa[:-2]
        exp_int = int(exp)
        if -7 < exp_int < 21:
            # JS only switches to exponent notation outside [1e-7, 1e21).
            return format(value, "f").rstrip("0").rstrip(".")
        return f"{mantissa}e{'+' if exp_int > 0 else '-'}{abs(exp_int)}"
    return text


def to_js_string(value: Any) -> str:
    """``String(value)`` for JSON-ish Python values."""
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return number_to_str(value)
    if isinstance(value, list | tuple):
        return ",".join("" if v is None or v is UNDEFINED else to_js_string(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def parse_int(value: Any) -> int | None:
    """``parseInt(value)``: leading whitespace, sign, decimal or ``0x`` hex digits; ``None`` for NaN."""
    text = to_js_string(value).lstrip(_JS_WS)
    match = _INT_RE.match(text)
    if match is None:
        return None
    sign, digits = match.groups()
    number = int(digits, 16) if digits[:2].lower() == "0x" else int(digits)
    return -number if sign == "-" else number


def parse_float(value: Any) -> float | None:
    """``parseFloat(value)``: the longest decimal literal prefix; ``None`` for NaN."""
    text = to_js_string(value).lstrip(_JS_WS)
    match = _FLOAT_RE.match(text)
    if match is None:
        return None
    literal = match.group(0).replace("Infinity", "inf")
    return float(literal)


def coerce_line(value: str | None) -> int:
    """Coerce a ``line``/``with_output`` query value: JS parseInt, NaN or missing -> 0."""
    if value is None:
        return 0
    number = parse_int(value)
    return 0 if number is None else number


def slice_lines(lines: Sequence[T], n: int) -> list[T]:
    """Lines from index ``n``; a negative ``n`` gives the last ``|n|`` lines (JS ``Array.slice``)."""
    return list(lines[n:])
