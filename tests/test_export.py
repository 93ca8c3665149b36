"""`netgen export ansible`: the files, their determinism, and that Ansible parses them.

The exported scripts must be byte for byte what `netgen render SPEC --host H
[--teardown]` prints: they are the audited artefact, Ansible only delivers them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from netgen import export, spec
from netgen.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
MULTIHOST = "specs/multihost.yaml"
HOSTS = ("h1", "h2", "h3")


def netgen(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m netgen ARGS` from the repository root, as a shell runs it."""
    return subprocess.run(
        [sys.executable, "-m", "netgen", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def exported(tmp_path: Path, *flags: str, spec_file: str = MULTIHOST) -> Path:
    out = tmp_path / "ansible"
    res = netgen("export", "ansible", spec_file, "-o", str(out), *flags)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    return out


def tree(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


class TestFiles:
    def test_layout_and_modes(self, tmp_path: Path) -> None:
        out = exported(tmp_path)
        names = sorted(tree(out))
        assert names == sorted(
            ["inventory.yml", "site.yml", "teardown.yml"]
            + [f"files/{h}/{n}" for h in HOSTS for n in ("setup.sh", "teardown.sh")]
        )
        assert (out / "files/h1/setup.sh").stat().st_mode & 0o777 == 0o755
        assert (out / "site.yml").stat().st_mode & 0o777 == 0o644

    @pytest.mark.parametrize("flags", [(), ("--dialect", "brctl", "--firewall", "nftables")])
    def test_scripts_are_what_render_prints(self, tmp_path: Path, flags: tuple[str, ...]) -> None:
        out = exported(tmp_path, *flags)
        for host in HOSTS:
            for name, extra in (("setup.sh", ()), ("teardown.sh", ("--teardown",))):
                res = netgen("render", MULTIHOST, "--host", host, *flags, *extra)
                assert res.returncode == 0, res.stderr
                assert (out / "files" / host / name).read_text() == res.stdout

    def test_same_spec_same_bytes(self, tmp_path: Path) -> None:
        first = tree(exported(tmp_path / "one"))
        second = tree(exported(tmp_path / "two"))
        assert first == second

    def test_inventory(self, tmp_path: Path) -> None:
        out = exported(tmp_path)
        inventory = load(out / "inventory.yml")
        group = inventory["netgen_hosts"]
        assert list(group["hosts"]) == list(HOSTS)
        assert group["vars"] == {
            "netgen_dir": "/run/netgen/ansible/multihost",
            "netgen_update_cache": False,
        }
        for index, host in enumerate(HOSTS, start=1):
            entry = group["hosts"][host]
            assert entry["ansible_host"] == f"192.0.2.1{index}"
            setup = (out / "files" / host / "setup.sh").read_bytes()
            assert entry["netgen_sha256"] == hashlib.sha256(setup).hexdigest()
            assert entry["netgen_packages"] == ["iproute2", "iptables"]

    def test_packages_follow_the_commands(self, tmp_path: Path) -> None:
        out = exported(tmp_path, "--dialect", "brctl", "--firewall", "nftables")
        packages = load(out / "inventory.yml")["netgen_hosts"]["hosts"]["h1"]["netgen_packages"]
        assert packages == ["bridge-utils", "iproute2", "nftables"]

    def test_vars_and_ansible_host_override(self, tmp_path: Path) -> None:
        src = tmp_path / "fleet.yaml"
        src.write_text(
            "version: 1\nname: fleet\nhosts:\n"
            "  h1: {address: 192.0.2.11, vars: {ansible_host: h1.example.net,"
            " ansible_user: admin, ansible_become: true, rack: [1, 'b']}}\n"
            "  h2: {address: 192.0.2.12, vars: {netgen_dir: /srv/netgen}}\n"
            "bridges:\n  br0: {subnet: 10.10.0.0/24}\n"
            "containers:\n  a: {host: h1, network: br0}\n  b: {host: h2, network: br0}\n"
        )
        out = exported(tmp_path, spec_file=str(src))
        hosts = load(out / "inventory.yml")["netgen_hosts"]["hosts"]
        assert hosts["h1"]["ansible_host"] == "h1.example.net"
        assert hosts["h1"]["ansible_user"] == "admin"
        assert hosts["h1"]["ansible_become"] is True
        assert hosts["h1"]["rack"] == [1, "b"]
        assert hosts["h2"]["ansible_host"] == "192.0.2.12"
        assert hosts["h2"]["netgen_dir"] == "/srv/netgen"

    def test_reserved_vars_are_refused(self, tmp_path: Path) -> None:
        src = tmp_path / "fleet.yaml"
        src.write_text(
            "version: 1\nname: fleet\nhosts:\n"
            "  h1: {address: 192.0.2.11, vars: {netgen_sha256: x}}\n"
            "bridges:\n  br0: {subnet: 10.10.0.0/24}\ncontainers:\n  a: {network: br0}\n"
        )
        with pytest.raises(UsageError, match="hosts.h1.vars.netgen_sha256: netgen sets"):
            export.ansible(spec.load(src))

    def test_a_spec_without_hosts_is_refused(self, tmp_path: Path) -> None:
        res = netgen("export", "ansible", "specs/walkthrough.yaml", "-o", str(tmp_path / "x"))
        assert res.returncode == 2
        assert res.stdout == ""
        assert "spec 'walkthrough' has no hosts: section" in res.stderr
        assert not (tmp_path / "x").exists()


class TestPlaybooks:
    def test_site_runs_the_script_only_when_the_marker_differs(self, tmp_path: Path) -> None:
        play = load(exported(tmp_path) / "site.yml")[0]
        assert play["hosts"] == "netgen_hosts"
        tasks = {t["name"]: t for t in play["tasks"]}
        assert tasks["Install the packages the scripts need"]["ansible.builtin.apt"] == {
            "name": "{{ netgen_packages }}",
            "state": "present",
            "update_cache": "{{ netgen_update_cache | bool }}",
        }
        build = tasks["Build the network"]
        assert build["when"] == "netgen_applied != netgen_sha256"
        assert [t["name"] for t in build["rescue"]] == [
            "Undo what the failed setup built",
            "Report the failure",
        ]
        order = list(tasks)
        assert order.index("Tear down the network the previous script built") < order.index(
            "Build the network"
        )
        assert order.index("Build the network") < order.index("Mark it applied")

    def test_ansible_parses_them(self, tmp_path: Path) -> None:
        playbook = shutil.which("ansible-playbook")
        assert playbook is not None, "ansible-playbook not found: pip install -e '.[test]'"
        out = exported(tmp_path)
        env = {
            **os.environ,
            "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
            "ANSIBLE_NOCOLOR": "1",
        }
        for name in ("site.yml", "teardown.yml"):
            res = subprocess.run(
                [playbook, "-i", "inventory.yml", "--syntax-check", name],
                cwd=out,
                capture_output=True,
                text=True,
                env=env,
            )
            assert res.returncode == 0, res.stdout + res.stderr
            assert f"playbook: {name}" in res.stdout
