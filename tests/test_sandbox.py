"""Tests for netgen.sandbox and the ``sandbox`` fixture, against the real kernel.

Everything that changes network state happens inside a sandbox; the host is only read
(to prove it was left alone).  Addresses come from 192.0.2.0/24 (TEST-NET-1).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from netgen import pytest_plugin
from netgen import sandbox as sandbox_module
from netgen.sandbox import Sandbox, SandboxCommandError

kernel = pytest.mark.kernel

TCP_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""

UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
"""


def host_netns_names() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def host_links() -> list[tuple[Any, ...]]:
    """The host's links, reduced to what a leaking sandbox would change."""
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True)
    return sorted(
        (
            link["ifindex"],
            link["ifname"],
            link.get("master"),
            link.get("mtu"),
            "UP" in link.get("flags", []),
            link.get("address"),
        )
        for link in json.loads(out.stdout)
    )


def host_addresses() -> list[tuple[str, str, int]]:
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True)
    return sorted(
        (link["ifname"], a["local"], a["prefixlen"])
        for link in json.loads(out.stdout)
        for a in link.get("addr_info", [])
    )


def wait_ready(proc: subprocess.Popen[str], timeout: float = 10) -> None:
    """Wait for a spawned server to print its readiness line."""
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    assert readable, "server did not become ready in time"
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"server failed: {line!r} {proc.poll()!r}"


def veth_pair(sb: Sandbox, a: str, b: str, ip_a: str, ip_b: str) -> None:
    """Two named namespaces joined by a veth, both ends up and addressed."""
    sb.sh(
        f"""
        ip netns add {a}
        ip netns add {b}
        ip -n {a} link add eth0 type veth peer name eth0 netns {b}
        ip -n {a} addr add {ip_a}/24 dev eth0
        ip -n {b} addr add {ip_b}/24 dev eth0
        for ns in {a} {b}; do ip -n $ns link set lo up; ip -n $ns link set eth0 up; done
        """
    )


def all_keys(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield key
            yield from all_keys(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from all_keys(value)


def processes_in_netns(ino: tuple[int, int]) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == ino:
            found.append(int(entry))
    return found


def is_gone(pid: int) -> bool:
    """True if pid no longer runs (absent, or a zombie waiting for a foreign parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


# -- isolation -------------------------------------------------------------------------


@kernel
def test_sysfs_shows_only_sandbox_devices(sandbox: Sandbox) -> None:
    assert sandbox.run(["ls", "/sys/class/net"]).stdout.split() == ["lo"]
    links = json.loads(sandbox.run(["ip", "-j", "link", "show"]).stdout)
    assert [link["ifname"] for link in links] == ["lo"]
    assert "UP" in links[0]["flags"]


@kernel
def test_netns_and_links_stay_inside(sandbox: Sandbox) -> None:
    netns_before, links_before, addrs_before = host_netns_names(), host_links(), host_addresses()
    sandbox.sh(
        """
        ip netns add sbx-private
        ip link add sbx-br0 type bridge
        ip addr add 192.0.2.254/24 dev sbx-br0
        ip link set sbx-br0 up
        ip link add sbx-v0 type veth peer name sbx-v1 netns sbx-private
        ip link set sbx-v0 master sbx-br0 up
        mkdir -p /etc/netns/sbx-private /run/netgen/x
        echo 'nameserver 192.0.2.53' > /etc/netns/sbx-private/resolv.conf
        """
    )
    listed = json.loads(sandbox.run(["ip", "-j", "netns", "list"]).stdout)
    assert [entry["name"] for entry in listed] == ["sbx-private"]
    inside = {link["ifname"] for link in json.loads(sandbox.run(["ip", "-j", "link"]).stdout)}
    assert inside == {"lo", "sbx-br0", "sbx-v0"}

    assert host_netns_names() == netns_before
    assert "sbx-private" not in host_netns_names()
    assert not os.path.exists("/etc/netns/sbx-private")
    assert not os.path.exists("/run/netgen/x")
    assert host_links() == links_before
    assert "sbx-br0" not in {name for _, name, *_ in host_links()}
    assert host_addresses() == addrs_before


@kernel
def test_run_reports_failures_and_passes_input_env_cwd(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxCommandError) as info:
        sandbox.run(["sh", "-c", "echo out-text; echo err-text >&2; exit 7"])
    message = str(info.value)
    assert "exit code 7" in message and "out-text" in message and "err-text" in message
    assert "exit 7" in message  # the argv itself
    assert sandbox.run(["false"], check=False).returncode == 1
    assert sandbox.run(["cat"], input="hello\n").stdout == "hello\n"
    env_out = sandbox.run(
        ["sh", "-c", 'echo "$NETGEN_X"'], env={"NETGEN_X": "42", "PATH": "/usr/bin:/bin"}
    )
    assert env_out.stdout == "42\n"
    assert sandbox.run(["pwd"], cwd="/run/netgen").stdout == "/run/netgen\n"
    assert sandbox.sh("echo $((6 * 7))").stdout == "42\n"
    with pytest.raises(SandboxCommandError):
        sandbox.sh("false; echo not reached")
    with pytest.raises(TypeError):
        sandbox.run("ip link")


# -- traffic ---------------------------------------------------------------------------


@kernel
def test_veth_namespaces_ping_each_other(sandbox: Sandbox) -> None:
    veth_pair(sandbox, "left", "right", "192.0.2.1", "192.0.2.2")
    assert sandbox.ping("left", "192.0.2.2")
    assert sandbox.ping("right", "192.0.2.1")
    assert not sandbox.ping("left", "192.0.2.3", timeout_s=1)  # nobody has that address
    assert not sandbox.ping(None, "192.0.2.2", timeout_s=1)  # root ns has no route there
    with pytest.raises(SandboxCommandError):
        sandbox.ping("no-such-netns", "192.0.2.2")


@kernel
def test_connect_tcp_and_udp(sandbox: Sandbox) -> None:
    veth_pair(sandbox, "cli", "srv", "192.0.2.1", "192.0.2.10")
    tcp = sandbox.spawn(["python3", "-c", TCP_SERVER, "192.0.2.10", "8080"], netns="srv")
    udp = sandbox.spawn(["python3", "-c", UDP_ECHO, "192.0.2.10", "5353"], netns="srv")
    wait_ready(tcp)
    wait_ready(udp)

    assert sandbox.connect("cli", "192.0.2.10", 8080)
    assert not sandbox.connect("cli", "192.0.2.10", 8081)  # nothing listens there
    assert not sandbox.connect(None, "192.0.2.10", 8080, timeout_s=1)  # root ns: no route
    assert sandbox.connect("cli", "192.0.2.10", 5353, proto="udp")
    assert not sandbox.connect("cli", "192.0.2.10", 5354, proto="udp", timeout_s=1)
    with pytest.raises(ValueError):
        sandbox.connect("cli", "192.0.2.10", 8080, proto="sctp")
    with pytest.raises(SandboxCommandError):
        sandbox.connect("no-such-netns", "192.0.2.10", 8080)
    assert tcp.poll() is None and udp.poll() is None


# -- state -----------------------------------------------------------------------------

BRIDGE_SETUP = """
ip netns add c1
ip link add br0 type bridge
ip addr add 192.0.2.254/24 dev br0
ip link set br0 up
ip link add vc1 type veth peer name eth0 netns c1 address 02:00:00:00:00:01
ip link set vc1 master br0 up
ip -n c1 addr add 192.0.2.1/24 dev eth0
ip -n c1 link set eth0 up
ip -n c1 link set lo up
ip -n c1 route add default via 192.0.2.254
mkdir -p /etc/netns/c1
echo 'nameserver 192.0.2.53' > /etc/netns/c1/resolv.conf
sysctl -qw net.ipv4.ip_forward=1
"""


@kernel
def test_state_reflects_bridge_and_is_deterministic(sandbox: Sandbox) -> None:
    empty = sandbox.state()
    assert empty["netns"] == [] and empty["namespaces"] == {} and empty["etc_netns"] == {}
    assert [link["ifname"] for link in empty["root"]["links"]] == ["lo"]

    sandbox.sh(BRIDGE_SETUP)
    assert sandbox.ping("c1", "192.0.2.254")  # links up, so IPv6 link-local noise exists
    first = sandbox.state()
    assert sandbox.state() == first
    assert json.loads(json.dumps(first)) == first

    root = first["root"]
    links = {link["ifname"]: link for link in root["links"]}
    assert set(links) == {"lo", "br0", "vc1"}
    assert links["br0"]["kind"] == "bridge" and links["br0"]["up"] is True
    assert links["br0"]["details"]["stp_state"] == 0
    assert links["vc1"]["kind"] == "veth" and links["vc1"]["master"] == "br0"
    assert links["vc1"]["link"] == {"netns": "c1", "ifname": "eth0"}
    assert {
        "ifname": "br0",
        "family": "inet",
        "local": "192.0.2.254",
        "prefixlen": 24,
        "scope": "global",
    } in root["addresses"]
    assert any(r["dst"] == "192.0.2.0/24" and r["dev"] == "br0" for r in root["routes"])
    assert root["sysctl"]["net.ipv4.ip_forward"] == "1"

    assert first["netns"] == [{"name": "c1", "type": "bind"}]
    c1 = first["namespaces"]["c1"]
    c1_links = {link["ifname"]: link for link in c1["links"]}
    assert c1_links["eth0"]["link"] == {"netns": None, "ifname": "vc1"}
    assert c1["macs"]["eth0"] == "02:00:00:00:00:01"  # explicitly set, so it is kept
    assert "vc1" not in root["macs"]  # random, so it is left out
    assert {
        "family": "inet",
        "dst": "default",
        "gateway": "192.0.2.254",
        "dev": "eth0",
    }.items() <= (next(r for r in c1["routes"] if r["dst"] == "default").items())
    assert c1["sysctl"]["net.ipv4.ip_forward"] == "0"
    assert first["etc_netns"] == {"c1/": None, "c1/resolv.conf": "nameserver 192.0.2.53\n"}

    text = json.dumps(first)
    assert "fe80" not in text and "ff00" not in text
    for banned in ("ifindex", "link_index", "link_netnsid", "netnsid"):
        assert banned not in set(all_keys(first))

    # The same configuration in a second, independent sandbox yields the same state even
    # though ifindexes, netns ids and random MACs differ.
    with Sandbox.start() as other:
        other.sh(BRIDGE_SETUP)
        assert other.state() == first

    # Tearing everything down returns to the initial state (except the sysctl we set).
    sandbox.sh(
        """
        ip link del br0
        ip link del vc1
        ip netns del c1
        rm -r /etc/netns/c1
        sysctl -qw net.ipv4.ip_forward=0
        """
    )
    assert sandbox.state() == empty


@kernel
def test_state_firewall_is_normalised(sandbox: Sandbox) -> None:
    sandbox.sh("iptables -t nat -A POSTROUTING -s 192.0.2.0/24 -j MASQUERADE")
    state = sandbox.state()
    if "iptables" not in state["root"]:
        pytest.skip("iptables-save not installed")
    rules = state["root"]["iptables"]
    assert "-A POSTROUTING -s 192.0.2.0/24 -j MASQUERADE" in rules
    assert "# Generated" not in rules and "# Completed" not in rules
    time.sleep(1.1)  # iptables-save's header carries the time: must not leak into state
    assert sandbox.state() == state


@kernel
def test_state_does_not_follow_symlinks_out_of_the_sandbox(sandbox: Sandbox) -> None:
    sandbox.sh("ip netns add real; ln -s /run/netns/real /run/netns/alias")
    sandbox.sh("ln -s /proc/1/ns/net /run/netns/hostish")
    state = sandbox.state()
    kinds = {e["name"]: e["type"] for e in state["netns"]}
    assert kinds == {"alias": "symlink", "hostish": "symlink", "real": "bind"}
    assert state["namespaces"]["hostish"] == {"outside_sandbox": True}
    assert state["namespaces"]["alias"] == state["namespaces"]["real"]


# -- lifecycle -------------------------------------------------------------------------


@kernel
def test_close_kills_everything_inside(sandbox: Sandbox) -> None:
    pid = sandbox.pid
    st = os.stat(f"/proc/{pid}/ns/net")
    net_ino = (st.st_dev, st.st_ino)
    sandbox.sh("ip netns add a")
    st = os.stat(f"/proc/{pid}/root/run/netns/a")
    a_ino = (st.st_dev, st.st_ino)
    spawned = sandbox.spawn(["sleep", "1000"], netns="a")
    # A daemon that escaped: started by a script, reparented away from us.
    stray = int(
        sandbox.sh("ip netns exec a sleep 1001 </dev/null >/dev/null 2>&1 & echo $!").stdout
    )
    deadline = time.monotonic() + 10
    # Both pass through the sandbox's root netns on their way into netns a.
    while not {spawned.pid, stray} <= set(processes_in_netns(a_ino)):
        assert time.monotonic() < deadline, "processes never entered netns a"
        time.sleep(0.02)
    assert processes_in_netns(net_ino) == [pid]
    assert sorted(processes_in_netns(a_ino)) == sorted([spawned.pid, stray])

    sandbox.close()

    assert not os.path.exists(f"/proc/{pid}")
    assert spawned.returncode is not None
    assert is_gone(stray)
    # (Not re-checking by namespace inode here: freed inode numbers get recycled, e.g. by
    # a sandbox in a parallel test run.)
    sandbox.close()  # idempotent
    with pytest.raises(RuntimeError):
        sandbox.run(["true"])


# -- the fixture's skip/fail policy ----------------------------------------------------


@pytest.mark.parametrize(
    ("ci", "outcome"),
    [
        ("true", pytest.fail.Exception),
        ("TRUE", pytest.fail.Exception),
        ("", pytest.skip.Exception),
        ("false", pytest.skip.Exception),
    ],
)
def test_unavailable_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    ci: str,
    outcome: type[BaseException],
) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(pytest_plugin, "unavailable_reason", lambda: "no namespaces here")
    with pytest.raises(outcome, match="no namespaces here"):
        request.getfixturevalue("sandbox")


def test_nft_tables_and_chains_compare_in_any_creation_order() -> None:
    """nft lists in creation order; a rebuilt ruleset whose base chain survived is the
    same ruleset, listed otherwise."""
    base = "\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy accept;\n"
    base += "\t\tjump X\n\t}"
    own = "\tchain X {\n\t\taccept\n\t}"
    nat = "table ip nat {\n\tchain Y {\n\t\tmasquerade\n\t}\n}"
    first = f"table ip filter {{\n{base}\n\n{own}\n}}\n{nat}"
    again = f"{nat}\ntable ip filter {{\n{own}\n\n{base}\n}}"
    assert sandbox_module._sort_nft_ruleset(first) == sandbox_module._sort_nft_ruleset(again)
    assert sandbox_module._sort_nft_ruleset(first).splitlines()[:2] == [
        "table ip filter {",
        "\tchain FORWARD {",
    ]
    # A different rule is still a different ruleset.
    other = first.replace("\t\taccept", "\t\tdrop")
    assert sandbox_module._sort_nft_ruleset(other) != sandbox_module._sort_nft_ruleset(first)
