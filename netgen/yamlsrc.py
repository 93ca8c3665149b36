"""Read YAML as a node tree that remembers where every value came from.

PyYAML's composer keeps line and column on every node; the spec reader walks
nodes instead of plain dicts so each diagnostic can name file:line:col. The
walk is budgeted, so an alias bomb ("billion laughs") costs bounded time and
memory instead of expanding.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import yaml

from .errors import Diagnostic, SpecError

T = TypeVar("T")

MAX_BYTES = 32 * 1024 * 1024  # far above a 10,000-container spec (~1.5 MB)
MAX_NODES = 4_000_000  # nodes visited, aliases counted each time they are reached

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc]
    """The safe loader, remembering each scalar's implicit tag: a spec repeats the same
    keys and values thousands of times, and the resolver's regexes run in Python."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._tags: dict[tuple[str, tuple[bool, bool]], str] = {}

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is not yaml.ScalarNode:
            return str(super().resolve(kind, value, implicit))
        key = (value, implicit)
        tag = self._tags.get(key)
        if tag is None:
            tag = self._tags[key] = super().resolve(kind, value, implicit)
        return tag


_scalars = yaml.constructor.SafeConstructor()
_STR_TAG = "tag:yaml.org,2002:str"

Node = yaml.Node


class Source:
    """One YAML document plus the diagnostics found while reading it."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.text = text
        self.diagnostics: list[Diagnostic] = []
        self._lines: list[str] | None = None
        self._budget = MAX_NODES

    # -- diagnostics -----------------------------------------------------

    def line(self, lineno: int) -> str:
        if self._lines is None:
            self._lines = self.text.splitlines()
        if 1 <= lineno <= len(self._lines):
            return self._lines[lineno - 1].rstrip()
        return ""

    def error_at(self, line: int, col: int, path: str, message: str) -> None:
        # a path holds the user's keys verbatim: keep a hostile one (a newline, an escape
        # sequence) from forging lines or codes on the terminal
        if not path.isprintable():
            path = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in path)
        self.diagnostics.append(Diagnostic(self.file, line, col, path, message, self.line(line)))

    def error(self, node: Node, path: str, message: str) -> None:
        mark = node.start_mark
        self.error_at(mark.line + 1, mark.column + 1, path, message)

    def fail_if_errors(self) -> None:
        if self.diagnostics:
            raise SpecError(self.diagnostics)

    # -- parsing ---------------------------------------------------------

    def compose(self) -> Node | None:
        if len(self.text.encode()) > MAX_BYTES:
            self.error_at(1, 1, "", f"spec is larger than {MAX_BYTES // (1024 * 1024)} MiB")
            return None
        try:
            node: Node | None = yaml.compose(self.text, Loader=_Loader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            problem = exc.problem or exc.context or "invalid YAML"
            self.error_at(line, col, "", f"invalid YAML: {problem}")
            return None
        except yaml.YAMLError as exc:
            self.error_at(1, 1, "", f"invalid YAML: {exc}")
            return None
        return node

    def _spend(self, node: Node) -> bool:
        self._budget -= 1
        if self._budget == 0:
            self.error(node, "", f"spec expands to more than {MAX_NODES} YAML nodes (alias bomb?)")
        return self._budget > 0

    # -- typed accessors: each returns None after recording an error --------

    def mapping(
        self, node: Node, path: str, allowed: tuple[str, ...] | None = None
    ) -> dict[str, tuple[Node, Node]] | None:
        """Keys to (key node, value node); rejects duplicates and unknown keys."""
        if not self._spend(node):
            return None
        if not isinstance(node, yaml.MappingNode):
            self.error(node, path, f"expected a mapping, got {_kind(node)}")
            return None
        out: dict[str, tuple[Node, Node]] = {}
        for knode, vnode in node.value:
            if not self._spend(knode):
                return None
            if not isinstance(knode, yaml.ScalarNode) or knode.tag.endswith((":map", ":seq")):
                self.error(knode, path, "keys must be plain strings")
                continue
            key = str(knode.value)
            if key in out:
                first = out[key][0].start_mark.line + 1
                self.error(
                    knode, join(path, key), f"duplicate key {key!r} (first given on line {first})"
                )
                continue
            if allowed is not None and key not in allowed:
                self.error(
                    knode, join(path, key), f"unknown key {key!r}{did_you_mean(key, allowed)}"
                )
                continue
            out[key] = (knode, vnode)
        return out

    def sequence(self, node: Node, path: str) -> list[Node] | None:
        if not self._spend(node):
            return None
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, path, f"expected a list, got {_kind(node)}")
            return None
        return list(node.value)

    def scalar(self, node: Node, path: str) -> Any:
        if not self._spend(node):
            return None
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, path, f"expected a single value, got {_kind(node)}")
            return None
        if node.tag == _STR_TAG:  # most values: the constructor would return node.value
            return node.value
        try:
            return _scalars.construct_object(node)
        except yaml.YAMLError as exc:
            self.error(node, path, f"invalid value: {exc}")
            return None

    def string(self, node: Node, path: str) -> str | None:
        value = self.scalar(node, path)
        if value is None:
            if isinstance(node, yaml.ScalarNode):
                self.error(node, path, "expected a string, got null")
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            self.error(node, path, f"expected a string, got {type(value).__name__}")
            return None
        return str(node.value)

    def integer(self, node: Node, path: str, lo: int, hi: int) -> int | None:
        value = self.scalar(node, path)
        if isinstance(value, bool) or not isinstance(value, int):
            if value is not None or isinstance(node, yaml.ScalarNode):
                self.error(node, path, f"expected an integer, got {describe(value)}")
            return None
        if not lo <= value <= hi:
            self.error(node, path, f"must be between {lo} and {hi}, got {value}")
            return None
        return value

    def boolean(self, node: Node, path: str) -> bool | None:
        value = self.scalar(node, path)
        if not isinstance(value, bool):
            if value is not None or isinstance(node, yaml.ScalarNode):
                self.error(node, path, f"expected true or false, got {describe(value)}")
            return None
        return value

    def each(
        self, node: Node, path: str, read: Callable[[Node, str], T | None]
    ) -> Iterator[tuple[Node, T]]:
        """Read every item of a list; yields only the items that were valid."""
        for i, item in enumerate(self.sequence(node, path) or ()):
            value = read(item, f"{path}[{i}]")
            if value is not None:
                yield item, value


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" (expected one of: {', '.join(choices)})"


def _kind(node: Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return describe(_scalars.construct_object(node))


def describe(value: Any) -> str:
    """A YAML value as a message shows it: `string 'x'`, `boolean true`, `null`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {value!r}"
    return f"{type(value).__name__} {value!r}"
