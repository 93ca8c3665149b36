"""The per-host scripts of specs/multihost.yaml, run by hand in simulated hosts (no Ansible).

Each host of the spec is a host of a :class:`netgen.sandbox.Fleet` (its own sandbox, on
the underlay 192.0.2.0/24 at the address the spec gives it); its script is what `netgen
render specs/multihost.yaml --host H` prints, run with `bash`. The hosts are built once
for the module; the last test tears them down and compares with the state before.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from netgen import golden, spec
from netgen import model as m
from netgen.sandbox import OUTSIDE_NETNS, Fleet
from tests.test_sandbox import TCP_SERVER, wait_ready

ROOT = Path(__file__).resolve().parent.parent
MULTIHOST = ROOT / "specs/multihost.yaml"
OVERLAY_MTU = 1500 - 50  # the underlay's MTU less VXLAN over IPv4


@dataclass
class Built:
    spec: m.Spec
    scripts: dict[str, Path]  # "h1" -> setup.sh, "h1-teardown" -> teardown.sh
    before: dict[str, dict[str, Any]]

    def host_of(self, container: str) -> str:
        return str(self.spec.container(container).host)

    def address(self, container: str) -> str:
        return str(self.spec.container(container).address)


def write_scripts(s: m.Spec, directory: Path) -> dict[str, Path]:
    """Each host's setup and teardown script, as `netgen render --host H` prints them."""
    out = {}
    for host in s.hosts:
        for key, teardown in ((host.name, False), (f"{host.name}-teardown", True)):
            path = directory / f"{key}.sh"
            path.write_text(golden.script(s, host=host.name, teardown=teardown))
            out[key] = path
    return out


def run_scripts(fleet: Fleet, scripts: dict[str, Path], hosts: list[str], suffix: str) -> None:
    for host in hosts:
        res = fleet.run(host, ["bash", str(scripts[host + suffix])], check=False)
        assert res.returncode == 0, f"{host}{suffix}: {res.stderr}"


@pytest.fixture(scope="module")
def built(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    s = spec.load(MULTIHOST)
    hosts = [h.name for h in s.hosts]
    assert {h: str(s.host(h).address) for h in hosts} == {h: fleet.address(h) for h in hosts}
    scripts = write_scripts(s, tmp_path_factory.mktemp("multihost"))
    before = fleet.states()
    run_scripts(fleet, scripts, hosts, "")
    yield Built(s, scripts, before)
    # Teardown scripts are safe to re-run: this cleans up if the last test did not run.
    for host in hosts:
        fleet.run(host, ["bash", str(scripts[f"{host}-teardown"])], check=False)


def ping(fleet: Fleet, built: Built, src: str, address: str, *extra: str) -> bool:
    argv = ["ping", "-n", "-c", "1", "-W", "2", *extra, address]
    res = fleet.in_netns(built.host_of(src), src, argv, check=False)
    assert res.returncode in (0, 1, 2), res.stderr
    return res.returncode == 0


def test_containers_on_different_hosts_reach_each_other(fleet: Fleet, built: Built) -> None:
    pairs = [("a", "b"), ("a", "c"), ("b", "c"), ("d", "c"), ("d", "b")]
    for x, y in pairs:
        assert built.host_of(x) != built.host_of(y)
        assert ping(fleet, built, x, built.address(y)), f"{x} -> {y}"
        assert ping(fleet, built, y, built.address(x)), f"{y} -> {x}"
    assert ping(fleet, built, "a", built.address("d"))  # same host: the local bridge


def test_each_container_routes_through_its_own_host(fleet: Fleet, built: Built) -> None:
    br0 = built.spec.bridge("br0")
    for c in built.spec.containers:
        host = str(c.host)
        gateway = str(br0.on(host).address)
        assert ping(fleet, built, c.name, gateway), f"{c.name} -> gateway {gateway} of {host}"
        route = fleet.in_netns(host, c.name, ["ip", "-4", "route", "show", "default"]).stdout
        assert route.split()[:3] == ["default", "via", gateway]
    gateways = [str(br0.on(h).address) for h in ("h1", "h2", "h3")]
    assert gateways == ["10.10.0.1", "10.10.0.2", "10.10.0.3"]


def test_point_to_point_link_across_hosts(fleet: Fleet, built: Built) -> None:
    assert (built.host_of("a"), built.host_of("c")) == ("h1", "h3")
    assert ping(fleet, built, "a", "10.20.0.2")
    assert ping(fleet, built, "c", "10.20.0.1")
    kind = fleet.in_netns("h1", "a", ["ip", "-d", "-j", "link", "show", "eth1"]).stdout
    assert '"info_kind":"vxlan"' in kind


def test_mtu_leaves_room_for_vxlan(fleet: Fleet, built: Built) -> None:
    for c in built.spec.containers:
        mtu = fleet.in_netns(built.host_of(c.name), c.name, ["cat", "/sys/class/net/eth0/mtu"])
        assert int(mtu.stdout) == OVERLAY_MTU, c.name
    # 1422 bytes of ICMP data + 8 ICMP + 20 IP = 1450: the largest unfragmented packet.
    assert ping(fleet, built, "a", built.address("b"), "-M", "do", "-s", "1422")
    assert ping(fleet, built, "c", built.address("a"), "-M", "do", "-s", "1422")
    too_big = ["ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1423", built.address("b")]
    res = fleet.in_netns("h1", "a", too_big, check=False)
    assert res.returncode != 0 and "message too long" in (res.stdout + res.stderr).lower()


def test_published_port_on_h2_answers_from_outside(fleet: Fleet, built: Built) -> None:
    h2 = fleet.host("h2")
    server = h2.spawn([sys.executable, "-I", "-c", TCP_SERVER, "0.0.0.0", "80"], netns="b")
    try:
        wait_ready(server)
        assert fleet.underlay.connect(OUTSIDE_NETNS, fleet.address("h2"), 8080)
        # Published on h2 only: the same port on h1 and h3 leads nowhere.
        for other in ("h1", "h3"):
            assert not fleet.underlay.connect(
                OUTSIDE_NETNS, fleet.address(other), 8080, timeout_s=1
            )
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


def test_teardown_returns_every_host_to_its_state_before(fleet: Fleet, built: Built) -> None:
    hosts = list(built.before)
    run_scripts(fleet, built.scripts, hosts, "-teardown")
    assert fleet.states() == built.before
