"""pytest plugin (entry point ``netgen``): fixtures for testing against a real kernel.

Kernel tests run inside a :class:`netgen.sandbox.Sandbox` so they can never change the
host's network.  Where no sandbox can be made they are skipped locally, but fail in CI
(``CI=true``) so that a misconfigured runner cannot turn the kernel suite green by
silently skipping it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from netgen.sandbox import Sandbox, SandboxUnavailable, unavailable_reason

KERNEL_MARKER = "kernel: needs root and a private network namespace (runs in the sandbox)"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``kernel`` marker so ``--strict-markers`` accepts it without pyproject."""
    config.addinivalue_line("markers", KERNEL_MARKER)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def sandbox_unavailable(reason: str) -> NoReturn:
    """Skip the current test, or fail it when running in CI."""
    message = f"kernel sandbox unavailable: {reason}"
    if _in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A fresh private network + mount namespace, torn down after the test."""
    reason = unavailable_reason()
    sb: Sandbox | None = None
    if reason is None:
        try:
            sb = Sandbox.start()
        except SandboxUnavailable as exc:
            reason = str(exc)
    if sb is None:
        sandbox_unavailable(reason or "unknown reason")
    with sb:
        yield sb
