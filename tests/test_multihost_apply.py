"""One host's part of a multi-host spec, applied to a real kernel inside the sandbox.

A veth pair stands in for the underlay (`eth0`, 192.0.2.11, host h1 of the example):
the VXLAN device, its flood entries, the gateway and the MTUs are as designed; apply
is idempotent; destroy and a rollback leave the sandbox as it was; the rendered
script builds the same. Traffic across hosts is tested with simulated hosts in
tests/test_multihost.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from netgen import golden, lower, spec
from netgen import ops as o
from netgen.sandbox import Fleet, Sandbox
from tests.test_sandbox import TCP_SERVER, wait_ready

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "specs" / "multihost.yaml"
NETGEN = [sys.executable, "-m", "netgen"]

kernel = pytest.mark.kernel

# Runs inside the sandbox: apply host HOST's part, the FAIL_AT-th command failing.
DRIVER = textwrap.dedent(
    """
    import json, sys
    from netgen import execute, lower, spec
    from netgen.errors import HostError

    path, host, fail_at, fast = sys.argv[1:]
    s = spec.load(path)
    runner = execute.RecordingRunner(execute.RealRunner(), fail_at=int(fail_at))
    out = {"rc": 0, "error": ""}
    try:
        execute.apply(s, lower.lower(s, host), runner=runner, fast=fast == "fast")
    except HostError as exc:
        out.update(rc=1, error=str(exc))
    out["commands"] = [list(c.argv) for c in runner.commands]
    print(json.dumps(out))
    """
)


def netgen(sb: Sandbox, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sb.run([*NETGEN, *args], check=check, timeout=300)


def underlay(sb: Sandbox, address: str = "192.0.2.11") -> None:
    """The host's NIC on the underlay: a veth end (no dummy module on this kernel), and
    iptables' nat and filter tables, which every real host has (see test_apply.prepare)."""
    sb.run(["ip", "link", "add", "name", "eth0", "type", "veth", "peer", "name", "ul0"])
    sb.run(["ip", "addr", "add", f"{address}/24", "dev", "eth0"])
    sb.run(["ip", "link", "set", "dev", "eth0", "up"])
    sb.run(["ip", "link", "set", "dev", "ul0", "up"])
    for table in ("nat", "filter"):
        sb.run(["iptables", "-w", "-t", table, "-N", "NETGEN-TEST-PREP"])
        sb.run(["iptables", "-w", "-t", table, "-X", "NETGEN-TEST-PREP"])


def link(sb: Sandbox, dev: str, netns: str | None = None) -> dict[str, Any]:
    where = ["-n", netns] if netns is not None else []
    (item,) = json.loads(sb.run(["ip", *where, "-j", "-d", "addr", "show", "dev", dev]).stdout)
    return dict(item)


def flood(sb: Sandbox, dev: str) -> set[str]:
    entries = json.loads(sb.run(["bridge", "-j", "fdb", "show", "dev", dev]).stdout)
    return {e["dst"] for e in entries if e["mac"] == "00:00:00:00:00:00" and "dst" in e}


def dry_run(sb: Sandbox, *args: str) -> list[str]:
    return netgen(sb, "apply", "--dry-run", "--host", "h1", *args, str(EXAMPLE)).stdout.splitlines()


@kernel
def test_h1_is_built_as_designed_idempotent_and_destroyed(sandbox: Sandbox) -> None:
    underlay(sandbox)
    before = sandbox.state()
    netgen(sandbox, "apply", "--host", "h1", str(EXAMPLE))

    vx = link(sandbox, "vx100")
    info = vx["linkinfo"]["info_data"]
    assert vx["linkinfo"]["info_kind"] == "vxlan"
    assert (info["id"], info["local"], info["port"], info.get("learning")) == (
        100,
        "192.0.2.11",
        4789,
        True,
    )
    assert (vx["mtu"], vx["master"], vx["ifalias"]) == (1450, "br0", "netgen:multihost")
    assert "UP" in vx["flags"]
    assert flood(sandbox, "vx100") == {"192.0.2.12", "192.0.2.13"}

    br0 = link(sandbox, "br0")
    assert br0["mtu"] == 1450
    inet = [(a["local"], a["prefixlen"]) for a in br0["addr_info"] if a["family"] == "inet"]
    assert inet == [("10.10.0.1", 24)]

    p2p = link(sandbox, "eth1", "a")
    data = p2p["linkinfo"]["info_data"]
    assert (p2p["linkinfo"]["info_kind"], data["id"], data["local"], data["remote"]) == (
        "vxlan",
        200,
        "192.0.2.11",
        "192.0.2.13",
    )
    assert p2p["mtu"] == 1450
    assert [a["local"] for a in p2p["addr_info"] if a["family"] == "inet"] == ["10.20.0.1"]
    for ns in ("a", "d"):
        assert link(sandbox, "eth0", ns)["mtu"] == 1450
        assert sandbox.ping(ns, "10.10.0.1"), f"{ns} cannot reach its host's gateway"
    route = json.loads(sandbox.run(["ip", "-n", "a", "-j", "route", "show", "default"]).stdout)
    assert route[0]["gateway"] == "10.10.0.1"
    # the tunnel's socket lives on the host, not in the container
    assert ":4789" in sandbox.run(["ss", "-uan"]).stdout
    assert ":4789" not in sandbox.run(["ip", "netns", "exec", "a", "ss", "-uan"]).stdout
    # nothing of h2's or h3's part
    names = sandbox.run(["ip", "netns", "list"]).stdout
    assert "b" not in names.split() and "c" not in names.split()

    applied = sandbox.state()
    assert dry_run(sandbox) == []
    assert dry_run(sandbox, "--subprocess") == []
    assert "already applied" in netgen(sandbox, "apply", "--host", "h1", str(EXAMPLE)).stderr
    assert sandbox.state() == applied

    # the rendered script builds the same host, which netgen then takes as its own
    s = spec.load(EXAMPLE)
    with Sandbox.start() as other:
        underlay(other)
        other_before = other.state()
        other.run(["bash"], input=golden.script(s, host="h1"))
        assert other.state() == applied
        assert dry_run(other) == []
        netgen(other, "destroy", "--host", "h1", str(EXAMPLE))
        assert other.state() == other_before
        other.run(["bash"], input=golden.script(s, host="h1", dialect="brctl"))
        assert other.state() == applied
        other.run(["bash"], input=golden.script(s, host="h1", teardown=True))
        assert other.state() == other_before
        other.run(["bash"], input=golden.script(s, host="h1", batch=True))
        assert other.state() == applied
        other.run(["bash"], input=golden.script(s, host="h1", batch=True, teardown=True))
        assert other.state() == other_before

    netgen(sandbox, "destroy", "--host", "h1", str(EXAMPLE))
    assert sandbox.state() == before


@kernel
def test_a_flood_entry_removed_by_hand_is_put_back(sandbox: Sandbox) -> None:
    underlay(sandbox)
    netgen(sandbox, "apply", "--host", "h1", str(EXAMPLE))
    sandbox.run(["bridge", "fdb", "del", "00:00:00:00:00:00", "dev", "vx100", "dst", "192.0.2.13"])
    assert dry_run(sandbox) == ["bridge fdb append 00:00:00:00:00:00 dev vx100 dst 192.0.2.13"]
    netgen(sandbox, "apply", "--host", "h1", str(EXAMPLE))
    assert flood(sandbox, "vx100") == {"192.0.2.12", "192.0.2.13"}


@kernel
def test_a_tunnel_changed_by_hand_is_replaced(sandbox: Sandbox) -> None:
    underlay(sandbox)
    netgen(sandbox, "apply", "--host", "h1", str(EXAMPLE))
    sandbox.run(["ip", "link", "delete", "dev", "vx100"])
    sandbox.run(
        ["ip", "link", "add", "name", "vx100", "type", "vxlan", "id", "101", "dstport", "4789"]
    )
    sandbox.run(["ip", "link", "set", "dev", "vx100", "alias", "netgen:multihost"])
    plan = netgen(sandbox, "plan", "--host", "h1", str(EXAMPLE)).stdout
    assert "~ vxlan vx100 (VNI 100)" in plan
    netgen(sandbox, "apply", "--host", "h1", str(EXAMPLE))
    assert link(sandbox, "vx100")["linkinfo"]["info_data"]["id"] == 100
    assert flood(sandbox, "vx100") == {"192.0.2.12", "192.0.2.13"}


@kernel
def test_someone_elses_vxlan_device_is_refused(sandbox: Sandbox) -> None:
    underlay(sandbox)
    sandbox.run(
        ["ip", "link", "add", "name", "vx100", "type", "vxlan", "id", "100", "dstport", "4789"]
    )
    before = sandbox.state()
    res = netgen(sandbox, "apply", "--host", "h1", str(EXAMPLE), check=False)
    assert res.returncode == 1
    assert "link vx100 was not created by netgen" in res.stderr
    assert sandbox.state() == before


@kernel
@pytest.mark.parametrize("fast", ["fast", "subprocess"])
def test_a_failure_in_the_middle_rolls_back(sandbox: Sandbox, fast: str) -> None:
    underlay(sandbox)
    before = sandbox.state()
    s = spec.load(EXAMPLE)
    built = lower.lower(s, "h1")
    assert any(isinstance(op, o.AddFdb) for op in built)
    fdb = ["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx100", "dst", "192.0.2.13"]
    whole = drive(sandbox, "100000", fast)
    assert whole["rc"] == 0, whole
    netgen(sandbox, "destroy", "--host", "h1", str(EXAMPLE))
    assert sandbox.state() == before
    # fail at the second flood entry: the bridge, vx100 and the first entry are built
    at = whole["commands"].index(fdb) + 1
    out = drive(sandbox, str(at), fast)
    assert out["rc"] == 1, out
    assert out["commands"][at - 1] == fdb  # then the rollback's commands
    assert "rolled back" in out["error"]
    assert sandbox.state() == before


def drive(sb: Sandbox, fail_at: str, fast: str) -> dict[str, Any]:
    res = sb.run([sys.executable, "-c", DRIVER, str(EXAMPLE), "h1", fail_at, fast])
    return dict(json.loads(res.stdout))


IPV6_UNDERLAY = """\
version: 1
name: six
hosts:
  h1: {address: "2001:db8::11", dev: eth0}
  h2: {address: "2001:db8::12"}
bridges:
  br6: {subnet: 10.60.0.0/24, vxlan_port: 8472}
containers:
  x: {host: h1, network: br6}
  y: {host: h2, network: br6}
links:
  - endpoints: [x:p2p, y:p2p]
    addresses: [10.61.0.1/32, 10.61.0.2/32]
"""


@kernel
def test_an_ipv6_underlay_with_a_dev_and_a_port(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "six.yaml"
    path.write_text(IPV6_UNDERLAY)
    sandbox.run(["ip", "link", "add", "name", "eth0", "type", "veth", "peer", "name", "ul0"])
    sandbox.run(["ip", "addr", "add", "2001:db8::11/64", "dev", "eth0", "nodad"])
    sandbox.run(["ip", "link", "set", "dev", "eth0", "up"])
    sandbox.run(["ip", "link", "set", "dev", "ul0", "up"])
    before = sandbox.state()
    netgen(sandbox, "apply", "--host", "h1", str(path))
    vni = spec.load(path).bridge("br6").vni
    vx = link(sandbox, f"vx{vni}")
    info = vx["linkinfo"]["info_data"]
    assert (info["local6"], info["port"], info["link"], vx["mtu"]) == (
        "2001:db8::11",
        8472,
        "eth0",
        1430,
    )
    assert flood(sandbox, f"vx{vni}") == {"2001:db8::12"}
    p2p = link(sandbox, "p2p", "x")["linkinfo"]["info_data"]
    assert (p2p["local6"], p2p["remote6"], p2p["port"]) == ("2001:db8::11", "2001:db8::12", 4789)
    res = netgen(sandbox, "apply", "--dry-run", "--host", "h1", str(path))
    assert res.stdout == ""
    netgen(sandbox, "destroy", "--host", "h1", str(path))
    assert sandbox.state() == before


ICC_ACROSS_HOSTS = """\
version: 1
name: iccx
hosts: {h1: {address: 192.0.2.11}, h2: {address: 192.0.2.12}, h3: {address: 192.0.2.13}}
bridges:
  bri: {subnet: 10.70.0.0/24, icc: false, vni: 70}
containers:
  web: {host: h1, network: bri, link: [db]}
  db: {host: h2, network: bri, expose: [5432]}
  spy: {host: h2, network: bri}
"""


@kernel
def test_icc_false_and_a_link_across_hosts(fleet: Fleet, tmp_path: Path) -> None:
    """Each host isolates its part of the bridge, the VXLAN port included; a --link from
    h1 to h2 is opened on both. Built by `netgen apply --host` on each host."""
    path = tmp_path / "iccx.yaml"
    path.write_text(ICC_ACROSS_HOSTS)
    s = spec.load(path)
    web, db, spy = (str(s.container(n).address) for n in ("web", "db", "spy"))
    hosts = ("h1", "h2")  # h3 has no container: the bridge does not span it
    assert s.bridge("bri").hosts == hosts
    for h in hosts:
        for table in ("nat", "filter"):
            fleet.run(h, ["iptables", "-w", "-t", table, "-N", "NETGEN-TEST-PREP"])
            fleet.run(h, ["iptables", "-w", "-t", table, "-X", "NETGEN-TEST-PREP"])
    before = fleet.states()
    for h in hosts:
        fleet.run(h, [*NETGEN, "apply", "--host", h, str(path)], timeout=300)
    server = fleet.host("h2").spawn(
        [sys.executable, "-I", "-c", TCP_SERVER, "0.0.0.0", "5432"], netns="db"
    )
    try:
        wait_ready(server)
        assert fleet.host("h1").connect("web", db, 5432)  # the link, across hosts
        assert not fleet.host("h2").connect("spy", db, 5432, timeout_s=1)  # same host
        ping = ["ping", "-n", "-c", "1", "-W", "1"]
        assert fleet.in_netns("h1", "web", [*ping, spy], check=False).returncode != 0
        assert fleet.in_netns("h2", "spy", [*ping, web], check=False).returncode != 0
        assert fleet.in_netns("h1", "web", [*ping, "10.70.0.1"], check=False).returncode == 0
        for h in hosts:  # the implied checks that start on each host
            res = fleet.run(h, [*NETGEN, "check", "--host", h, str(path)], check=False)
            assert res.returncode == 0, res.stdout + res.stderr
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
    for h in hosts:
        fleet.run(h, [*NETGEN, "destroy", "--host", h, str(path)], timeout=300)
    assert fleet.states() == before
