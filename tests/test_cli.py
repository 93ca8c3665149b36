"""The command line: exit codes, which stream gets what, `-o`, `--version`, `--help`.

Most tests call the real entry point (`netgen.cli.main`, what the `netgen` script
runs) in-process; a few run `python -m netgen` to see exactly what a shell sees.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from netgen import __version__, lower, render, spec

ROOT = Path(__file__).resolve().parent.parent
WALKTHROUGH = "specs/walkthrough.yaml"
BAD = "version: 1\nbridges:\n  br0: {subnet: 10.0.0.0/24, adress: 10.0.0.1}\n"
BAD_REPORT = (
    "bad.yaml:3:30: bridges.br0.adress: unknown key 'adress'; did you mean 'address'?\n"
    "      br0: {subnet: 10.0.0.0/24, adress: 10.0.0.1}\n"
    "                                 ^\n"
    "1 error in spec\n"
)

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def netgen(netgen: Run, tmp_path: Path) -> Run:
    """conftest's `netgen`, with a broken spec at tmp_path/bad.yaml."""
    (tmp_path / "bad.yaml").write_text(BAD)
    return netgen


def expected_script(path: str = WALKTHROUGH, **options: object) -> str:
    s = spec.load(path)
    return render.render(s, lower.lower(s), **options)  # type: ignore[arg-type]


class TestSuccess:
    def test_validate_prints_a_one_line_summary(self, netgen: Run) -> None:
        assert netgen("validate", WALKTHROUGH) == (
            0,
            "specs/walkthrough.yaml: spec 'walkthrough' is valid: 1 bridge, "
            "1 container (1 namespace), 0 links, 1 veth pair, 11 ops\n",
            "",
        )

    def test_render_prints_the_script_and_nothing_else(self, netgen: Run) -> None:
        assert netgen("render", WALKTHROUGH) == (0, expected_script(), "")

    def test_render_dialect(self, netgen: Run) -> None:
        code, out, err = netgen("render", WALKTHROUGH, "--dialect", "brctl")
        assert (code, out, err) == (0, expected_script(dialect="brctl"), "")
        assert "brctl addif docker0 A" in out

    def test_render_to_a_file(self, netgen: Run, tmp_path: Path) -> None:
        target = tmp_path / "setup.sh"
        assert netgen("render", WALKTHROUGH, "-o", str(target)) == (0, "", "")
        assert target.read_text() == expected_script()
        assert stat.S_IMODE(target.stat().st_mode) == 0o755
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "setup.sh"]  # no temp

    def test_render_to_a_file_replaces_it(self, netgen: Run, tmp_path: Path) -> None:
        target = tmp_path / "teardown.sh"
        target.write_text("old\n")
        target.chmod(0o600)
        assert netgen("render", WALKTHROUGH, "--teardown", "--output", str(target))[0] == 0
        assert target.read_text().startswith("#!/usr/bin/env bash\n# netgen teardown script")
        assert stat.S_IMODE(target.stat().st_mode) == 0o755

    def test_ops_is_json_on_stdout(self, netgen: Run) -> None:
        code, out, err = netgen("ops", WALKTHROUGH)
        assert (code, err) == (0, "")
        assert out.startswith('[\n  {\n    "op": "AddBridge",') and out.endswith("]\n")

    def test_version(self, netgen: Run) -> None:
        assert netgen("--version") == (0, f"netgen {__version__}\n", "")

    def test_help_shows_examples(self, netgen: Run) -> None:
        code, out, _ = netgen("--help")
        assert code == 0
        assert "Examples:" in out
        for example in (
            "netgen validate specs/walkthrough.yaml",
            "netgen render specs/walkthrough.yaml -o setup.sh",
            "netgen render specs/walkthrough.yaml --dialect brctl --teardown",
        ):
            assert example in out
        for command in ("validate", "render", "ops"):
            assert f"  {command} " in out

    def test_render_help_names_its_options(self, netgen: Run) -> None:
        code, out, _ = netgen("render", "--help")
        assert code == 0
        for option in ("--dialect", "iproute2|brctl", "--teardown", "-o, --output FILE", "SPEC"):
            assert option in out


class TestFailure:
    """Exit 2, nothing on stdout, the diagnostics on stderr, never a traceback."""

    @pytest.mark.parametrize(
        "args",
        [
            ("validate",),
            ("render",),
            ("render", "--teardown"),
            ("render", "--dialect", "brctl"),
            ("ops",),
        ],
        ids=" ".join,
    )
    def test_a_bad_spec(self, netgen: Run, tmp_path: Path, args: tuple[str, ...]) -> None:
        os.chdir(tmp_path)
        assert netgen(*args, "bad.yaml") == (2, "", BAD_REPORT)

    def test_a_bad_spec_writes_no_file(self, netgen: Run, tmp_path: Path) -> None:
        os.chdir(tmp_path)
        assert netgen("render", "bad.yaml", "-o", "out.sh") == (2, "", BAD_REPORT)
        assert not (tmp_path / "out.sh").exists()

    def test_a_missing_spec(self, netgen: Run) -> None:
        assert netgen("render", "specs/nope.yaml") == (
            2,
            "",
            "netgen: error: cannot read spec 'specs/nope.yaml': No such file or directory\n",
        )

    def test_an_unknown_dialect(self, netgen: Run) -> None:
        code, out, err = netgen("render", WALKTHROUGH, "--dialect", "ifconfig")
        assert (code, out) == (2, "")
        assert "Invalid value for '--dialect'" in err and "'ifconfig'" in err
        assert "iproute2" in err and "brctl" in err

    def test_a_dialect_that_cannot_express_the_spec(self, netgen: Run, tmp_path: Path) -> None:
        path = tmp_path / "snoop.yaml"
        path.write_text(
            "version: 1\nbridges: {br0: {subnet: 10.0.0.0/24, mcast_snooping: false}}\n"
        )
        assert netgen("render", str(path), "--dialect", "brctl") == (
            2,
            "",
            "netgen: error: dialect 'brctl' cannot express AddBridge: "
            "brctl has no multicast snooping setting; use iproute2\n",
        )

    @pytest.mark.parametrize("where", ["missing-dir/out.sh", "."])
    def test_an_output_that_cannot_be_written(
        self, netgen: Run, tmp_path: Path, where: str
    ) -> None:
        os.chdir(tmp_path)
        code, out, err = netgen("render", str(ROOT / WALKTHROUGH), "-o", where)
        assert (code, out) == (2, "")
        assert err.startswith(f"netgen: error: cannot write '{where}': ")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]

    @pytest.mark.parametrize(
        ("args", "error"),
        [
            (("frobnicate",), "Error: No such command 'frobnicate'."),
            (("render",), "Error: Missing argument 'SPEC'."),
            (("render", WALKTHROUGH, "--frobnicate"), "Error: No such option: --frobnicate"),
        ],
        ids=["unknown command", "no spec", "unknown option"],
    )
    def test_a_wrong_command_line(self, netgen: Run, args: tuple[str, ...], error: str) -> None:
        code, out, err = netgen(*args)
        assert (code, out) == (2, "")
        assert err.startswith("Usage: ")
        assert err.endswith(f"\n{error}\n")


class TestProcess:
    """What a shell sees from `python -m netgen`."""

    def netgen(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "netgen", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=60,
        )

    def test_a_bad_spec_exits_2_with_a_located_error_and_no_traceback(self, tmp_path: Path) -> None:
        (tmp_path / "bad.yaml").write_text(BAD)
        done = subprocess.run(
            [sys.executable, "-m", "netgen", "render", "bad.yaml"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (done.returncode, done.stdout, done.stderr) == (2, "", BAD_REPORT)
        assert "Traceback" not in done.stderr

    def test_same_bytes_whatever_the_hash_seed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        first = self.netgen("render", "specs/multihomed.yaml", PYTHONHASHSEED="1")
        second = self.netgen("render", "specs/multihomed.yaml", PYTHONHASHSEED="2")
        assert first.returncode == second.returncode == 0
        assert first.stdout == second.stdout
        monkeypatch.chdir(ROOT)
        assert first.stdout == expected_script("specs/multihomed.yaml")


class TestCompletion:
    """Shell completion comes from Typer; the installed console script must serve it."""

    def script(self) -> str:
        path = Path(sys.executable).parent / "netgen"
        assert path.exists(), f"the console script is not installed next to {sys.executable}"
        return str(path)

    def test_show_completion_prints_a_bash_completion_function(self) -> None:
        done = subprocess.run(
            [self.script(), "--show-completion", "bash"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "_netgen_completion()" in done.stdout
        assert "complete -o default -F _netgen_completion netgen" in done.stdout

    def test_completing_a_command_name(self) -> None:
        env = {**os.environ, "_NETGEN_COMPLETE": "complete_bash", "COMP_WORDS": "netgen ren"}
        env["COMP_CWORD"] = "1"
        done = subprocess.run([self.script()], capture_output=True, text=True, env=env, timeout=60)
        assert done.stdout.split() == ["render"]
