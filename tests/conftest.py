"""Shared pytest configuration for the netgen test-suite."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from netgen import cli

ROOT = Path(__file__).resolve().parent.parent
Run = Callable[..., tuple[int, str, str]]


def _plugin_autoloaded() -> bool:
    """True when the installed ``netgen`` pytest11 entry point already loads the plugin.

    Loading it here as well would make pytest register the same module twice and fail.
    """
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.value == "netgen.pytest_plugin" for ep in entry_points(group="pytest11"))


pytest_plugins = [] if _plugin_autoloaded() else ["netgen.pytest_plugin"]


@pytest.fixture
def netgen(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """`netgen ARGS...` through the real entry point, from the repository root:
    (exit code, stdout, stderr)."""
    monkeypatch.chdir(ROOT)

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["netgen", *args])
        with pytest.raises(SystemExit) as info:
            cli.main()
        out, err = capsys.readouterr()
        code = info.value.code
        return (code if isinstance(code, int) else 1), out, err

    return run
