"""Golden mode: `netgen render SPEC --check FILE [--update]`, and the script it compares with.

A golden file is a rendered script kept in the repository; `--check` must notice a
change of a single byte (exit 1, a unified diff on stdout) and `--update` must fix it.
Nothing here touches the kernel.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from scriptcheck import single_host_specs

from netgen import __version__, golden, spec
from netgen.errors import NetgenError

ROOT = Path(__file__).resolve().parent.parent
SPECS = single_host_specs(ROOT / "specs")
WALKTHROUGH = "specs/walkthrough.yaml"

Run = Callable[..., tuple[int, str, str]]


OPTIONS = [
    [],
    ["--teardown"],
    ["--dialect", "brctl"],
    ["--dialect", "brctl", "--teardown"],
    ["--firewall", "nftables"],
    ["--firewall", "nftables", "--teardown"],
    ["--batch"],
    ["--batch", "--teardown"],
]


def keywords(options: list[str]) -> dict[str, object]:
    kw: dict[str, object] = {"teardown": "--teardown" in options, "batch": "--batch" in options}
    for key in ("dialect", "firewall"):
        if f"--{key}" in options:
            kw[key] = options[options.index(f"--{key}") + 1]
    return kw


class TestScript:
    @pytest.mark.parametrize("options", OPTIONS, ids=" ".join)
    @pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
    def test_is_what_render_prints(self, netgen: Run, path: Path, options: list[str]) -> None:
        """golden.script (used by --check and the pytest plugin) and render never disagree."""
        rel = str(path.relative_to(ROOT))
        code, out, err = netgen("render", rel, *options)
        if code != 0:  # a spec a dialect cannot express: the same error either way
            with pytest.raises(NetgenError) as info:
                golden.script(spec.load(rel), **keywords(options))  # type: ignore[arg-type]
            assert err == f"netgen: error: {info.value}\n"
            return
        assert golden.script(spec.load(rel), **keywords(options)) == out  # type: ignore[arg-type]


class TestDiff:
    def test_equal_is_empty(self) -> None:
        assert golden.diff(b"a\nb\n", "a\nb\n", "f.sh") == ""

    def test_one_byte(self) -> None:
        assert golden.diff(b"a\nb\nc\n", "a\nB\nc\n", "f.sh") == (
            "--- f.sh\t(committed)\n"
            "+++ f.sh\t(netgen render, now)\n"
            "@@ -1,3 +1,3 @@\n"
            " a\n"
            "-b\n"
            "+B\n"
            " c\n"
        )

    def test_a_lost_final_newline_shows(self) -> None:
        assert golden.diff(b"a\nb", "a\nb\n", "f.sh").splitlines()[3:] == [
            " a",
            "-b",
            "\\ No newline at end of file",
            "+b",
        ]

    def test_lines_split_on_newlines_only(self) -> None:
        """A form feed or a CR inside a line is part of the line, as diff(1) sees it."""
        lines = golden.diff(b"x\x0cy\n", "x\x0cz\r\n", "f.sh").split("\n")
        assert lines[3:] == ["-x\x0cy", "+x\x0cz\r", ""]

    def test_missing_file_is_a_diff_from_nothing(self) -> None:
        assert golden.diff(None, "a\n", "f.sh") == (
            "--- /dev/null\n+++ f.sh\t(netgen render, now)\n@@ -0,0 +1 @@\n+a\n"
        )

    def test_bytes_that_are_not_utf8_are_named(self) -> None:
        text = golden.diff(b"a\xff\n", "a\ufffd\n", "f.sh")
        assert text == "Binary files f.sh and rendered script differ (not UTF-8)\n"


class TestCheck:
    def test_a_fresh_golden_file_passes(self, netgen: Run, tmp_path: Path) -> None:
        target = tmp_path / "setup.sh"
        target.write_text(netgen("render", WALKTHROUGH)[1])
        assert netgen("render", WALKTHROUGH, "--check", str(target)) == (
            0,
            "",
            f"netgen: {target} is up to date\n",
        )

    def test_one_byte_changed_fails_with_a_diff_then_update_fixes_it(
        self, netgen: Run, tmp_path: Path
    ) -> None:
        target = tmp_path / "setup.sh"
        good = netgen("render", WALKTHROUGH)[1]
        bad = good.replace("172.17.42.99/16", "172.17.42.98/16")
        assert len(bad) == len(good) and bad != good
        target.write_text(bad)
        target.chmod(0o644)

        code, out, err = netgen("render", WALKTHROUGH, "--check", str(target))
        assert code == 1
        assert out.startswith(f"--- {target}\t(committed)\n+++ {target}\t(netgen render, now)\n")
        changed = [line for line in out.splitlines()[2:] if line[:1] in "+-"]
        assert changed == [
            "-ip -n web addr add 172.17.42.98/16 dev eth0",
            "+ip -n web addr add 172.17.42.99/16 dev eth0",
        ]
        assert err == (
            f"netgen: {target} is not what netgen renders now (diff above); if the change "
            f"is meant, update it with: netgen render {WALKTHROUGH} --check {target} --update\n"
        )
        assert target.read_text() == bad  # --check alone never writes

        assert netgen("render", WALKTHROUGH, "--check", str(target), "--update") == (
            0,
            "",
            f"netgen: updated {target}\n",
        )
        assert target.read_text() == good
        assert stat.S_IMODE(target.stat().st_mode) == 0o755
        assert os.listdir(tmp_path) == ["setup.sh"]  # written aside, then renamed
        assert netgen("render", WALKTHROUGH, "--check", str(target))[0] == 0

    def test_the_diff_applies_with_patch(self, netgen: Run, tmp_path: Path) -> None:
        """The diff is a real patch: `patch -p0` turns the stale file into the new one."""
        target = tmp_path / "teardown.sh"
        good = netgen("render", WALKTHROUGH, "--teardown")[1]
        target.write_text(good.replace("docker0", "docker1"))
        code, out, _ = netgen("render", WALKTHROUGH, "--teardown", "--check", str(target))
        assert code == 1
        subprocess.run(["patch", "-s", "-p0"], input=out, text=True, cwd="/", check=True)
        assert target.read_text() == good

    def test_same_options_as_render(self, netgen: Run, tmp_path: Path) -> None:
        """The golden file is compared with the script of the options given, and only it."""
        args = [WALKTHROUGH, "--dialect", "brctl", "--firewall", "nftables", "--teardown"]
        target = tmp_path / "teardown.sh"
        target.write_text(netgen("render", *args)[1])
        assert netgen("render", *args, "--check", str(target))[0] == 0
        code, out, err = netgen("render", WALKTHROUGH, "--teardown", "--check", str(target))
        assert code == 1
        v = __version__
        assert f"-# netgen:  {v}, dialect brctl\n+# netgen:  {v}, dialect iproute2\n" in out
        code, out, err = netgen("render", *args[:-1], "--check", str(target))
        assert code == 1
        assert (
            f"netgen render {WALKTHROUGH} --dialect=brctl --firewall=nftables "
            f"--check {target} --update" in err
        )

    def test_batch(self, netgen: Run, tmp_path: Path) -> None:
        target = tmp_path / "setup.sh"
        assert netgen("render", WALKTHROUGH, "--batch", "--check", str(target), "--update")[0] == 0
        assert target.read_text() == netgen("render", WALKTHROUGH, "--batch")[1]
        assert netgen("render", WALKTHROUGH, "--batch", "--check", str(target))[0] == 0
        assert netgen("render", WALKTHROUGH, "--check", str(target))[0] == 1

    def test_missing_file_fails_and_update_creates_it(self, netgen: Run, tmp_path: Path) -> None:
        target = tmp_path / "scripts" / "setup.sh"
        target.parent.mkdir()
        code, out, _ = netgen("render", WALKTHROUGH, "--check", str(target))
        assert code == 1 and out.startswith(f"--- /dev/null\n+++ {target}\t")
        assert not target.exists()
        assert netgen("render", WALKTHROUGH, "--check", str(target), "--update")[0] == 0
        assert target.read_text() == netgen("render", WALKTHROUGH)[1]
        assert stat.S_IMODE(target.stat().st_mode) == 0o755

    def test_update_of_an_up_to_date_file_leaves_it_alone(
        self, netgen: Run, tmp_path: Path
    ) -> None:
        target = tmp_path / "setup.sh"
        target.write_text(netgen("render", WALKTHROUGH)[1])
        target.chmod(0o600)
        before = target.stat()
        code, out, err = netgen("render", WALKTHROUGH, "--check", str(target), "--update")
        assert (code, out, err) == (0, "", f"netgen: {target} is up to date\n")
        after = target.stat()
        assert (after.st_ino, after.st_mtime_ns, after.st_mode) == (
            before.st_ino,
            before.st_mtime_ns,
            before.st_mode,
        )


class TestErrors:
    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--update"], "--update rewrites the file given to --check: give --check FILE"),
            (
                ["--check", "x.sh", "-o", "y.sh"],
                "--check compares with FILE, -o writes one: give only one of them",
            ),
            (
                ["--check", "x.sh", "--from", WALKTHROUGH],
                "--check does not take --from: a migration script is not kept",
            ),
        ],
    )
    def test_usage(self, netgen: Run, args: list[str], message: str) -> None:
        assert netgen("render", WALKTHROUGH, *args) == (2, "", f"netgen: error: {message}\n")

    def test_bad_spec_is_exit_2_and_writes_nothing(self, netgen: Run, tmp_path: Path) -> None:
        bad = tmp_path / "bad.yaml"
        bad.write_text("version: 1\nbridgs: {}\n")
        target = tmp_path / "setup.sh"
        code, out, err = netgen("render", str(bad), "--check", str(target), "--update")
        assert (code, out) == (2, "")
        assert "unknown key 'bridgs'" in err
        assert not target.exists()

    def test_unwritable_update_is_exit_2(self, netgen: Run, tmp_path: Path) -> None:
        target = tmp_path / "missing-dir" / "setup.sh"
        code, out, err = netgen("render", WALKTHROUGH, "--check", str(target), "--update")
        assert (code, out) == (2, "")
        assert f"cannot write {str(target)!r}" in err
