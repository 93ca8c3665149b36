"""Tests for netgen.sandbox.Fleet: simulated hosts on an underlay bridge, and their sshd.

Every host is a sandbox of its own; nothing here touches the real host's network, which
is only read (to prove it was left alone).  Addresses: 192.0.2.0/24 (TEST-NET-1).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from netgen.sandbox import (
    OUTSIDE_ADDRESS,
    OUTSIDE_NETNS,
    UNDERLAY_ADDRESS,
    Fleet,
)
from tests.test_sandbox import host_addresses, host_links, host_netns_names, processes_in_netns

HOSTS = ("h1", "h2", "h3")


def make_keys(directory: Path) -> tuple[str, str, str]:
    """Throw-away keys: (sshd host key, client private key, authorized_keys file)."""
    host_key = directory / "ssh_host_ed25519_key"
    client_key = directory / "id_ed25519"
    for key in (host_key, client_key):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "netgen-test", "-f", str(key)],
            check=True,
            stdin=subprocess.DEVNULL,
        )
    authorized = directory / "authorized_keys"
    shutil.copyfile(f"{client_key}.pub", authorized)
    return str(host_key), str(client_key), str(authorized)


def ssh_argv(client_key: str, address: str, *command: str) -> list[str]:
    """ssh as root with the test key, trusting the throw-away host key blindly."""
    return [
        "ssh",
        "-i",
        client_key,
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        f"root@{address}",
        *command,
    ]


def test_hosts_reach_each_other_over_the_underlay(fleet: Fleet) -> None:
    for src in HOSTS:
        for dst in HOSTS:
            if src != dst:
                assert fleet.host(src).ping(None, fleet.address(dst)), f"{src} -> {dst}"
        assert fleet.host(src).ping(None, UNDERLAY_ADDRESS)
        assert fleet.underlay.ping(OUTSIDE_NETNS, fleet.address(src))
        assert fleet.host(src).ping(None, OUTSIDE_ADDRESS)


def test_host_addresses_and_interfaces(fleet: Fleet) -> None:
    assert [fleet.address(h) for h in HOSTS] == ["192.0.2.11", "192.0.2.12", "192.0.2.13"]
    for name in HOSTS:
        state = fleet.state(name)
        assert [link["ifname"] for link in state["root"]["links"]] == ["eth0", "lo"]
        addresses = [(a["ifname"], a["local"], a["prefixlen"]) for a in state["root"]["addresses"]]
        assert ("eth0", fleet.address(name), 24) in addresses
        assert state["netns"] == []
    with pytest.raises(KeyError, match="h4.*hosts: h1, h2, h3"):
        fleet.host("h4")


def test_named_namespaces_are_private_per_host(fleet: Fleet) -> None:
    fleet.run("h1", ["ip", "netns", "add", "fleet-probe"])
    try:
        assert fleet.run("h1", ["ls", "/run/netns"]).stdout.split() == ["fleet-probe"]
        for other in ("h2", "h3"):
            assert fleet.run(other, ["ls", "/run/netns"]).stdout.split() == []
        assert fleet.run(None, ["ls", "/run/netns"]).stdout.split() == [OUTSIDE_NETNS]
        assert "fleet-probe" not in host_netns_names()
        fleet.run("h2", ["touch", "/run/netgen/fleet-probe"])
        for other in ("h1", "h3"):
            probe = fleet.run(other, ["test", "-e", "/run/netgen/fleet-probe"], check=False)
            assert probe.returncode == 1
        assert not os.path.exists("/run/netgen/fleet-probe")
    finally:
        fleet.run("h1", ["ip", "netns", "del", "fleet-probe"])
        fleet.run("h2", ["rm", "-f", "/run/netgen/fleet-probe"])


def test_close_leaves_the_real_host_alone() -> None:
    before = host_netns_names(), host_links(), host_addresses()
    fleet = Fleet.start(2)
    holders = [fleet.underlay.pid, *(sb.pid for sb in fleet.hosts.values())]
    inodes = []
    for pid in holders:
        st = os.stat(f"/proc/{pid}/ns/net")
        inodes.append((st.st_dev, st.st_ino))
    assert fleet.host("h2").ping(None, fleet.address("h1"))
    fleet.close()
    fleet.close()  # idempotent
    assert all(processes_in_netns(ino) == [] for ino in inodes)
    assert (host_netns_names(), host_links(), host_addresses()) == before


def test_sshd_per_host(fleet: Fleet, tmp_path: Path) -> None:
    host_key, client_key, authorized = make_keys(tmp_path)
    procs = {
        name: fleet.start_sshd(name, tmp_path, host_key=host_key, authorized_keys=authorized)
        for name in ("h1", "h2")
    }
    sshd_netns = os.stat(f"/proc/{procs['h1'].pid}/ns/net")
    real_netns = os.stat("/proc/self/ns/net")
    assert (sshd_netns.st_dev, sshd_netns.st_ino) != (real_netns.st_dev, real_netns.st_ino)
    for name in ("h1", "h2"):
        # Over ssh from the underlay, the command runs in that host's namespaces.
        res = fleet.run(None, ssh_argv(client_key, fleet.address(name), "ip", "-br", "addr"))
        assert f"{fleet.address(name)}/24" in res.stdout
        assert fleet.underlay.connect(OUTSIDE_NETNS, fleet.address(name), 22)
        # sshd listens on its own underlay address only.
        other = "h2" if name == "h1" else "h1"
        assert not fleet.host(name).connect(None, "127.0.0.1", 22, timeout_s=0.5)
        assert fleet.host(other).connect(None, fleet.address(name), 22)
    assert not fleet.underlay.connect(None, fleet.address("h3"), 22, timeout_s=0.5)
    # Password logins are refused: only the test key gets in.
    denied = fleet.run(
        None,
        ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"]
        + ["-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes"]
        + ["-o", "IdentityFile=/dev/null", f"root@{fleet.address('h1')}", "true"],
        check=False,
    )
    assert denied.returncode == 255
    for proc in procs.values():
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)
    assert not fleet.underlay.connect(None, fleet.address("h1"), 22, timeout_s=0.5)
