"""`--host NAME` on render, ops, apply, destroy, plan and check; `validate` names the hosts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from netgen import golden, spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = "specs/multihost.yaml"
Run = Callable[..., tuple[int, str, str]]


COMMANDS = [
    ("render",),
    ("ops",),
    ("apply", "--dry-run"),
    ("destroy", "--dry-run"),
    ("plan",),
    ("check",),
]


class TestHostChoice:
    @pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
    def test_several_hosts_need_one(self, netgen: Run, command: tuple[str, ...]) -> None:
        assert netgen(*command, EXAMPLE) == (
            2,
            "",
            "netgen: error: spec 'multihost' spans 3 hosts (h1, h2, h3): say which one's part "
            "with --host NAME\n",
        )

    @pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
    def test_an_unknown_host_gets_a_hint(self, netgen: Run, command: tuple[str, ...]) -> None:
        assert netgen(*command, EXAMPLE, "--host", "h22") == (
            2,
            "",
            "netgen: error: spec 'multihost' has no host named 'h22'; did you mean 'h2'? "
            "(hosts: h1, h2, h3)\n",
        )

    def test_a_spec_without_hosts_refuses_one(self, netgen: Run) -> None:
        code, out, err = netgen("render", "specs/walkthrough.yaml", "--host", "h1")
        assert (code, out) == (2, "")
        assert "has no 'hosts:', it runs on the local host: leave out --host" in err


class TestPerHost:
    def test_validate_names_the_hosts(self, netgen: Run) -> None:
        assert netgen("validate", EXAMPLE) == (
            0,
            "specs/multihost.yaml: spec 'multihost' is valid: 3 hosts (h1, h2, h3), 1 bridge, "
            "4 containers (4 namespaces), 1 link, 4 veth pairs, 5 VXLAN devices, 70 ops\n",
            "",
        )

    @pytest.mark.parametrize("teardown", [False, True])
    def test_render_is_that_hosts_script(self, netgen: Run, teardown: bool) -> None:
        code, out, _ = netgen("render", EXAMPLE, "--host", "h2", *["--teardown"] * teardown)
        assert code == 0
        assert out == golden.script(spec.load(EXAMPLE), host="h2", teardown=teardown)

    def test_ops_are_that_hosts(self, netgen: Run) -> None:
        code, out, _ = netgen("ops", EXAMPLE, "--host", "h3")
        assert code == 0
        names = [op.get("name") for op in json.loads(out) if op["op"] == "AddNetns"]
        assert names == ["c"]

    def test_golden_check_says_to_update_with_the_host(self, netgen: Run, tmp_path: Path) -> None:
        stale = tmp_path / "h1.sh"
        stale.write_text("#!/usr/bin/env bash\n")
        code, _, err = netgen("render", EXAMPLE, "--host", "h1", "--check", str(stale))
        assert code == 1
        assert f"netgen render {EXAMPLE} --host=h1 --check {stale} --update" in err

    def test_migration_per_host(self, netgen: Run, tmp_path: Path) -> None:
        old = tmp_path / "old.yaml"
        old.write_text((ROOT / EXAMPLE).read_text().replace('ports: ["8080:80"]', "ports: []"))
        code, out, err = netgen("render", EXAMPLE, "--from", str(old), "--host", "h2")
        assert code == 0, err
        assert "# netgen migration script for spec 'multihost' on host 'h2'\n" in out
        assert "--dport 8080" in out
        code, out, err = netgen("render", EXAMPLE, "--from", str(old), "--host", "h1")
        assert "nothing to do" in err


def test_the_pytest_plugin_renders_one_host(netgen: Run) -> None:
    from netgen import pytest_plugin

    code, out, _ = netgen("render", EXAMPLE, "--host", "h3", "--teardown")
    assert code == 0
    assert pytest_plugin.rendered(ROOT / EXAMPLE, shown_as=EXAMPLE, host="h3", teardown=True) == out
