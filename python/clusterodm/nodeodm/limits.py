"""Per-token option limits (spec 2.6): what `/options` shows a user and how their task options are adjusted.

Two halves of one policy. `limit_option_list` shapes the node's option list the user sees and is validated
against (`remove`, `domain`, `value`, and `max-concurrency` always hidden once option limits exist).
`augment_user_options` adjusts the user's supplied options before that validation (`assure`, `between`,
`value: "true"`). Neither mutates its inputs: node option lists are cached and shared.
`check_task_options` puts the two together with NodeODM's validation: the one path every task's
options take before they reach a node.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from clusterodm.nodeodm.options import OptionsError, parse_supplied, validate_options


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-token limits (spec 2.6); None means unlimited. Providers (`cluster/providers.py`) say
    which apply to a token."""

    max_images: int | None = None
    max_concurrent_tasks: int | None = None
    options: dict[str, dict[str, Any]] | None = None


NO_LIMITS = Limits()

_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

ALWAYS_HIDDEN = "max-concurrency"
"""A node-wide resource knob: users with option limits may not pick it (ClusterODM removes it too)."""


def limit_option_list(options: list[dict[str, Any]], limits: Limits) -> list[dict[str, Any]]:
    """The node's `/options` list as this token sees it: removed entries gone, domains/defaults replaced."""
    if limits.options is None:
        return [dict(o) for o in options]
    result: list[dict[str, Any]] = []
    for option in options:
        name = option.get("name")
        if name == ALWAYS_HIDDEN:
            continue
        limit = limits.options.get(name) if isinstance(name, str) else None
        if not isinstance(limit, Mapping):
            result.append(dict(option))
            continue
        if limit.get("remove"):
            continue
        shown = dict(option)
        if "domain" in limit and limit["domain"] is not None:
            shown["domain"] = limit["domain"]
        if "value" in limit and limit["value"] is not None:
            shown["value"] = limit["value"]
        result.append(shown)
    return result


def _loose_equal(a: Any, b: Any) -> bool:
    """JavaScript `==` for the JSON-ish values an option can hold (`"5" == 5`, `true == 1`)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    num_a, num_b = _to_number(a), _to_number(b)
    return num_a is not None and num_b is not None and num_a == num_b


def _to_number(value: Any) -> float | None:
    """`Number(value)` for strings, numbers and booleans; None where JS gives NaN."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0.0
        # Number() refuses trailing garbage, unlike parseFloat.
        return float(text) if _NUMBER_RE.fullmatch(text) else None
    return None


def _plain(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def _parse_user_options(user_options: Any) -> list[dict[str, Any]]:
    if isinstance(user_options, str):
        try:
            user_options = json.loads(user_options)
        except ValueError:
            return []
    if not isinstance(user_options, list):
        return []
    return [dict(o) for o in user_options if isinstance(o, dict)]


def augment_user_options(user_options: list[dict[str, Any]], limits: Limits) -> list[dict[str, Any]]:
    """The user's options after the token's `assure`, `between` and `value: "true"` rules.

    A value that is not a number is left for validation to reject rather than clamped to NaN.
    """
    options = _parse_user_options(user_options)
    if not limits.options:
        return options
    for name, limit in limits.options.items():
        if not isinstance(limit, Mapping):
            continue
        if limit.get("remove"):
            options = [o for o in options if o.get("name") != name]
            continue
        current = next((o for o in options if o.get("name") == name), None)
        if current is None and limit.get("assure") and limit.get("value") is not None:
            current = {"name": name, "value": limit["value"]}
            options.append(current)
        if current is None:
            continue
        between = limit.get("between")
        if isinstance(between, Mapping):
            _apply_between(current, between)
        if limit.get("value") == "true":
            current["value"] = True
    return options


def _apply_between(option: dict[str, Any], between: Mapping[str, Any]) -> None:
    low, high, trigger = between.get("min"), between.get("max"), between.get("max_if_equal_to")
    if high is not None and trigger is not None and _loose_equal(option.get("value"), trigger):
        option["value"] = high
    if low is not None and high is not None:
        value = _to_number(option.get("value"))
        low_n, high_n = _to_number(low), _to_number(high)
        if value is not None and low_n is not None and high_n is not None:
            option["value"] = _plain(max(low_n, min(high_n, value)))


def check_task_options(
    node_options: list[dict[str, Any]],
    supplied: Any,
    limits: Limits,
    adjust: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
) -> list[dict[str, Any]] | OptionsError:
    """A task's options as the node receives them, or the error to answer (init, commit, restart).

    Parsed as NodeODM does (a JSON string or a list), adjusted by the token's limits, then by
    `adjust` (split-merge), and validated against the node's list as this token sees it.
    """
    parsed = parse_supplied(supplied)
    if isinstance(parsed, OptionsError):
        return parsed
    augmented = augment_user_options(parsed, limits)
    if adjust is not None:
        augmented = adjust(augmented)
    result = validate_options(limit_option_list(node_options, limits), augmented)
    return result if isinstance(result, OptionsError) else result.options
