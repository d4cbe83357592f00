"""JSON as NodeODM parses it: V8's ``JSON.parse`` error texts (Node 14) and body-parser's strict mode.

Python's ``json`` module accepts the same grammar (plus ``NaN``/``Infinity``, refused here) but words
its errors differently and often points elsewhere (``notjson``: Python blames position 0, V8 the
``o`` at 1). Clients see NodeODM's text, so this module walks the text the way V8 8.4's JSON
parser does and reports the first token it would refuse, with the messages in ``messages.py``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from clusterodm.nodeodm import messages

_WHITESPACE = " \t\n\r"
_DIGITS = "0123456789"
_HEX = "0123456789abcdefABCDEF"
_ESCAPES = '"\\/bfnrtu'
_LITERALS = {"t": "true", "f": "false", "n": "null"}
_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


class JsonError(ValueError):
    """The text is not JSON; ``str(exc)`` is V8's message for it."""


def _js_position(text: str, index: int) -> int:
    """V8 counts positions in UTF-16 code units: characters beyond the BMP count twice."""
    return index + sum(1 for c in text[:index] if ord(c) > 0xFFFF)


class _Scanner:
    """V8's recursive-descent JSON parser, reduced to finding the first error (iterative: no depth limit)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, index: int | None = None) -> JsonError:
        """The error for the token at ``index`` (default: the cursor), classified like V8's tokens."""
        index = self.pos if index is None else index
        if index >= len(self.text):
            return JsonError(messages.JSON_UNEXPECTED_END)
        char = self.text[index]
        position = _js_position(self.text, index)
        if char == '"':
            return JsonError(messages.json_unexpected_string(position))
        if char == "-" or char in _DIGITS:
            return JsonError(messages.json_unexpected_number(position))
        return JsonError(messages.json_unexpected_token(char, position))

    def peek(self) -> str:
        while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail()
        self.pos += 1

    def check(self) -> None:
        """Raise the JsonError V8 would give, or return if the whole text is one JSON value."""
        closers: list[str] = []  # "]" or "}" for each open container
        while True:
            self.value(closers)
            # After a value: close containers or move to their next member.
            while closers:
                char = self.peek()
                if char == ",":
                    self.pos += 1
                    if closers[-1] == "}":
                        self.key()
                    break
                if char == closers[-1]:
                    self.pos += 1
                    closers.pop()
                    continue
                raise self.fail()
            else:
                if self.peek():
                    raise self.fail()
                return

    def key(self) -> None:
        if self.peek() != '"':
            raise self.fail()
        self.string()
        self.expect(":")

    def value(self, closers: list[str]) -> None:
        """One value; an opened container pushes its closer and leaves the cursor at its first member."""
        while True:
            char = self.peek()
            if char == "[":
                self.pos += 1
                if self.peek() == "]":
                    self.pos += 1
                    return
                closers.append("]")
                continue
            if char == "{":
                self.pos += 1
                if self.peek() == "}":
                    self.pos += 1
                    return
                closers.append("}")
                self.key()
                continue
            if char == '"':
                self.string()
            elif char == "-" or (char and char in _DIGITS):
                self.number()
            elif char and char in _LITERALS:
                self.literal(_LITERALS[char])
            else:
                raise self.fail()
            return

    def string(self) -> None:
        whole = _STRING.match(self.text, self.pos)
        if whole is not None:  # the common case, at C speed; the loop below finds the error
            self.pos = whole.end()
            return
        text, i = self.text, self.pos + 1
        while True:
            if i >= len(text):
                raise self.fail(i)
            char = text[i]
            if char == '"':
                self.pos = i + 1
                return
            if char < " ":
                raise JsonError(messages.json_unexpected_token(char, _js_position(text, i)))
            if char == "\\":
                i += 1
                if i >= len(text) or text[i] not in _ESCAPES:
                    raise self.fail(i)
                if text[i] == "u":
                    for _ in range(4):
                        i += 1
                        if i >= len(text) or text[i] not in _HEX:
                            raise self.fail(i)
            i += 1

    def number(self) -> None:
        whole = _NUMBER.match(self.text, self.pos)
        end = whole.end() if whole is not None else -1
        if end > 0 and not (end < len(self.text) and self.text[end] in "0123456789.eE"):
            self.pos = end
            return
        text, i = self.text, self.pos

        def digits(start: int) -> int:
            if start >= len(text) or text[start] not in _DIGITS:
                raise self.fail(start)
            while start < len(text) and text[start] in _DIGITS:
                start += 1
            return start

        if text[i] == "-":
            i += 1
        if i < len(text) and text[i] == "0":
            i += 1
            if i < len(text) and text[i] in _DIGITS:
                raise JsonError(messages.json_unexpected_number(_js_position(text, i)))
        else:
            i = digits(i)
        if i < len(text) and text[i] == ".":
            i = digits(i + 1)
        if i < len(text) and text[i] in "eE":
            i += 1
            if i < len(text) and text[i] in "+-":
                i += 1
            i = digits(i)
        self.pos = i

    def literal(self, word: str) -> None:
        for offset, expected in enumerate(word):
            index = self.pos + offset
            if index >= len(self.text) or self.text[index] != expected:
                raise self.fail(index)
        self.pos += len(word)


def parse_error(text: str) -> str | None:
    """V8's ``JSON.parse`` message for ``text``, or None if it is valid JSON."""
    try:
        _Scanner(text).check()
    except JsonError as exc:
        return str(exc)
    return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(text: str) -> Any:
    """``JSON.parse(text)``; raises JsonError with V8's message.

    Python's C parser decides (fast, for the megabytes an options list may hold); only a refused
    text is walked again to find what V8 would say about it.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant)  # NaN, Infinity: not JSON for V8
    except (ValueError, RecursionError) as exc:
        raise JsonError(parse_error(text) or str(exc)) from None


def loads_body(raw: bytes) -> Any:
    """A JSON request body as body-parser's ``json()`` (strict) reads it: ``{}`` when empty, only an
    object or array at the top, otherwise its ``Unexpected token <c> in JSON at position <n>``."""
    if not raw:
        return {}
    text = raw.decode("utf-8", "replace")
    stripped = text.lstrip(_WHITESPACE)
    if not stripped:
        raise JsonError(messages.JSON_UNEXPECTED_END)
    first = stripped[0]
    if first not in "{[":
        # body-parser parses the text up to that character with "#" in its place and names the char.
        raise JsonError(messages.json_unexpected_token(first, _js_position(text, len(text) - len(stripped))))
    return loads(text)
