"""IPv6 dual-stack: validation, lowering, both firewall dialects, and the kernel.

Kernel tests run in the sandbox only, with ULA (fd00::/8) and documentation
(2001:db8::/32) prefixes.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path

import pytest

from netgen import lower, ops, render, spec
from netgen.errors import SpecError
from netgen.ipam import Pool
from netgen.sandbox import Sandbox

NETGEN = [sys.executable, "-m", "netgen"]
DUAL = Path(__file__).parent.parent / "specs" / "dual-stack.yaml"


def load(text: str) -> spec.m.Spec:
    return spec.loads(textwrap.dedent(text), "s.yaml")


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(text)
    return [line for line in str(info.value).splitlines() if line.startswith("s.yaml:")]


def script(text: str, **kw: str) -> str:
    s = load(text)
    return render.render(s, lower.lower(s), **kw)


TWO = """\
version: 1
bridges:
  br0:
    subnet: 10.0.0.0/24
    subnet6: fd00:1::/64
containers:
  a:
    address6: fd00:1::10
  b: {}
"""


class TestSpec:
    def test_defaults_and_allocation(self) -> None:
        s = load(TWO)
        br = s.bridge("br0")
        assert br.subnet6 == IPv6Network("fd00:1::/64")
        assert br.address6 == IPv6Address("fd00:1::1")
        assert not br.dad and not br.masquerade6
        assert s.container("a").interfaces[0].address6 == IPv6Interface("fd00:1::10/64")
        assert s.container("b").interfaces[0].address6 == IPv6Interface("fd00:1::2/64")

    def test_allocation_skips_statics_declared_later(self) -> None:
        s = load(
            """\
            version: 1
            bridges:
              br0: {subnet: 10.0.0.0/24, subnet6: "fd00:1::/64", address6: "fd00:1::2"}
            containers:
              a: {}
              b: {address6: "fd00:1::3/64"}
              c: {}
            """
        )
        got = [str(c.interfaces[0].address6) for c in s.containers]
        # the bridge took ::2, so ::1 is free: as in IPv4, only what is taken is skipped
        assert got == ["fd00:1::1/64", "fd00:1::3/64", "fd00:1::4/64"]

    def test_ipv4_only_bridge_has_no_ipv6(self) -> None:
        s = load("version: 1\nbridges: {br0: {subnet: 10.0.0.0/24}}\ncontainers: {a: {}}\n")
        assert s.bridge("br0").subnet6 is None
        assert s.container("a").interfaces[0].address6 is None

    def test_pool_is_linear_on_a_64(self) -> None:
        pool = Pool(IPv6Network("fd00::/64"))
        pool.reserve(IPv6Address("fd00::1"))
        start = time.perf_counter()
        got = [pool.allocate() for _ in range(20000)]
        assert time.perf_counter() - start < 2
        assert got[0] == IPv6Address("fd00::2") and got[-1] == IPv6Address(int(got[0]) + 19999)

    def test_routes_and_links(self) -> None:
        s = load(
            """\
            version: 1
            containers:
              a:
                network: none
                routes:
                  - {to: "fd00:9::/48", via: "fd00:99::2"}
              b: {network: none}
            links:
              - endpoints: [a:p0, b:p0]
                addresses: ["fd00:99::1/128", "fd00:99::2/128"]
            """
        )
        assert str(s.container("a").routes[0].to) == "fd00:9::/48"
        assert s.links[0].a.address == IPv6Interface("fd00:99::1/128")


class TestErrors:
    def test_twins_of_the_ipv4_errors(self) -> None:
        got = errors(
            """\
            version: 1
            bridges:
              br0:
                subnet: 10.0.0.0/24
                subnet6: "fd00:1::/64"
              br1:
                subnet: 10.1.0.0/24
                subnet6: "fd00:1::/48"
              br2:
                subnet: 10.2.0.0/24
            containers:
              a: {network: br0, address6: "fd00:2::1"}
              b: {network: br0, address6: "fd00:1::1"}
              c: {network: br0, address6: "fd00:1::7"}
              d: {network: br0, address6: "fd00:1::7"}
              e: {network: br0, address6: "fd00:1::8/80"}
              f: {network: br2, address6: "fd00:3::1"}
              g: {network: br0, address6: "fd00:1::"}
              h: {network: br0, address6: "10.0.0.9"}
            """
        )
        assert got == [
            "s.yaml:8:14: bridges.br1.subnet6: subnet6 fd00:1::/48 overlaps fd00:1::/64 "
            "of bridge br0",
            "s.yaml:12:31: containers.a.address6: fd00:2::1 is outside bridge br0's subnet6 "
            "fd00:1::/64",
            "s.yaml:13:31: containers.b.address6: fd00:1::1 is the address6 of bridge br0 "
            "itself (its containers' gateway)",
            "s.yaml:15:31: containers.d.address6: fd00:1::7 is already used by containers.c",
            "s.yaml:16:31: containers.e.address6: prefix /80 differs from bridge br0's subnet6 "
            "fd00:1::/64; write fd00:1::8/64 or just fd00:1::8",
            "s.yaml:17:31: containers.f.address6: bridge br2 has no subnet6; give it one for IPv6",
            "s.yaml:18:31: containers.g.address6: fd00:1:: is the subnet-router anycast address "
            "of bridge br0's subnet6 fd00:1::/64",
            "s.yaml:19:31: containers.h.address6: '10.0.0.9' is not an IPv6 address or "
            "address/prefix",
        ]

    def test_types(self) -> None:
        got = errors(
            """\
            version: 1
            bridges:
              br0:
                subnet: 10.0.0.0/24
                subnet6: "fd00:1::1/64"
                address6: "fd00:1::zz"
              br1:
                subnet: 10.1.0.0/24
                address6: "fd00:5::1"
            containers:
              a:
                network: br1
                address6: "10.1.0.5"
                routes:
                  - {to: "fd00:9::/48", via: 10.1.0.1}
            links:
              - endpoints: [a:p0, a:p1]
                addresses: ["fd00:99::1/128", 10.9.0.1/32]
            """
        )
        assert got == [
            "s.yaml:5:14: bridges.br0.subnet6: 'fd00:1::1/64' has host bits set; "
            "did you mean fd00:1::/64?",
            "s.yaml:6:15: bridges.br0.address6: 'fd00:1::zz' is not an IPv6 address",
            "s.yaml:9:5: bridges.br1.address6: 'address6' needs 'subnet6'",
            "s.yaml:13:15: containers.a.address6: '10.1.0.5' is not an IPv6 address or "
            "address/prefix",
            "s.yaml:15:34: containers.a.routes[0].via: gateway 10.1.0.1 is IPv4 but 'to' "
            "fd00:9::/48 is IPv6",
            "s.yaml:18:35: links[0].addresses[1]: 10.9.0.1/32 is IPv4 but fd00:99::1/128 is "
            "IPv6; give both ends the same family",
        ]

    def test_full_subnet6(self) -> None:
        got = errors(
            """\
            version: 1
            bridges:
              br0: {subnet: 10.0.0.0/24, subnet6: "fd00:1::/126"}
            containers:
              a: {}
              b: {}
              c: {}
            """
        )
        assert got == [
            "s.yaml:7:6: containers.c: no address left in bridge br0's subnet6 fd00:1::/126: "
            "all 3 usable addresses are taken"
        ]


class TestLowering:
    def test_dual_stack_commands(self) -> None:
        text = script(TWO)
        for line in (
            "sysctl -q -w net.ipv6.conf.br0.disable_ipv6=0",
            "ip -6 addr add fd00:1::1/64 dev br0 nodad",
            "ip netns exec a sysctl -q -w net.ipv6.conf.eth0.disable_ipv6=0",
            "ip -n a -6 addr add fd00:1::10/64 dev eth0 nodad",
            "ip -n a -6 route add default via fd00:1::1 dev eth0",
        ):
            assert line in text.splitlines()
        # the container keeps its link-local address on a dual-stack bridge; the host
        # end is a bridge port, which needs none
        assert "ip -n a link set dev eth0 addrgenmode none" not in text.splitlines()
        assert "ip link set dev vb16c08-a addrgenmode none" in text.splitlines()

    def test_ipv4_only_keeps_the_speed_default(self) -> None:
        text = script("version: 1\nbridges: {br0: {subnet: 10.0.0.0/24}}\ncontainers: {a: {}}\n")
        assert "ip -n a link set dev eth0 addrgenmode none" in text
        assert "-6" not in text.split() and "sysctl" not in text

    def test_dad_knob(self) -> None:
        text = script(TWO.replace("subnet6: fd00:1::/64", "subnet6: fd00:1::/64\n    dad: true"))
        assert "ip -n a -6 addr add fd00:1::10/64 dev eth0" in text.splitlines()
        assert "nodad" not in text

    def test_dad_is_waited_for_last(self) -> None:
        s = load(TWO.replace("subnet6: fd00:1::/64", "subnet6: fd00:1::/64\n    dad: true"))
        ops_ = lower.lower(s)
        waits = [op for op in ops_ if isinstance(op, ops.WaitDad)]
        assert [(w.netns, w.dev, str(w.address)) for w in waits] == [
            (None, "br0", "fd00:1::1/64"),
            ("a", "eth0", "fd00:1::10/64"),
            ("b", "eth0", "fd00:1::2/64"),
        ]
        assert ops_[-len(waits) :] == waits  # after everything: detections overlap
        assert waits[1].loc.line == 8  # the container's spec line, for the error message
        text = render.render(s, ops_)
        lines = [line for line in text.splitlines() if "netgen-wait-dad" in line]
        assert len(lines) == 3
        assert lines[1].endswith(" netgen-wait-dad ip -n a -6 addr show dev eth0")
        # nothing to wait for without DAD, nor anywhere in teardown
        assert not any(isinstance(op, ops.WaitDad) for op in lower.lower(load(TWO)))
        assert "netgen-wait-dad" not in render.render(s, ops.teardown(ops_))

    def test_link_128_peer_routes(self) -> None:
        text = render.render(s := spec.load(DUAL), lower.lower(s))
        assert "ip -n web -6 route add fd00:99::2/128 dev p2p0" in text
        assert "ip -n db -6 route add fd00:99::1/128 dev p2p0" in text

    def test_dns_carries_ipv6_nameservers(self) -> None:
        s = spec.load(DUAL)
        (resolv,) = [
            op for op in lower.lower(s) if isinstance(op, ops.WriteFile) and "resolv" in op.path
        ]
        assert "nameserver fd00:20::1\n" in resolv.content


ICC = """\
version: 1
bridges:
  bri:
    subnet: 10.61.0.0/24
    subnet6: "fd00:61::/64"
    icc: false
containers:
  x: {}
  y: {expose: [80]}
  z: {link: [y]}
"""


class TestFirewall:
    def test_iptables_publishes_on_ip6tables(self) -> None:
        text = script(DUAL.read_text())
        assert (
            "ip6tables -w -t nat -A NETGEN-dual-stack-DNAT '!' -d ::1/128 -p tcp -m tcp --dport "
            "8080 -m comment --comment netgen:dual-stack -j DNAT --to-destination "
            "'[fd00:20::80]:80'"
        ) in text
        assert (
            "ip6tables -w -t nat -A NETGEN-dual-stack-SNAT -s fd00:20::/64 '!' -d fd00:20::/64"
            in text
        )
        assert "/proc/sys/net/ipv6/conf/all/forwarding dual-stack 1" in text

    def test_nftables_ip6_rules(self) -> None:
        text = script(DUAL.read_text(), firewall="nftables")
        assert "ip6 daddr != ::1 tcp dport 8080 dnat ip6 to [fd00:20::80]:80" in text
        assert "ip6 saddr fd00:20::/64 ip6 daddr != fd00:20::/64 masquerade" in text

    def test_icc_and_link_rules_for_ipv6(self) -> None:
        text = script(ICC, firewall="nftables")
        assert "ip6 saddr fd00:61::/64 ip6 daddr fd00:61::/64 drop" in text
        assert "ip6 saddr fd00:61::4 ip6 daddr fd00:61::3 tcp dport 80 accept" in text
        assert "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept" in text
        ipt = script(ICC)
        assert "ip6tables -w -t filter -A NETGEN-s-FWD -s fd00:61::/64 -d fd00:61::/64" in ipt

    def test_teardown_removes_ip6tables_chains(self) -> None:
        s = spec.load(DUAL)
        text = render.render(s, ops.teardown(lower.lower(s)), teardown=True)
        assert "ip6tables -w -t nat -X NETGEN-dual-stack-DNAT" in text


# -- the kernel ------------------------------------------------------------------------


def _netgen(sb: Sandbox, *args: str) -> str:
    return sb.run([*NETGEN, *args], timeout=300).stdout


def _prepare(sb: Sandbox) -> None:
    """The built-in tables every real host has (iptables cannot delete them again)."""
    for tool in ("iptables", "ip6tables"):
        for table in ("nat", "filter"):
            sb.run([tool, "-w", "-t", table, "-N", "NETGEN-TEST-PREP"])
            sb.run([tool, "-w", "-t", table, "-X", "NETGEN-TEST-PREP"])


@pytest.mark.kernel
@pytest.mark.parametrize("firewall", ["iptables", "nftables"])
def test_dual_stack_end_to_end(sandbox: Sandbox, firewall: str) -> None:
    _prepare(sandbox)
    before = sandbox.state()
    path = str(DUAL)
    fw = ("--firewall", firewall)
    _netgen(sandbox, "apply", *fw, path)
    assert sandbox.ping("web", "fd00:20::1")
    assert sandbox.ping("db", "fd00:20::1")
    assert sandbox.ping("web", "fd00:20::2")
    assert sandbox.ping("db", "fd00:20::80")
    assert sandbox.ping("web", "fd00:99::2")  # the IPv6-only p2p link, over /128 routes
    assert sandbox.ping("db", "fd00:99::1")
    assert sandbox.ping("web", "172.20.0.3")  # and IPv4 as before
    resolv = sandbox.run(["cat", "/etc/netns/web/resolv.conf"]).stdout
    assert "nameserver fd00:20::1" in resolv
    # applying again runs nothing, whichever way the host is read
    assert _netgen(sandbox, "apply", "--dry-run", *fw, path) == ""
    assert _netgen(sandbox, "apply", "--subprocess", "--dry-run", *fw, path) == ""

    # a published port over IPv6, from a namespace outside (2001:db8:ff::2 -> host ::1)
    sandbox.sh(
        "ip netns add out6 && ip link add o6 type veth peer name eth0 netns out6 && "
        "ip addr add 2001:db8:ff::1/64 dev o6 nodad && ip link set o6 up && "
        "ip -n out6 addr add 2001:db8:ff::2/64 dev eth0 nodad && "
        "ip -n out6 link set eth0 up && ip -n out6 link set lo up"
    )
    server = sandbox.spawn(
        [
            sys.executable,
            "-c",
            "import socket\n"
            "s = socket.socket(socket.AF_INET6)\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "s.bind(('::', 80)); s.listen(8); print('ready', flush=True)\n"
            "while True: s.accept()[0].close()\n",
        ],
        netns="web",
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    assert sandbox.connect("out6", "2001:db8:ff::1", 8080, timeout_s=5)
    assert sandbox.connect("db", "fd00:20::80", 80, timeout_s=5)
    server.kill()
    server.wait()
    sandbox.sh("ip link del o6 && ip netns del out6")

    _netgen(sandbox, "destroy", *fw, path)
    assert sandbox.state() == before


@pytest.mark.kernel
@pytest.mark.parametrize("firewall", ["iptables", "nftables"])
def test_icc_false_blocks_ipv6_too(sandbox: Sandbox, tmp_path: Path, firewall: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(ICC)
    _prepare(sandbox)
    before = sandbox.state()
    fw = ("--firewall", firewall)
    _netgen(sandbox, "apply", "--subprocess", *fw, str(path))
    assert sandbox.ping("x", "fd00:61::1")  # the gateway stays reachable
    assert not sandbox.ping("x", "fd00:61::3", timeout_s=1)
    assert not sandbox.ping("x", "10.61.0.3", timeout_s=1)
    server = sandbox.spawn(
        [
            sys.executable,
            "-c",
            "import socket\n"
            "s = socket.socket(socket.AF_INET6)\n"
            "s.bind(('::', 80)); s.listen(8); print('ready', flush=True)\n"
            "while True: s.accept()[0].close()\n",
        ],
        netns="y",
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    assert sandbox.connect("z", "fd00:61::3", 80, timeout_s=5)  # link: z may reach y:80
    assert not sandbox.connect("x", "fd00:61::3", 80, timeout_s=1)
    server.kill()
    server.wait()
    assert _netgen(sandbox, "apply", "--subprocess", "--dry-run", *fw, str(path)) == ""
    _netgen(sandbox, "destroy", "--subprocess", *fw, str(path))
    assert sandbox.state() == before


DAD = """\
version: 1
name: dad
bridges:
  brd:
    subnet: 10.62.0.0/24
    subnet6: fd00:62::/64
    dad: true
    uplinks: [dup0]
containers:
  a: {}
  b:
    address6: fd00:62::20
"""


def _tentative(sb: Sandbox) -> list[str]:
    """Every IPv6 address still tentative (or failed) on the links netgen gave IPv6
    addresses: the bridge, and every link in a and b (link-local addresses included)."""
    out = []
    for ns, dev in ((None, ["dev", "brd"]), ("a", []), ("b", [])):
        where = ["-n", ns] if ns is not None else []
        for link in json.loads(sb.run(["ip", *where, "-6", "-j", "addr", "show", *dev]).stdout):
            for a in link.get("addr_info") or []:
                if a.get("tentative") or a.get("dadfailed"):
                    out.append(f"{ns}:{link['ifname']}:{a['local']}")
    return out


@pytest.mark.kernel
def test_apply_waits_for_dad(sandbox: Sandbox, tmp_path: Path) -> None:
    """With `dad: true`, apply (either path) and the script return with every address
    usable; an address someone on the segment already holds fails the apply."""
    path = tmp_path / "dad.yaml"
    path.write_text(DAD)
    # the uplink: a segment with one other host, not holding any of the spec's addresses
    sandbox.sh(
        "ip netns add other && ip link add dup0 type veth peer name eth0 netns other && "
        "ip link set dup0 up && ip -n other link set eth0 up"
    )
    before = sandbox.state()
    for runner in ([], ["--subprocess"]):
        _netgen(sandbox, "apply", *runner, str(path))
        assert _tentative(sandbox) == []
        assert sandbox.ping("a", "fd00:62::20")
        assert _netgen(sandbox, "apply", "--dry-run", *runner, str(path)) == ""
        _netgen(sandbox, "destroy", str(path))
        assert sandbox.state() == before

    s = spec.load(path)
    sandbox.run(["bash"], input=render.render(s, lower.lower(s)))
    assert _tentative(sandbox) == []
    _netgen(sandbox, "destroy", str(path))
    assert sandbox.state() == before

    # the other host takes b's address first: b's detection fails
    sandbox.run(["ip", "-n", "other", "addr", "add", "fd00:62::20/64", "dev", "eth0", "nodad"])
    before = sandbox.state()
    for runner in ([], ["--subprocess"]):
        res = sandbox.run([*NETGEN, "apply", *runner, str(path)], check=False, timeout=300)
        assert res.returncode == 1 and res.stdout == "", res.stderr
        assert "ip -n b -6 addr show dev eth0" in res.stderr
        assert "duplicate address detection failed" in res.stderr
        assert "inet6 fd00:62::20/64 scope global dadfailed" in res.stderr
        assert f"from {path}:11:" in res.stderr  # container b's line
        assert "rolled back: the host is as it was before" in res.stderr
        assert sandbox.state() == before
