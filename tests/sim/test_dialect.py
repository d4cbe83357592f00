"""Table tests for the pure NodeODM dialect helpers (JS coercion, option validation, names)."""

from __future__ import annotations

import json

import pytest

from clusterodm.nodeodm.jsnum import coerce_line, number_to_str, parse_float, parse_int, slice_lines
from clusterodm.nodeodm.names import (
    is_valid_set_uuid,
    next_collision_name,
    sanitize_upload_name,
)
from clusterodm.nodeodm.options import (
    OptionsError,
    OptionsOk,
    add_post_processing_options,
    validate_options,
)
from clusterodm.nodeodm.status import TaskStatus
from support.paths import TEST_DATA

NODE_OPTIONS = json.loads((TEST_DATA / "nodeodm-options.json").read_text())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12", 12),
        ("12abc", 12),
        ("  -3", -3),
        ("abc", 0),
        ("", 0),
        (None, 0),
        ("0x1A", 26),
        ("+7", 7),
        ("1e3", 1),
    ],
)
def test_coerce_line(raw: str | None, expected: int) -> None:
    assert coerce_line(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("2.5x", 2.5), (".5", 0.5), ("-1e2", -100.0), ("x", None), ("Infinity", float("inf"))],
)
def test_parse_float(raw: str, expected: float | None) -> None:
    assert parse_float(raw) == expected


def test_parse_int_of_non_strings() -> None:
    assert parse_int(True) is None
    assert parse_int(None) is None
    assert parse_int(2.9) == 2
    assert parse_int(1e21) == 1  # String(1e21) == "1e+21"


@pytest.mark.parametrize(
    ("value", "text"),
    [(5.0, "5"), (2.5, "2.5"), (float("nan"), "NaN"), (1e21, "1e+21"), (1e-7, "1e-7"), (-0.0, "0")],
)
def test_number_to_str(value: float, text: str) -> None:
    assert number_to_str(value) == text


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, [0, 1, 2, 3]), (2, [2, 3]), (9, []), (-1, [3]), (-3, [1, 2, 3]), (-99, [0, 1, 2, 3])],
)
def test_slice_lines(n: int, expected: list[int]) -> None:
    assert slice_lines([0, 1, 2, 3], n) == expected


def _errors(result: object) -> list[dict[str, str]]:
    assert isinstance(result, OptionsError)
    return json.loads(result.message)


def test_valid_options_are_typed_and_in_node_order() -> None:
    supplied = [
        {"name": "orthophoto-resolution", "value": "2.5"},
        {"name": "dsm", "value": "true"},
        {"name": "mesh-octree-depth", "value": "12abc"},
        {"name": "no-such-option", "value": 1},
        {"name": "feature-type", "value": "orb"},
        {"name": "crop", "value": 3},
    ]
    result = validate_options(NODE_OPTIONS, json.dumps(supplied))
    assert result == OptionsOk(
        [
            {"name": "feature-type", "value": "orb"},
            {"name": "mesh-octree-depth", "value": 12},
            {"name": "crop", "value": 3},
            {"name": "dsm", "value": True},
            {"name": "orthophoto-resolution", "value": 2.5},
        ]
    )


def test_errors_are_one_json_string_in_node_order() -> None:
    result = validate_options(
        NODE_OPTIONS,
        [
            {"name": "orthophoto-resolution", "value": 0},
            {"name": "mesh-octree-depth", "value": 99},
            {"name": "dsm", "value": "yes"},
            {"name": "feature-type", "value": "surf"},
            {"name": "crop", "value": "-1"},
            {"name": "matcher-neighbors", "value": "abc"},
            {"name": "cameras", "value": "{bad"},
        ],
    )
    assert isinstance(result, OptionsError)
    assert result.message == (
        '[{"name":"feature-type","error":"Invalid value surf (not in enum)"},'
        '{"name":"matcher-neighbors","error":"Invalid value NaN (out of range)"},'
        '{"name":"cameras","error":"Invalid value {bad (out of range)"},'
        '{"name":"mesh-octree-depth","error":"Invalid value 99 (out of range)"},'
        '{"name":"crop","error":"Invalid value -1 (out of range)"},'
        '{"name":"dsm","error":"Cannot convert yes to boolean"},'
        '{"name":"orthophoto-resolution","error":"Invalid value 0 (out of range)"}]'
    )


def test_exact_spec_example() -> None:
    result = validate_options(NODE_OPTIONS, '[{"name":"mesh-octree-depth","value":99}]')
    assert result == OptionsError('[{"name":"mesh-octree-depth","error":"Invalid value 99 (out of range)"}]')


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), ("true", True), ("1", True), (False, False), ("false", False), ("0", False)],
)
def test_bool_conversion(value: object, expected: bool) -> None:
    assert validate_options(NODE_OPTIONS, [{"name": "dsm", "value": value}]) == OptionsOk(
        [{"name": "dsm", "value": expected}]
    )


def test_positive_allows_zero_and_percent_and_bounds() -> None:
    node = [
        {"name": "p", "type": "float", "value": "0", "domain": "percent"},
        {"name": "g", "type": "float", "value": "0", "domain": "float >= 1.5"},
        {"name": "z", "type": "int", "value": "0", "domain": "positive integer"},
        {"name": "w", "type": "int", "value": "0", "domain": "weird domain"},
    ]
    ok = validate_options(
        node, [{"name": "p", "value": 100}, {"name": "g", "value": 1.5}, {"name": "z", "value": 0}]
    )
    assert ok == OptionsOk(
        [{"name": "p", "value": 100}, {"name": "g", "value": 1.5}, {"name": "z", "value": 0}]
    )
    assert _errors(validate_options(node, [{"name": "p", "value": "100.5"}, {"name": "w", "value": 3}])) == [
        {"name": "p", "error": "Invalid value 100.5 (out of range)"},
        {"name": "w", "error": "Domain value cannot be handled: 'weird domain' : '3'"},
    ]


def test_malformed_json_gives_parser_message() -> None:
    assert validate_options(NODE_OPTIONS, "[{bad") == OptionsError("Unexpected token b in JSON at position 2")
    assert validate_options(NODE_OPTIONS, "[") == OptionsError("Unexpected end of JSON input")


def test_non_list_input_means_no_options() -> None:
    assert validate_options(NODE_OPTIONS, '{"dsm": true}') == OptionsOk([])
    assert validate_options(NODE_OPTIONS, None) == OptionsOk([])


def test_post_processing_options() -> None:
    base = [{"name": "dsm", "value": True}, {"name": "cog", "value": False}]
    assert add_post_processing_options(base, NODE_OPTIONS, False) == [
        {"name": "dsm", "value": True},
        {"name": "cog", "value": False},
        {"name": "pc-ept", "value": True},
        {"name": "gltf", "value": True},
    ]
    assert add_post_processing_options(base, NODE_OPTIONS, True) == base
    only_cog = [o for o in NODE_OPTIONS if o["name"] == "cog"]
    assert add_post_processing_options([], only_cog, False) == [{"name": "cog", "value": True}]


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("a.jpg", "a.jpg"),
        ("dir/sub/a.jpg", "a.jpg"),
        ("C:\\photos\\b.JPG", "b.JPG"),
        ("body.json", "_body.json"),
        ("x/body.json", "_body.json"),
        ("..", "_"),
    ],
)
def test_sanitize_upload_name(raw: str, stored: str) -> None:
    assert sanitize_upload_name(raw) == stored


@pytest.mark.parametrize(
    ("name", "following"),
    [("a.jpg", "a_.jpg"), ("a_.jpg", "a__.jpg"), ("noext", "noext_"), (".hidden", ".hidden_")],
)
def test_collision_names(name: str, following: str) -> None:
    assert next_collision_name(name) == following


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("0b6c6a1e-5e0c-4a53-9d8c-2a1f6c1f0a11", True),
        ("0B6C6A1E-5E0C-4A53-9D8C-2A1F6C1F0A11", True),
        ("0b6c6a1e-5e0c-7a53-bd8c-2a1f6c1f0a11", True),
        ("0b6c6a1e-5e0c-8a53-9d8c-2a1f6c1f0a11", False),
        ("0b6c6a1e-5e0c-0a53-9d8c-2a1f6c1f0a11", False),
        ("0b6c6a1e-5e0c-4a53-cd8c-2a1f6c1f0a11", False),
        ("not-a-uuid", False),
        ("0b6c6a1e-5e0c-4a53-9d8c-2a1f6c1f0a11x", False),
    ],
)
def test_set_uuid(value: str, valid: bool) -> None:
    assert is_valid_set_uuid(value) is valid


def test_status_codes() -> None:
    assert [int(s) for s in TaskStatus] == [10, 20, 30, 40, 50]
