"""`netgen init`: a starter spec that validates, and never a silent overwrite."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from netgen import graph, lower, schema, spec

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def netgen(netgen: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Run:
    """conftest's `netgen`, run in an empty directory."""
    monkeypatch.chdir(tmp_path)
    return netgen


class TestStarter:
    def test_writes_netgen_yaml_that_validates(self, netgen: Run, tmp_path: Path) -> None:
        assert netgen("init") == (
            0,
            "",
            "wrote netgen.yaml; next: netgen validate netgen.yaml\n",
        )
        assert [p.name for p in tmp_path.iterdir()] == ["netgen.yaml"]  # no temp file left
        code, out, err = netgen("validate", "netgen.yaml")
        assert (code, err) == (0, "")
        assert out.startswith("netgen.yaml: spec 'demo' is valid: 1 bridge, 2 containers")

    def test_what_it_builds(self, netgen: Run, tmp_path: Path) -> None:
        netgen("init")
        s = spec.load(tmp_path / "netgen.yaml")
        assert [(c.name, str(c.address)) for c in s.containers] == [
            ("web", "10.77.0.10"),
            ("db", "10.77.0.2"),
        ]
        assert [(p.host_port, p.container_port) for p in s.container("web").ports] == [(8080, 80)]
        assert lower.lower(s)
        assert 'b0 ---|"' in graph.mermaid(s)

    def test_the_schema_accepts_it_and_the_modeline_is_first(
        self, netgen: Run, tmp_path: Path
    ) -> None:
        netgen("init")
        text = (tmp_path / "netgen.yaml").read_text()
        assert text.splitlines()[0] == "# yaml-language-server: $schema=./netgen.schema.json"
        assert "netgen schema > netgen.schema.json" in text
        Draft202012Validator(schema.schema()).validate(yaml.safe_load(text))

    def test_every_key_is_explained(self, netgen: Run, tmp_path: Path) -> None:
        netgen("init")
        for line in (tmp_path / "netgen.yaml").read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                assert " # " in line, f"no comment on {line!r}"

    def test_another_file_name(self, netgen: Run, tmp_path: Path) -> None:
        (tmp_path / "net").mkdir()
        assert netgen("init", "net/lab.yaml")[0] == 0
        assert netgen("validate", "net/lab.yaml")[0] == 0
        assert os.stat(tmp_path / "net/lab.yaml").st_mode & 0o777 == 0o644


class TestNoOverwrite:
    def test_refuses_an_existing_file(self, netgen: Run, tmp_path: Path) -> None:
        (tmp_path / "netgen.yaml").write_text("mine\n")
        assert netgen("init") == (
            2,
            "",
            "netgen: error: 'netgen.yaml' already exists; use --force to overwrite it\n",
        )
        assert (tmp_path / "netgen.yaml").read_text() == "mine\n"
        assert [p.name for p in tmp_path.iterdir()] == ["netgen.yaml"]

    def test_refuses_a_dangling_symlink(self, netgen: Run, tmp_path: Path) -> None:
        (tmp_path / "netgen.yaml").symlink_to(tmp_path / "elsewhere.yaml")
        assert netgen("init")[0] == 2
        assert not (tmp_path / "elsewhere.yaml").exists()

    def test_force_overwrites(self, netgen: Run, tmp_path: Path) -> None:
        (tmp_path / "netgen.yaml").write_text("mine\n")
        assert netgen("init", "--force")[0] == 0
        assert netgen("validate", "netgen.yaml")[0] == 0

    def test_a_missing_directory_is_a_usage_error(self, netgen: Run) -> None:
        code, out, err = netgen("init", "no/such/dir/netgen.yaml")
        assert (code, out) == (2, "")
        assert err.startswith("netgen: error: cannot write 'no/such/dir/netgen.yaml': ")
