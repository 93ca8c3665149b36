"""`netgen export ansible` rolled out by the real `ansible-playbook` over SSH.

Three simulated hosts (a :class:`netgen.sandbox.Fleet`), each running Debian's sshd on
its underlay address with a throw-away key; the controller is the underlay sandbox.
The playbooks run against specs/multihost.yaml: build, check the network across
hosts, run again (nothing changes), roll out a changed spec (the old network is torn
down first), tear down (every host as before). Then the same scripts run by hand must
give the same state as the playbook.

The hosts share the machine's filesystem, so Ansible's apt task sees the real package
database: the test refuses to run if that task would install anything.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from netgen.sandbox import OUTSIDE_NETNS, Fleet
from tests.test_fleet import make_keys
from tests.test_sandbox import TCP_SERVER, wait_ready

ROOT = Path(__file__).resolve().parent.parent
MULTIHOST = "specs/multihost.yaml"
RECAP_RE = re.compile(
    r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)
# Addresses IPAM gives the containers of specs/multihost.yaml (gateways .1-.3 first).
A, B, C = "10.10.0.4", "10.10.0.5", "10.10.0.6"


@dataclass
class Controller:
    fleet: Fleet
    playbook: str
    env: dict[str, str]
    tmp: Path

    def play(self, directory: Path, name: str) -> dict[str, dict[str, int]]:
        """Run a playbook from the underlay; its PLAY RECAP, per host (fails the test if
        ansible-playbook fails)."""
        res = self.run(directory, name)
        assert res.returncode == 0, f"{name} failed:\n{res.stdout}\n{res.stderr}"
        return recap(res.stdout)

    def run(self, directory: Path, name: str) -> subprocess.CompletedProcess[str]:
        return self.fleet.run(
            None,
            [self.playbook, "-i", "inventory.yml", name],
            env=self.env,
            cwd=str(directory),
            check=False,
            timeout=900,
        )


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP's counts per host."""
    _, _, tail = output.rpartition("PLAY RECAP")
    return {
        host: {"ok": int(ok), "changed": int(ch), "unreachable": int(un), "failed": int(fa)}
        for host, ok, ch, un, fa in RECAP_RE.findall(tail)
    }


def export(spec_file: str | Path, out: Path) -> Path:
    res = subprocess.run(
        [sys.executable, "-m", "netgen", "export", "ansible", str(spec_file), "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert res.returncode == 0, res.stderr
    return out


def refuse_to_install(inventory: Path) -> None:
    """The apt task must find everything installed: the hosts' /usr is the machine's."""
    data: Any = yaml.safe_load(inventory.read_text())
    wanted = sorted(
        {p for h in data["netgen_hosts"]["hosts"].values() for p in h["netgen_packages"]}
    )
    for package in wanted:
        res = subprocess.run(
            ["dpkg-query", "-W", "-f=${db:Status-Abbrev}", package],
            capture_output=True,
            text=True,
        )
        if not res.stdout.startswith("ii"):
            pytest.fail(f"Debian package {package} is not installed (make deps installs it)")


@pytest.fixture(scope="module")
def controller(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    playbook = shutil.which("ansible-playbook")
    assert playbook is not None, "ansible-playbook not found: pip install -e '.[test]'"
    assert os.path.exists("/usr/bin/python3"), "the hosts' Python: Debian's python3"
    tmp = tmp_path_factory.mktemp("ansible")
    host_key, client_key, authorized = make_keys(tmp)
    for host in fleet.hosts:
        fleet.start_sshd(host, tmp, host_key=host_key, authorized_keys=authorized)
    env = {
        **os.environ,
        "ANSIBLE_HOME": str(tmp / "home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "local"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp / "cp"),
        # On the hosts: their private /run/netgen, gone with them.
        "ANSIBLE_REMOTE_TMP": "/run/netgen/.ansible-tmp",
        "ANSIBLE_REMOTE_USER": "root",
        "ANSIBLE_PRIVATE_KEY_FILE": client_key,
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s "
        "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",  # has python3-apt
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
    }
    yield Controller(fleet, playbook, env, tmp)


def cross_host_pings(fleet: Fleet) -> dict[str, bool]:
    return {
        "a(h1) -> b(h2)": fleet.host("h1").ping("a", B),
        "b(h2) -> c(h3)": fleet.host("h2").ping("b", C),
        "c(h3) -> a(h1)": fleet.host("h3").ping("c", A),
        "a -> c over the p2p link": fleet.host("h1").ping("a", "10.20.0.2"),
        "c -> a over the p2p link": fleet.host("h3").ping("c", "10.20.0.1"),
    }


def published(fleet: Fleet, port: int) -> bool:
    """A TCP connect from outside to h2:port reaches a server on container b's port 80."""
    server = fleet.host("h2").spawn(
        [sys.executable, "-I", "-c", TCP_SERVER, "0.0.0.0", "80"], netns="b"
    )
    try:
        wait_ready(server)
        return fleet.underlay.connect(OUTSIDE_NETNS, fleet.address("h2"), port)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


def test_rollout_with_ansible(controller: Controller) -> None:
    fleet = controller.fleet
    out = export(MULTIHOST, controller.tmp / "v1")
    refuse_to_install(out / "inventory.yml")
    before = fleet.states()

    first = controller.play(out, "site.yml")
    assert set(first) == {"h1", "h2", "h3"}
    assert all(r["changed"] > 0 and r["failed"] == 0 for r in first.values()), first
    assert all(cross_host_pings(fleet).values()), cross_host_pings(fleet)
    assert published(fleet, 8080)
    built = fleet.states()

    second = controller.play(out, "site.yml")
    assert {h: (r["changed"], r["failed"]) for h, r in second.items()} == {
        h: (0, 0) for h in ("h1", "h2", "h3")
    }
    assert fleet.states() == built

    # A changed spec: b's port moves to 8081. Its scripts differ on every host (the
    # sha256 of the spec is in each header), so every host runs the old teardown first.
    changed_spec = controller.tmp / "multihost.yaml"
    text = (ROOT / MULTIHOST).read_text()
    assert '"8080:80"' in text
    changed_spec.write_text(text.replace('"8080:80"', '"8081:80"'))
    out2 = export(changed_spec, controller.tmp / "v2")
    third = controller.play(out2, "site.yml")
    assert all(r["changed"] > 0 and r["failed"] == 0 for r in third.values()), third
    assert published(fleet, 8081)
    assert not published(fleet, 8080)
    assert all(cross_host_pings(fleet).values())

    fourth = controller.play(out2, "teardown.yml")
    assert all(r["failed"] == 0 for r in fourth.values())
    assert fleet.states() == before

    # The same scripts by hand (no Ansible): the same state as the playbook built.
    for host in ("h1", "h2", "h3"):
        fleet.run(host, ["bash", str(out / "files" / host / "setup.sh")])
    assert fleet.states() == built
    for host in ("h1", "h2", "h3"):
        fleet.run(host, ["bash", str(out / "files" / host / "teardown.sh")])
    assert fleet.states() == before


def test_a_failed_setup_is_rolled_back_and_not_marked(controller: Controller) -> None:
    """h3 already has a bridge br0 not netgen's: its setup fails, the rescue runs its teardown
    (which removes only what carries the spec's mark), and no marker is written."""
    fleet = controller.fleet
    out = export(MULTIHOST, controller.tmp / "failing")
    before = fleet.states()
    fleet.run("h3", ["ip", "link", "add", "br0", "type", "bridge"])
    try:
        occupied = fleet.state("h3")
        res = controller.run(out, "site.yml")
        assert res.returncode != 0
        assert "setup.sh failed and was rolled back" in res.stdout, res.stdout
        counts = recap(res.stdout)
        assert counts["h3"]["failed"] == 1
        assert (counts["h1"]["failed"], counts["h2"]["failed"]) == (0, 0)
        assert fleet.state("h3") == occupied
        marker = fleet.run(
            "h3", ["test", "-e", "/run/netgen/ansible/multihost/applied"], check=False
        )
        assert marker.returncode == 1
    finally:
        fleet.run("h3", ["ip", "link", "del", "br0"], check=False)
    down = controller.play(out, "teardown.yml")
    assert all(r["failed"] == 0 for r in down.values())
    assert fleet.states() == before
