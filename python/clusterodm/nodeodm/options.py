"""NodeODM option validation (spec 1.5) and the auto-added post-processing options (spec 1.6).

The algorithm mirrors NodeODM so that errors are byte-for-byte identical: for every option the node
knows, in node order, a user-supplied value is converted to the option's type, then checked against
its domain; errors are collected and reported as one message that is itself a JSON string.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clusterodm.nodeodm import v8json
from clusterodm.nodeodm.jsnum import UNDEFINED, parse_float, parse_int, to_js_string

NodeOption = Mapping[str, Any]
"""One descriptor of ``GET /options``: ``name``, ``type``, ``value``, ``domain``, ``help``."""

POST_PROCESSING_OPTIONS = ("pc-ept", "cog", "gltf")


@dataclass(frozen=True)
class OptionsOk:
    """Validated options: ``[{"name": ..., "value": ...}]`` with typed values, in node option order."""

    options: list[dict[str, Any]]


@dataclass(frozen=True)
class OptionsError:
    """Validation failed; ``message`` is what NodeODM puts in ``{"error": ...}``."""

    message: str


OptionsResult = OptionsOk | OptionsError


class _ValidationError(Exception):
    pass


def _to_bool(value: Any) -> bool:
    if value is True or value == "true" or value == "1":
        return True
    if value is False or value == "false" or value == "0":
        return False
    raise _ValidationError(f"Cannot convert {to_js_string(value)} to boolean")


def _as_number(value: float | None) -> float:
    return math.nan if value is None else value


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "int": lambda v: _as_number(parse_int(v)),
    "float": lambda v: _as_number(parse_float(v)),
    "bool": _to_bool,
    "string": lambda v: v,
    "enum": lambda v: v,
    "path": lambda v: v,
}


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _cmp(value: Any, op: str, bound: float) -> bool:
    # JS relational operators on a non-number (or NaN) are false for our purposes.
    if not _is_num(value) or math.isnan(value):
        return False
    return {"<": value < bound, "<=": value <= bound, ">": value > bound, ">=": value >= bound}[op]


def _check_sign_or_kind(match: re.Match[str], value: Any) -> bool:
    sign, kind = match.group(1), match.group(2)
    if sign == "positive ":
        return _cmp(value, ">=", 0)
    if sign == "negative ":
        return _cmp(value, "<=", 0)
    if kind == "integer":
        return _is_num(value) and math.isfinite(value) and float(value).is_integer()
    return _is_num(value) and math.isfinite(value)


def _check_range(match: re.Match[str], value: Any) -> bool:
    kind, lower, upper = match.groups()
    parse = parse_float if kind == "float" else parse_int
    low, high = _as_number(parse(lower)), _as_number(parse(upper))
    return _cmp(value, ">=", low) and _cmp(value, "<=", high)


def _check_bound(match: re.Match[str], value: Any) -> bool:
    _, op, bound = match.groups()
    return _cmp(value, op, _as_number(parse_float(bound)))


def _check_json(match: re.Match[str], value: Any) -> bool:
    if not isinstance(value, str):
        # JSON.parse(String(value)): numbers/bools/null stringify to valid JSON, undefined does not.
        return value is not UNDEFINED and not isinstance(value, dict | list)
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


_DOMAIN_CHECKS: list[tuple[re.Pattern[str], Callable[[re.Match[str], Any], bool]]] = [
    (re.compile(r"^(positive |negative )?(integer|float)$"), _check_sign_or_kind),
    (re.compile(r"^percent$"), lambda m, v: _cmp(v, ">=", 0) and _cmp(v, "<=", 100)),
    (re.compile(r"^(float|integer): ([\-+.\d]+) <= x <= ([\-+.\d]+)$"), _check_range),
    (re.compile(r"^(float|integer) (>|<|<=|>=) ([\-+.\d]+)$"), _check_bound),
    (re.compile(r"^(string|path)$"), lambda m, v: True),
    (re.compile(r"^json$"), _check_json),
]


def _check_domain(domain: Any, value: Any) -> None:
    if isinstance(domain, list):
        if not any(_js_strict_equal(item, value) for item in domain):
            raise _ValidationError(f"Invalid value {to_js_string(value)} (not in enum)")
        return
    for pattern, check in _DOMAIN_CHECKS:
        match = pattern.match(domain)
        if match is not None:
            if not check(match, value):
                raise _ValidationError(f"Invalid value {to_js_string(value)} (out of range)")
            return
    raise _ValidationError(f"Domain value cannot be handled: '{domain}' : '{to_js_string(value)}'")


def _js_strict_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _is_num(a) and _is_num(b):
        return a == b
    return type(a) is type(b) and a == b


def _json_value(value: Any) -> Any:
    """Typed value as JSON.stringify would emit it (integral floats as ints, NaN as null)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer():
            return int(value)
    return value


def parse_supplied(supplied: Any) -> list[Any] | OptionsError:
    """Accept a list or a JSON string of a list; anything else counts as no options."""
    if isinstance(supplied, str):
        try:
            supplied = v8json.loads(supplied)
        except v8json.JsonError as exc:
            return OptionsError(str(exc))
    return supplied if isinstance(supplied, list) else []


def validate_options(node_options: Sequence[NodeOption], supplied: Any) -> OptionsResult:
    """Validate user options against the node's option list, exactly like NodeODM does."""
    parsed = parse_supplied(supplied)
    if isinstance(parsed, OptionsError):
        return parsed
    for item in parsed:
        if item is None:
            return OptionsError("Cannot read properties of null (reading 'name')")
    result: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    for node_option in node_options:
        name = node_option["name"]
        chosen = next((o for o in parsed if isinstance(o, dict) and o.get("name") == name), None)
        if chosen is None:
            continue
        raw = chosen.get("value", UNDEFINED)
        try:
            converter = _CONVERTERS.get(node_option["type"])
            if converter is None:
                raise _ValidationError("typeConversion[odmOption.type] is not a function")
            value = converter(raw)
            domain = node_option.get("domain")
            if domain:
                _check_domain(domain, value)
        except _ValidationError as exc:
            errors.append({"name": name, "error": str(exc)})
            continue
        entry: dict[str, Any] = {"name": name}
        if value is not UNDEFINED:
            entry["value"] = _json_value(value)
        result.append(entry)
    if errors:
        return OptionsError(json.dumps(errors, separators=(",", ":"), ensure_ascii=False))
    return OptionsOk(result)


def add_post_processing_options(
    options: list[dict[str, Any]], node_options: Sequence[NodeOption], skip_post_processing: bool
) -> list[dict[str, Any]]:
    """Append ``pc-ept``, ``cog``, ``gltf`` = true if the node knows them and the user did not set them."""
    if skip_post_processing:
        return list(options)
    known = {o["name"] for o in node_options}
    present = {o["name"] for o in options}
    extra = [{"name": n, "value": True} for n in POST_PROCESSING_OPTIONS if n in known and n not in present]
    return [*options, *extra]
