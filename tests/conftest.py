"""Shared pytest configuration for the netgen test-suite."""

from __future__ import annotations

import os
from importlib.metadata import entry_points


def _plugin_autoloaded() -> bool:
    """True when the installed ``netgen`` pytest11 entry point already loads the plugin.

    Loading it here as well would make pytest register the same module twice and fail.
    """
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.value == "netgen.pytest_plugin" for ep in entry_points(group="pytest11"))


pytest_plugins = [] if _plugin_autoloaded() else ["netgen.pytest_plugin"]
