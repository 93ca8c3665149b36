"""Static checks of rendered scripts: `bash -n` and shellcheck, several files per call.

shellcheck is part of the contract's test bar (every script passes it), so in CI
(`CI=true`) a missing shellcheck fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def require(tool: str) -> str:
    """The tool's path; skip without it locally, fail without it in CI."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed"
        if in_ci():
            pytest.fail(f"{message} (CI=true: it is required)", pytrace=False)
        pytest.skip(message)
    return path


def write_scripts(directory: Path, scripts: dict[str, str]) -> list[Path]:
    paths = []
    for name, text in scripts.items():
        path = directory / f"{name}.sh"
        path.write_text(text)
        paths.append(path)
    return paths


def bash_n(paths: Iterable[Path]) -> None:
    """Fail with bash's own message for the first script that does not parse."""
    bash = require("bash")
    for path in paths:
        done = subprocess.run([bash, "-n", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, f"bash -n {path.name}:\n{done.stderr}"


def shellcheck(paths: Iterable[Path]) -> None:
    """Fail with shellcheck's findings if any script has one (one process for all)."""
    tool = require("shellcheck")
    files = [str(p) for p in paths]
    done = subprocess.run(
        [tool, "--shell=bash", "--severity=style", "--format=gcc", *files],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"shellcheck found problems:\n{done.stdout}{done.stderr}"


def single_host_specs(directory: Path) -> list[Path]:
    """The specs of `directory` that build one host (no top-level `hosts:`): a multi-host
    spec has one script per host, tested in tests/test_multihost_*.py."""
    return [
        p
        for p in sorted(directory.glob("*.yaml"))
        if not any(line.startswith("hosts:") for line in p.read_text().splitlines())
    ]
