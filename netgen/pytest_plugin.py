"""pytest plugin (entry point ``netgen``): test specs, and netgen, against a real kernel.

Fixtures:

- ``netgen_sandbox``: a factory; ``net = netgen_sandbox("specs/web.yaml")`` applies the
  spec in a fresh sandbox (what ``netgen try`` does) and returns its handle, a
  :class:`netgen.trial.Trial`: ``net.run(ns, argv)``, ``net.ping(a, b)``,
  ``net.connect(a, host, port)``, ``net.state()``, ``net.check()``. After the test each
  one is destroyed (destroy must leave the sandbox as apply found it) and closed.
- ``netgen_render``: ``netgen_render("specs/web.yaml", teardown=True)`` is the script
  ``netgen render`` prints from the rootdir, for a snapshot (syrupy) or a golden file.
- ``sandbox``: a bare private network + mount namespace (:class:`netgen.sandbox.Sandbox`).
- ``fleet``: three simulated hosts ``h1``..``h3`` on an underlay bridge
  (:class:`netgen.sandbox.Fleet`), one per test module: a test leaves the hosts as it
  found them (tear down what it applied).

Tests that use a sandbox are marked ``kernel``. Where no sandbox can be made they are
skipped locally, but fail in CI (``CI=true``) so that a misconfigured runner cannot turn
the kernel suite green by silently skipping it. Relative spec paths are taken from the
rootdir, so a test reads the same files whatever directory pytest runs from.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, Protocol

import pytest

from netgen import golden, spec
from netgen.errors import NetgenError
from netgen.sandbox import Fleet, Sandbox, SandboxUnavailable, unavailable_reason
from netgen.trial import Report, Trial

__all__ = ["NetgenSandbox", "Report", "Trial", "rendered", "sandbox_unavailable"]

KERNEL_MARKER = "kernel: needs root and a private network namespace (runs in the sandbox)"
KERNEL_FIXTURES = frozenset({"sandbox", "netgen_sandbox", "fleet"})


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``kernel`` marker so ``--strict-markers`` accepts it without pyproject."""
    config.addinivalue_line("markers", KERNEL_MARKER)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that takes a sandbox is a kernel test: ``-m "not kernel"`` leaves it out."""
    for item in items:
        if KERNEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kernel)


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


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    """Three simulated hosts (h1 192.0.2.11 .. h3 192.0.2.13) on the underlay bridge ul0,
    shared by the tests of one module (a fleet takes a few seconds to wire)."""
    reason = unavailable_reason()
    started: Fleet | None = None
    if reason is None:
        try:
            started = Fleet.start(3)
        except SandboxUnavailable as exc:
            reason = str(exc)
    if started is None:
        sandbox_unavailable(reason or "unknown reason")
    with started:
        yield started


class NetgenSandbox(Protocol):
    """The ``netgen_sandbox`` factory, for annotating a test's argument."""

    def __call__(
        self,
        path: str | os.PathLike[str],
        *,
        dialect: str = ...,
        firewall: str = ...,
        verify_destroy: bool = ...,
    ) -> Trial: ...


@pytest.fixture
def netgen_sandbox(request: pytest.FixtureRequest) -> Iterator[NetgenSandbox]:
    """Apply specs, each in a fresh sandbox; destroy and close them after the test.

    A spec error, or an apply that fails, fails the test with netgen's own message.
    Destroy runs at teardown: if it fails, or leaves something behind, the test errors
    (``verify_destroy=False`` for a test that changes the sandbox's host side itself).
    """
    root = request.config.rootpath
    trials: list[Trial] = []

    def start(
        path: str | os.PathLike[str],
        *,
        dialect: str = "iproute2",
        firewall: str = "iptables",
        verify_destroy: bool = True,
    ) -> Trial:
        try:
            trial = Trial.start(
                _from_root(root, path),
                dialect=dialect,
                firewall=firewall,
                verify_destroy=verify_destroy,
            )
        except SandboxUnavailable as exc:
            sandbox_unavailable(str(exc))
        except NetgenError as exc:
            pytest.fail(str(exc), pytrace=False)
        trials.append(trial)
        return trial

    yield start
    problems = []
    for trial in reversed(trials):
        try:
            trial.close()
        except NetgenError as exc:
            problems.append(f"spec {trial.spec.name!r}: {exc}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def rendered(
    path: str | os.PathLike[str],
    *,
    dialect: str = "iproute2",
    firewall: str = "iptables",
    teardown: bool = False,
    batch: bool = False,
    shown_as: str | None = None,
    host: str | None = None,
) -> str:
    """The script ``netgen render PATH`` prints with these options, byte for byte
    (``host``: one host's part of a spec with ``hosts:``, as ``--host``).

    The script names its spec file in its header and comments; ``shown_as`` names it
    differently (the ``netgen_render`` fixture passes the path from the rootdir).
    """
    s = spec.load(Path(path))
    if shown_as is not None:
        raw = Path(path).read_bytes()
        s = spec.loads(raw.decode("utf-8"), shown_as, sha256=s.sha256)
    return golden.script(
        s, dialect=dialect, firewall=firewall, teardown=teardown, batch=batch, host=host
    )


@pytest.fixture
def netgen_render(request: pytest.FixtureRequest) -> Callable[..., str]:
    """``netgen_render(spec, dialect=..., firewall=..., teardown=..., batch=..., host=...)``:
    what ``netgen render`` prints when run from the rootdir; stable wherever pytest runs."""
    root = request.config.rootpath

    def render(
        path: str | os.PathLike[str],
        *,
        dialect: str = "iproute2",
        firewall: str = "iptables",
        teardown: bool = False,
        batch: bool = False,
        host: str | None = None,
    ) -> str:
        full = _from_root(root, path)
        try:
            shown = str(full.relative_to(root))
        except ValueError:
            shown = str(full)
        return rendered(
            full,
            dialect=dialect,
            firewall=firewall,
            teardown=teardown,
            batch=batch,
            shown_as=shown,
            host=host,
        )

    return render


def _from_root(root: Path, path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p if p.is_absolute() else root / p
