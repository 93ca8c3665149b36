"""The errors netgen reports, and the exit code each maps to."""

from __future__ import annotations

from dataclasses import dataclass


class NetgenError(Exception):
    """Base of every error the CLI reports without a traceback."""

    exit_code = 1


class UsageError(NetgenError):
    """The command line is wrong: nothing was rendered or run."""

    exit_code = 2


class HostError(NetgenError):
    """The host refused a change (what was done has been rolled back)."""

    exit_code = 1


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a spec, pinned to the YAML that caused it."""

    file: str
    line: int  # 1-based
    col: int  # 1-based
    path: str  # key path, e.g. "containers.web.address"
    message: str
    source: str = ""  # the source line, for the caret display

    def format(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        head = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        if not self.source:
            return head
        caret = " " * (self.col - 1) + "^"
        return f"{head}\n    {self.source}\n    {caret}"


class SpecError(NetgenError):
    """The spec is invalid; carries every diagnostic found, in file order."""

    exit_code = 2

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.file, d.line, d.col, d.path))
        super().__init__(self.format())

    def format(self) -> str:
        body = "\n".join(d.format() for d in self.diagnostics)
        n = len(self.diagnostics)
        return f"{body}\n{n} error{'s' if n != 1 else ''} in spec"


class DialectError(NetgenError):
    """A dialect cannot express an op: names both, so the user can pick another."""

    exit_code = 2

    def __init__(self, op: str, dialect: str, why: str) -> None:
        self.op = op
        self.dialect = dialect
        super().__init__(f"dialect {dialect!r} cannot express {op}: {why}")
