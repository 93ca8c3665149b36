"""The pytest plugin as its users meet it: a test suite of their own, in a directory of its
own, run by a pytest that loads the plugin through its `pytest11` entry point.

Each inner session runs in a subprocess (`runpytest_subprocess`), so nothing of this
session (its conftest, its imports) helps the plugin along.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from netgen import sandbox

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

SPEC = """\
version: 1
name: shop
bridges:
  br-shop:
    subnet: 10.61.0.0/24
containers:
  web: {}
  db:
    expose: [5432]
checks:
  - {from: web, to: db, port: 5432}
"""

BROKEN = SPEC.replace("name: shop", "name: broken").replace("port: 5432}", "port: 5433}")

# What a user writes: the plugin's fixtures and nothing else.
USER_TESTS = """
import sys

SERVER = (
    "import socket, sys, time\\n"
    "s = socket.socket(); s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen()\\n"
    "print('ready', flush=True); time.sleep(300)\\n"
)


def serve(net, container, port):
    server = net.spawn(container, [sys.executable, "-c", SERVER, str(port)])
    assert server.stdout.readline() == "ready\\n"


def test_the_network(netgen_sandbox):
    net = netgen_sandbox("network/shop.yaml")
    assert net.ping("web", "db")
    assert net.ping("web", "10.61.0.1")
    assert "10.61.0.3/24" in net.run("db", ["ip", "-br", "addr", "show", "eth0"]).stdout
    serve(net, "db", 5432)
    assert net.connect("web", "db", 5432)
    assert not net.connect("web", "db", 5433)
    routes = net.state()["namespaces"]["web"]["routes"]
    assert {"dst": "default", "gateway": "10.61.0.1"}.items() <= routes[-1].items()
    report = net.check()
    assert report.ok, report.table
    assert [(r.probe.what, r.got, r.status) for r in report][-1] == ("tcp/5432", "open", "ok")


def test_a_claim_that_does_not_hold(netgen_sandbox):
    net = netgen_sandbox("network/broken.yaml")
    serve(net, "db", 5432)
    report = net.check()
    assert report.ok, report.table


def test_a_wrong_spec(netgen_sandbox):
    netgen_sandbox("network/missing.yaml")


def test_scripts(netgen_render, snapshot):
    assert netgen_render("network/shop.yaml") == snapshot
    assert netgen_render("network/shop.yaml", teardown=True) == snapshot
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A user's repository: specs under network/, tests under tests/."""
    (pytester.path / "pyproject.toml").write_text(
        "[tool.pytest.ini_options]\nxfail_strict = true\n"
    )
    (pytester.path / "network").mkdir()
    (pytester.path / "network/shop.yaml").write_text(SPEC)
    (pytester.path / "network/broken.yaml").write_text(BROKEN)
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests/test_network.py").write_text(USER_TESTS)
    return pytester


def kernel_or_skip() -> None:
    reason = sandbox.unavailable_reason()
    if reason is not None:
        pytest.skip(f"kernel sandbox unavailable: {reason}")  # test_sandbox fails it in CI


@pytest.mark.kernel
def test_a_users_suite(suite: pytest.Pytester) -> None:
    kernel_or_skip()
    result = suite.runpytest_subprocess("-v", "--snapshot-update")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_the_network PASSED*",
            "*test_a_claim_that_does_not_hold FAILED*",
            "*test_a_wrong_spec FAILED*",
            "*test_scripts PASSED*",
        ]
    )
    # a failed claim shows netgen's table, with the spec line of the check
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: FROM*TO*WHAT*EXPECT*GOT*OK*WHY",
            "*web*db (10.61.0.3)*tcp/5433*open*refused*FAIL*network/broken.yaml:11 checks[[]0[]]",
            "*",
            "*where False = <Report of spec 'broken': 3 checks: 2 passed, 1 failed>.ok",
        ]
    )
    # a spec that is not there: netgen's message, no traceback into the plugin
    result.stdout.fnmatch_lines(["*cannot read spec '*network/missing.yaml'*"])
    assert "pytest_plugin.py" not in result.stdout.str()


def test_snapshots_are_the_scripts_netgen_render_prints(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`netgen_render` is the script `netgen render` prints from the rootdir, whatever the
    directory pytest runs from; a changed spec shows in the snapshot."""
    suite.runpytest_subprocess("-k", "scripts", "--snapshot-update").assert_outcomes(passed=1)
    snapshots = (suite.path / "tests/__snapshots__/test_network.ambr").read_text()
    assert "# spec:    network/shop.yaml (name shop)" in snapshots
    assert "ip link add name br-shop type bridge" in snapshots
    assert "ip link delete dev br-shop type bridge" in snapshots

    monkeypatch.chdir(suite.path / "tests")  # the same bytes from another directory
    suite.runpytest_subprocess("-k", "scripts").assert_outcomes(passed=1)
    monkeypatch.chdir(suite.path)
    (suite.path / "network/shop.yaml").write_text(SPEC.replace("10.61.0", "10.62.0"))
    result = suite.runpytest_subprocess("-k", "scripts", "-vv")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- ip addr add 10.61.0.1/24 dev br-shop*"])
    result.stdout.fnmatch_lines(["*+ ip addr add 10.62.0.1/24 dev br-shop*"])


def test_sandbox_tests_are_kernel_tests(suite: pytest.Pytester) -> None:
    """Marked without being told, so `-m "not kernel"` runs the rest anywhere."""
    result = suite.runpytest_subprocess(
        "-m", "not kernel", "--strict-markers", "--snapshot-update", "-v"
    )
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.fnmatch_lines(["*test_scripts*"])


@pytest.mark.parametrize(("ci", "outcome"), [("true", "failed"), ("", "skipped")])
def test_no_sandbox_skips_here_and_fails_in_ci(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: str
) -> None:
    suite.makeconftest(
        """
        import netgen.trial
        from netgen.sandbox import SandboxUnavailable

        def no_sandbox():
            raise SandboxUnavailable("no namespaces on this runner")

        netgen.trial.mode = no_sandbox
        """
    )
    monkeypatch.setenv("CI", ci)
    result = suite.runpytest_subprocess("-rfs", "-k", "the_network")
    result.assert_outcomes(**{outcome: 1})
    result.stdout.fnmatch_lines(["*kernel sandbox unavailable: no namespaces on this runner*"])


# -- docs/ci.md, as written ------------------------------------------------------------


def doc_files() -> dict[str, str]:
    """The files docs/ci.md shows, by the path in their first line (`# network/shop.yaml`)."""
    text = (ROOT / "docs/ci.md").read_text()
    files = {}
    for block in re.findall(r"^```(?:yaml|python)\n(.*?)^```$", text, re.M | re.S):
        first, _, body = block.partition("\n")
        if first.startswith("# ") and "/" in first:
            files[first[2:]] = block if first.endswith(".yml") else body
    return files


def doc_block(after: str) -> str:
    text = (ROOT / "docs/ci.md").read_text()
    return text.split(after, 1)[1].split("\n", 1)[1].split("```", 1)[0]


@pytest.mark.kernel
def test_the_ci_chapter_works_as_written(pytester: pytest.Pytester) -> None:
    kernel_or_skip()
    files = doc_files()
    assert sorted(files) == [
        ".github/workflows/network.yml",
        "network/shop.yaml",
        "tests/network/test_shop.py",
    ]
    for path, body in files.items():
        (pytester.path / path).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / path).write_text(body)

    def sh(line: str) -> subprocess.CompletedProcess[str]:
        line = line.replace('sudo env "PATH=$PATH" ', "")  # we are root already
        return subprocess.run(
            ["bash", "-c", line], cwd=pytester.path, capture_output=True, text=True, timeout=300
        )

    # the golden scripts, made as the chapter says, then checked as the job does
    (pytester.path / "scripts").mkdir()
    for line in [
        "netgen render network/shop.yaml --check scripts/setup.sh --update",
        "netgen render network/shop.yaml --teardown --check scripts/teardown.sh --update",
    ]:
        assert f"$ {line}" in (ROOT / "docs/ci.md").read_text()
        assert sh(line).returncode == 0
    job = yaml.safe_load(files[".github/workflows/network.yml"])["jobs"]["netgen"]
    runs = {step["name"]: step["run"] for step in job["steps"] if "run" in step}
    for line in runs["The audited scripts are what netgen renders"].splitlines():
        res = sh(line)
        assert (res.returncode, res.stdout) == (0, ""), res.stderr

    # netgen try prints the table the chapter shows
    res = sh(runs["The network builds, holds its checks, and comes down"])
    assert res.returncode == 0, res.stderr
    shown = doc_block("$ sudo netgen try --serve network/shop.yaml")
    assert res.stdout == "".join(line + "\n" for line in shown.splitlines()[:9])
    assert "netgen: spec 'shop': 8 checks: 8 passed, 0 failed\n" in res.stderr

    # and the pytest example passes
    result = pytester.runpytest_subprocess("tests/network", "--snapshot-update")
    result.assert_outcomes(passed=2)
