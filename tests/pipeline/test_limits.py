"""Table tests of the per-token option limits (spec 2.6): the /options transform and the augmentation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clusterodm.cluster.providers import Limits
from clusterodm.nodeodm.limits import augment_user_options, check_task_options, limit_option_list
from clusterodm.nodeodm.options import OptionsError

NODE_OPTIONS: list[dict[str, Any]] = [
    {"name": "split", "type": "int", "value": "999999", "domain": "integer", "help": "s"},
    {"name": "orthophoto-resolution", "type": "float", "value": "5", "domain": "float > 0.0", "help": "o"},
    {"name": "dsm", "type": "bool", "value": "false", "domain": "", "help": "d"},
    {"name": "max-concurrency", "type": "int", "value": "4", "domain": "positive integer", "help": "m"},
    {"name": "feature-type", "type": "enum", "value": "sift", "domain": ["orb", "sift"], "help": "f"},
]
LIGHTNING = Limits(
    max_images=1000,
    max_concurrent_tasks=2,
    options={
        "split": {"remove": True},
        "orthophoto-resolution": {
            "between": {"min": 2, "max": 10, "max_if_equal_to": 5},
            "domain": "float: 2 <= x <= 10",
        },
        "dsm": {"assure": True, "value": "true"},
    },
)


def names(options: list[dict[str, Any]]) -> list[str]:
    return [o["name"] for o in options]


@pytest.mark.parametrize(
    ("limits", "expected_names"),
    [
        (Limits(), ["split", "orthophoto-resolution", "dsm", "max-concurrency", "feature-type"]),
        (Limits(options={}), ["split", "orthophoto-resolution", "dsm", "feature-type"]),
        (LIGHTNING, ["orthophoto-resolution", "dsm", "feature-type"]),
        (
            Limits(options={"feature-type": {"remove": False}}),
            ["split", "orthophoto-resolution", "dsm", "feature-type"],
        ),
    ],
)
def test_limit_option_list_names(limits: Limits, expected_names: list[str]) -> None:
    assert names(limit_option_list(NODE_OPTIONS, limits)) == expected_names


def test_limit_option_list_replaces_domain_and_default_without_touching_input() -> None:
    shown = {o["name"]: o for o in limit_option_list(NODE_OPTIONS, LIGHTNING)}
    assert shown["orthophoto-resolution"]["domain"] == "float: 2 <= x <= 10"
    assert shown["orthophoto-resolution"]["value"] == "5"
    assert shown["dsm"]["value"] == "true"  # the limit's raw value replaces the advertised default
    assert shown["dsm"]["help"] == "d"
    assert NODE_OPTIONS[1]["domain"] == "float > 0.0"
    assert NODE_OPTIONS[2]["value"] == "false"


@pytest.mark.parametrize(
    ("supplied", "expected"),
    [
        ([], [{"name": "dsm", "value": True}]),
        ('[{"name":"dsm","value":false}]', [{"name": "dsm", "value": True}]),
        (
            [{"name": "orthophoto-resolution", "value": 5}],
            [{"name": "orthophoto-resolution", "value": 10}, {"name": "dsm", "value": True}],
        ),
        (
            [{"name": "orthophoto-resolution", "value": "5"}],
            [{"name": "orthophoto-resolution", "value": 10}, {"name": "dsm", "value": True}],
        ),
        (
            [{"name": "orthophoto-resolution", "value": 1}],
            [{"name": "orthophoto-resolution", "value": 2}, {"name": "dsm", "value": True}],
        ),
        (
            [{"name": "orthophoto-resolution", "value": "25.5"}],
            [{"name": "orthophoto-resolution", "value": 10}, {"name": "dsm", "value": True}],
        ),
        (
            [{"name": "orthophoto-resolution", "value": 3.5}],
            [{"name": "orthophoto-resolution", "value": 3.5}, {"name": "dsm", "value": True}],
        ),
        (
            [{"name": "orthophoto-resolution", "value": "abc"}],
            [{"name": "orthophoto-resolution", "value": "abc"}, {"name": "dsm", "value": True}],
        ),
        ([{"name": "split", "value": 10}], [{"name": "dsm", "value": True}]),
        ("not json", [{"name": "dsm", "value": True}]),
    ],
)
def test_augment_user_options(supplied: Any, expected: list[dict[str, Any]]) -> None:
    assert augment_user_options(supplied, LIGHTNING) == expected


def test_augment_without_option_limits_is_identity_and_copies() -> None:
    supplied = [{"name": "split", "value": 3}]
    result = augment_user_options(supplied, Limits(max_images=5))
    assert result == supplied
    result[0]["value"] = 4
    assert supplied[0]["value"] == 3


def test_between_with_only_max_if_equal_to() -> None:
    limits = Limits(options={"split": {"between": {"max": 50, "max_if_equal_to": 999999}}})
    assert augment_user_options([{"name": "split", "value": "999999"}], limits) == [
        {"name": "split", "value": 50}
    ]
    assert augment_user_options([{"name": "split", "value": 70}], limits) == [{"name": "split", "value": 70}]


def test_augmented_then_validated_against_limited_list() -> None:
    """`check_task_options`, the one path (init, commit, restart): augment, adjust, then validate
    against the token's list (removed options dropped)."""
    supplied = [
        {"name": "split", "value": 5},
        {"name": "max-concurrency", "value": 64},
        {"name": "orthophoto-resolution", "value": 50},
    ]
    result = check_task_options(NODE_OPTIONS, json.dumps(supplied), LIGHTNING)
    assert result == [{"name": "orthophoto-resolution", "value": 10}, {"name": "dsm", "value": True}]
    bad = check_task_options(NODE_OPTIONS, [{"name": "feature-type", "value": "x"}], LIGHTNING)
    assert bad == OptionsError('[{"name":"feature-type","error":"Invalid value x (not in enum)"}]')
    assert check_task_options(NODE_OPTIONS, "[{bad", LIGHTNING) == OptionsError(
        "Unexpected token b in JSON at position 2"
    )


def test_adjust_runs_after_the_limits_and_before_validation() -> None:
    """Split-merge's `adjust` sees the limited options, and what it adds is validated too."""
    seen: list[list[dict[str, Any]]] = []

    def adjust(options: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen.append(options)
        return [*options, {"name": "feature-type", "value": "orb"}, {"name": "unknown", "value": 1}]

    result = check_task_options(NODE_OPTIONS, [{"name": "split", "value": 3}], LIGHTNING, adjust)
    assert seen == [[{"name": "dsm", "value": True}]]  # split removed, dsm assured (forced true)
    assert result == [{"name": "dsm", "value": True}, {"name": "feature-type", "value": "orb"}]
