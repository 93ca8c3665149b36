"""The fast path of `apply`/`destroy`: the dialect's `ip` commands sent as netlink requests.

Two claims are tested. The requests are the ones `ip` sends: each command shape the
iproute2 dialect writes encodes to the bytes iproute2 6.1 put on the wire for it
(captured with strace; only the sequence number differs). And the kernel ends up in
the same state: for every example spec, fast apply == rendered script == slow apply,
in the sandbox, with every guarantee of `apply` kept (rollback at any failing
request, idempotency, ownership, destroy leaving nothing).
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from test_apply import FULL, NETGEN, SERVE, SPECS, prepare, record, write
from test_apply import Driver as ApplyDriver

from netgen import fastpath, lower, render, spec
from netgen import ops as o
from netgen import plan as p
from netgen.dialects import commands
from netgen.sandbox import Sandbox

kernel = pytest.mark.kernel


# -- encoding: the bytes `ip` sends --------------------------------------------------

# (command, the netlink message iproute2 6.1 sent for it with its sequence number
# zeroed), captured in a sandbox with `strace -e trace=sendmsg -e write=3,4`, where x
# and y are namespaces, eth0 is ifindex 2 in x, h0 4, br0 2, br1 3, and ip opened the
# peer's namespace as fd 4.
IPROUTE2_BYTES = [
    (
        "ip link add name br0 mtu 1400 type bridge mcast_snooping 0",
        "4c000000100005060000000000000000000000000000000000000000000000000800040078050000"
        "08000300627230001c0012000a00010062726964676500000c0002000500170000000000",
    ),
    (
        "ip link add name br1 type bridge",
        "38000000100005060000000000000000000000000000000000000000000000000800030062723100"
        "100012000a0001006272696467650000",
    ),
    (
        "ip link add name h0 mtu 1400 type veth peer name eth0 netns x mtu 1400 "
        "address 02:00:0a:52:00:0a",
        "7c000000100005060000000000000000000000000000000000000000000000000800040078050000"
        "07000300683000004c0012000800010076657468400002003c000100000000000000000000000000"
        "0000000008001c000400000008000400780500000a00010002000a52000a00000900030065746830"
        "00000000",
    ),
    (
        "ip -n x link add name p2p0 type veth peer name p2p0 netns y",
        "64000000100005060000000000000000000000000000000000000000000000000900030070327030"
        "000000003800120008000100766574682c0002002800010000000000000000000000000000000000"
        "08001c0004000000090003007032703000000000",
    ),
    (
        "ip link set dev h0 alias netgen:t",
        "2c000000100005000000000000000000000000000400000000000000000000000c0014006e657467656e3a74",
    ),
    (
        "ip -n x link set dev eth0 addrgenmode none",
        "300000001000050000000000000000000000000002000000000000000000000010001a000c000a00"
        "0500080001000000",
    ),
    (
        "ip link set dev h0 master br0",
        "280000001000050000000000000000000000000004000000000000000000000008000a0002000000",
    ),
    (
        "ip link set dev h0 nomaster",
        "280000001000050000000000000000000000000004000000000000000000000008000a0000000000",
    ),
    (
        "ip link set dev h0 up",
        "2000000010000500000000000000000000000000040000000100000001000000",
    ),
    (
        "ip link set dev br1 mtu 1300",
        "28000000100005000000000000000000000000000300000000000000000000000800040014050000",
    ),
    (
        "ip -n x addr add 10.1.2.3/24 dev eth0",
        "280000001400050600000000000000000218000002000000080002000a010203080001000a010203",
    ),
    (
        "ip -n x route add default via 10.1.2.1 dev eth0",
        "2c00000018000506000000000000000002000000fe03000100000000080005000a0102010800040002000000",
    ),
    (
        "ip -n x route add 10.9.0.0/16 dev eth0",
        "2c00000018000506000000000000000002100000fe03fd0100000000080001000a0900000800040002000000",
    ),
    (
        "ip -n x route add 10.8.0.0/16 via 10.1.2.1",
        "2c00000018000506000000000000000002100000fe03000100000000080001000a080000080005000a010201",
    ),
    (
        "ip link delete dev br1 type bridge",
        "3000000011000500000000000000000000000000030000000000000000000000100012000a000100"
        "6272696467650000",
    ),
    (
        "ip -n x link delete dev p2p0",
        "2000000011000500000000000000000000000000030000000000000000000000",
    ),
]


class FakeHost:
    """The ifindexes and namespace fd of the capture."""

    INDEXES = {("x", "eth0"): 2, (None, "h0"): 4, (None, "br0"): 2, (None, "br1"): 3}

    def index(self, netns: str | None, dev: str) -> int:
        return self.INDEXES.get((netns, dev), 3)

    def netns_fd(self, netns: str) -> int:
        return 4


class TestEncoding:
    @pytest.mark.parametrize("command,expected", IPROUTE2_BYTES, ids=[c for c, _ in IPROUTE2_BYTES])
    def test_request_is_what_iproute2_sends(self, command: str, expected: str) -> None:
        actions = fastpath.parse(command.split())
        assert actions is not None and len(actions) == 1
        (request,) = actions
        assert isinstance(request, fastpath.Request)
        assert request.encode(FakeHost()).hex() == expected

    def test_known_rtm_newlink_bytes(self) -> None:
        """A bridge request spelled out field by field, not captured."""
        (request,) = (
            fastpath.parse("ip link add name br0 type bridge mcast_snooping 0".split()) or []
        )
        assert isinstance(request, fastpath.Request)
        assert request.encode(FakeHost(), seq=7) == bytes.fromhex(
            "44000000"  # nlmsg_len 68
            "1000"  # RTM_NEWLINK
            "0506"  # NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE
            "07000000"  # seq 7
            "00000000"  # port id: the kernel's to fill
            "00000000000000000000000000000000"  # ifinfomsg: all zero
            "0800030062723000"  # IFLA_IFNAME "br0\0"
            "1c001200"  # IFLA_LINKINFO, 28 bytes
            "0a000100627269646765" "0000"  # IFLA_INFO_KIND "bridge" (no NUL), padded
            "0c000200"  # IFLA_INFO_DATA, 12 bytes
            "0500170000000000"  # IFLA_BR_MCAST_SNOOPING u8 0, padded
        )  # fmt: skip

    @pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
    def test_every_ip_command_of_every_spec_is_read(self, path: Path) -> None:
        """A dialect change the fast path cannot read would only make it slower (the line
        runs as a subprocess); this makes sure the example specs never need that, but
        for IPv6 (`ip -6 ...`: not read yet, it runs as a subprocess)."""
        built = lower.lower(spec.load(path))
        for op in [*built, *o.teardown(built)]:
            for cmd in commands(op):
                if "-6" in cmd.argv:
                    assert fastpath.parse(cmd.argv) is None
                elif cmd.argv[0] == "ip" and cmd.argv[1:3] != ("netns", "exec"):
                    assert fastpath.parse(cmd.argv) is not None, cmd.argv
                if cmd.guard is not None and "ifalias" in cmd.guard[-1]:
                    assert fastpath.parse_alias_guard(cmd.guard) is not None, cmd.guard

    @pytest.mark.parametrize(
        "command",
        [
            "ip link set dev x up promisc on",
            "ip link add name x type vxlan id 5",
            "ip link add name x type veth peer name y netns z mtu 1 mtu 2",
            "ip route add 10.0.0.0/8 via 10.0.0.1 metric 5",
            "ip route add 10.0.0.1/8 dev x",  # host bits set: `ip` itself refuses it
            "ip -n a netns add b",
            "ip addr add 10.0.0.1/24 dev x label x:1",
            "ip link set dev x mcast_snooping 2",
            "ip -batch -",
        ],
    )
    def test_anything_else_runs_as_a_subprocess(self, command: str) -> None:
        assert fastpath.parse(command.split()) is None

    def test_guards(self) -> None:
        assert fastpath.parse_alias_guard(
            ("ip", "netns", "exec", "web", "grep", "-qsxF", "netgen:a", "/sys/class/net/lo/ifalias")
        ) == ("web", "lo", "netgen:a")
        assert fastpath.parse_alias_guard(("test", "-d", "/etc/netns/web")) is None


class TestAbsorb:
    owner = "t"

    def steps(self, *, adopted: bool = False, recreate: bool = False) -> list[p.Step]:
        veth = o.AddVeth("h", None, "eth0", "c", self.owner)
        ns: o.AddNetns | o.AdoptNetns = (
            o.AdoptNetns("c", 1, self.owner) if adopted else o.AddNetns("c", self.owner)
        )
        out = [
            p.Step("-", o.DelVeth("h", None, self.owner), undoes=veth, restore=(veth,)),
            p.Step("-", ns.inverse(), undoes=ns, restore=(ns,)),
            p.Step("-", o.DelBridge("br", self.owner), undoes=o.AddBridge("br", self.owner)),
        ]
        if recreate:
            out.append(p.Step("+", veth))
        return out

    def test_namespace_takes_its_veth_along(self) -> None:
        steps, absorbed = fastpath.absorb_veths(self.steps())
        assert [type(s.op).__name__ for s in steps] == ["DelNetns", "DelBridge"]
        assert absorbed.by == {0: [self.steps()[0]]}
        ns, veth = o.AddNetns("c", self.owner), o.AddVeth("h", None, "eth0", "c", self.owner)
        assert steps[0].restore == (ns, veth)  # rollback rebuilds the namespace, then the veth

    @pytest.mark.parametrize("case", ["adopted", "recreate", "pinned"])
    def test_kept(self, case: str) -> None:
        steps = self.steps(adopted=case == "adopted", recreate=case == "recreate")
        kept, absorbed = fastpath.absorb_veths(steps, {"c"} if case == "pinned" else ())
        assert kept == steps and not absorbed


# -- against the kernel --------------------------------------------------------------


def run(sb: Sandbox, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sb.run([*NETGEN, *args], check=check, timeout=600)


def dry(sb: Sandbox, path: Path, *extra: str) -> list[str]:
    return run(sb, "apply", "--dry-run", *extra, str(path)).stdout.splitlines()


@kernel
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_fast_apply_equals_script_and_slow_path(sandbox: Sandbox, path: Path) -> None:
    s = spec.load(path)
    if any(c.pid is not None for c in s.containers):
        pytest.skip("adopts a process of a particular host (test_apply covers adoption)")
    prepare(sandbox, s)
    before = sandbox.state()

    run(sandbox, "apply", str(path))
    fast = sandbox.state()
    assert dry(sandbox, path) == [] and dry(sandbox, path, "--subprocess") == []
    assert "already applied" in run(sandbox, "apply", str(path)).stderr
    run(sandbox, "destroy", str(path))
    assert sandbox.state() == before

    # each in a fresh sandbox: iptables-nft lists chains in creation order, so a second
    # build in the same sandbox may list them differently
    with Sandbox.start() as slow:
        prepare(slow, s)
        slow_before = slow.state()
        run(slow, "apply", "--subprocess", str(path))
        assert slow.state() == fast  # the slow path builds the same host
        assert dry(slow, path) == []  # and the fast path takes it as built
        run(slow, "destroy", str(path))
        assert slow.state() == slow_before

    with Sandbox.start() as script:
        prepare(script, s)
        script.run(["bash"], input=render.render(s, lower.lower(s)))
        assert script.state() == fast
        assert dry(script, path) == []


DRIVER = textwrap.dedent(
    """
    import json, os, subprocess, sys
    from netgen import execute, fastpath, lower, netlink, spec
    from netgen.errors import HostError

    path, *runs = sys.argv[1:]
    s = spec.load(path)
    ops = lower.lower(s)
    ip_processes = 0
    real_run = subprocess.run

    def counting_run(argv, *args, **kwargs):
        global ip_processes
        ip_processes += list(argv)[:1] == ["ip"]
        return real_run(argv, *args, **kwargs)

    subprocess.run = counting_run

    class Faulty(fastpath.NetlinkRunner):
        '''The test double: the fail_at-th request (1-based) is refused; `link NAME`
        makes someone else's bridge NAME just before the at-th.'''

        def __init__(self, fail_at, action, at, arg):
            super().__init__()
            self.fail_at, self.action, self.at, self.arg = fail_at, action, at, arg

        def send(self, request):
            k = self.sent + 1
            if k == self.at and self.action == "link":
                real_run(["ip", "link", "add", "name", self.arg, "type", "bridge"], check=True)
            if k == self.fail_at:
                self.sent = k
                raise netlink.NetlinkError(5, f"injected failure at request {k}")
            super().send(request)

    def do(run):
        global ip_processes
        parts = run.split(":")
        verb, fail_at, action, at, arg = parts + ["", "0", "none", "0", ""][len(parts) :]
        runner = Faulty(int(fail_at), action, int(at), arg)
        ip_processes = 0
        out = {"run": run, "rc": 0, "error": ""}
        try:
            done = getattr(execute, verb)(s, ops, runner=runner)
            out["commands"] = done.commands
        except HostError as exc:
            out.update(rc=1, error=str(exc))
        finally:
            runner.close()
        out["sent"] = runner.sent
        out["ip_processes"] = ip_processes
        print(json.dumps(out), flush=True)

    """
)
DRIVER += SERVE


class Driver(ApplyDriver):
    """DRIVER (the fast path with a faulty request) fed one run at a time."""

    def __init__(self, sb: Sandbox, path: Path) -> None:
        super().__init__(sb, ["python3", "-c", DRIVER, str(path)])

    def one(self, run: str) -> dict[str, Any]:
        (result,) = self(run)
        return result


@kernel
def test_failure_at_every_request_rolls_back(sandbox: Sandbox, tmp_path: Path) -> None:
    path = write(tmp_path, "full", FULL)
    before = sandbox.state()
    drive = Driver(sandbox, path)
    built = drive.one("apply")
    assert built["rc"] == 0 and built["ip_processes"] == 0, built
    assert built["sent"] > 40  # every request of a mid-size spec, files and firewall aside
    applied = sandbox.state()
    again = drive.one("apply")  # idempotent: reads the host, sends nothing
    assert again == {**again, "rc": 0, "commands": 0, "sent": 0, "ip_processes": 0}
    gone = drive.one("destroy")
    assert gone["rc"] == 0 and gone["ip_processes"] == 0 and gone["sent"] >= 4, gone
    assert sandbox.state() == before

    for k in range(1, built["sent"] + 1):
        res = drive.one(f"apply:{k}")
        assert res["rc"] == 1 and f"injected failure at request {k}" in res["error"], res
        assert "rolled back: the host is as it was before" in res["error"], f"k={k}: {res}"
        assert sandbox.state() == before, f"k={k}: state differs after rollback"
        assert record(sandbox, "full") is None

    assert drive.one("apply")["rc"] == 0
    for k in range(1, gone["sent"] + 1):  # destroy's failures rebuild what it removed
        res = drive.one(f"destroy:{k}")
        assert res["rc"] == 1 and "rolled back" in res["error"], f"k={k}: {res}"
        assert sandbox.state() == applied, f"k={k}: destroy's rollback did not rebuild"
    assert drive.one("destroy")["rc"] == 0
    drive.close()
    assert sandbox.state() == before


@kernel
def test_conflict_appearing_midway_rolls_back(sandbox: Sandbox, tmp_path: Path) -> None:
    path = write(tmp_path, "full", FULL)
    last = [c for c in spec.load(path).containers if c.interfaces][-1]
    name = last.interfaces[-1].host_ifname
    before = sandbox.state()
    drive = Driver(sandbox, path)
    res = drive.one(f"apply:0:link:2:{name}")
    drive.close()
    assert res["rc"] == 1, res
    assert f"ip link add name {name}" in res["error"] and "File exists" in res["error"]
    assert "rolled back" in res["error"]
    assert sandbox.run(["ip", "link", "show", "dev", name], check=False).returncode == 0
    sandbox.run(["ip", "link", "delete", "dev", name])  # theirs: untouched by the rollback
    assert sandbox.state() == before


@kernel
def test_kernel_refusal_names_the_command_as_ip_does(sandbox: Sandbox, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "refused",
        """\
        version: 1
        name: refused
        bridges:
          brr:
            subnet: 10.76.0.0/24
        containers:
          web:
            routes:
              - to: 10.9.0.0/24
                via: 10.99.99.1
        """,
    )
    before = sandbox.state()
    res = run(sandbox, "apply", str(path), check=False)
    assert res.returncode == 1 and res.stdout == ""
    assert "ip -n web route add 10.9.0.0/24 via 10.99.99.1" in res.stderr
    assert "Error: Nexthop has invalid gateway." in res.stderr  # the kernel's own words
    assert "rolled back" in res.stderr
    assert sandbox.state() == before


READER = textwrap.dedent(
    """
    import dataclasses, sys
    from netgen import fastpath, netlink, state
    names = set(sys.argv[1:])
    by_ip = state.read(names, [])
    with netlink.Namespaces() as nss:
        by_netlink = state.read(names, [], reader=fastpath.Reader(nss, names))
        light = state.read(names, [], reader=fastpath.Reader(nss, names, links_only=True))
    assert by_ip == by_netlink, (by_ip, by_netlink)
    # links_only (a plan that only removes): the same links, peers and marks, the host
    # whole, no addresses or routes inside the namespaces
    assert (light.links, light.routes) == (by_ip.links, by_ip.routes)
    for name, ns in by_ip.netns.items():
        for link in ns.links.values():
            link.addresses.clear()
        assert light.netns[name] == dataclasses.replace(ns, routes=[]), name
    peers = {(n, l.name): l.peer for n, ns in by_ip.netns.items() for l in ns.links.values()}
    v6 = sum(":" in r.dst.compressed for ns in by_ip.netns.values() for r in ns.routes)
    print(sum(peer is not None for peer in peers.values()), v6)
    """
)


def read_both(sb: Sandbox, names: list[str]) -> tuple[int, int]:
    """(veth ends paired, IPv6 routes) of a snapshot the netlink Reader and `ip -j` agree on."""
    res = sb.run(["python3", "-c", READER, *names], check=False)
    assert res.returncode == 0, res.stderr
    peers, v6 = res.stdout.split()
    return int(peers), int(v6)


@kernel
def test_reader_sees_what_ip_sees(sandbox: Sandbox, tmp_path: Path) -> None:
    """The netlink snapshot equals the `ip -j` one, veth pairs across namespaces included."""
    path = write(tmp_path, "full", FULL)
    run(sandbox, "apply", str(path))
    run(sandbox, "apply", str(SPECS[[p.stem for p in SPECS].index("point-to-point")]))
    peers, _ = read_both(sandbox, ["web", "db", "solo", "c1", "c2", "absent"])
    assert peers >= 6  # web's two legs, db's, two p2p ends, c1/c2's link


@kernel
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_reader_sees_what_ip_sees_for_every_spec(sandbox: Sandbox, path: Path) -> None:
    """Every example spec, dual-stack's IPv6 addresses and routes included."""
    s = spec.load(path)
    if any(c.pid is not None for c in s.containers):
        pytest.skip("adopts a process of a particular host")
    prepare(sandbox, s)
    run(sandbox, "apply", str(path))
    _, v6 = read_both(sandbox, [*sorted(p.namespaces(lower.lower(s))), "absent"])
    if path.stem == "dual-stack":
        assert v6 >= 8  # per container: subnet6, fe80::/64, default; the p2p /128s


@kernel
def test_destroy_while_a_process_holds_a_namespace(sandbox: Sandbox, tmp_path: Path) -> None:
    """A namespace a process is in outlives its name, and so would its veth: that veth is
    deleted on its own, as the slow path does, and destroy leaves the same host."""
    path = write(tmp_path, "full", FULL)
    before = sandbox.state()
    run(sandbox, "apply", str(path))
    sleeper = sandbox.spawn(["sleep", "600"], netns="db")
    try:
        for _ in range(100_000):  # until it runs inside db
            res = sandbox.run(["ip", "netns", "pids", "db"], check=False)
            if str(sleeper.pid) in res.stdout.split() or res.stdout.strip():
                break
        run(sandbox, "destroy", str(path))
        assert sandbox.state() == before
    finally:
        sleeper.kill()
        sleeper.wait()


IFINDEX = textwrap.dedent(
    """
    import json, subprocess
    from netgen import netlink
    subprocess.run(["ip", "netns", "add", "x"], check=True)
    subprocess.run(["ip", "-n", "x", "link", "add", "name", "d0", "type", "bridge"], check=True)
    out = subprocess.run(["ip", "-n", "x", "-j", "link", "show", "d0"], capture_output=True)
    want = json.loads(out.stdout)[0]["ifindex"]
    with netlink.Namespaces() as nss:
        host, x = nss.socket(None), nss.socket("x")
        got = [host.ifindex("lo"), x.ifindex("lo"), x.ifindex("d0"), host.ifindex("d0")]
        try:
            host.ifindex("d" * 16)
        except ValueError:
            got.append("too long")
    print(json.dumps([want, got]))
    """
)


@kernel
def test_ifindex_is_looked_up_in_the_sockets_own_namespace(sandbox: Sandbox) -> None:
    res = sandbox.run(["python3", "-c", IFINDEX], check=False)
    assert res.returncode == 0, res.stderr
    want, got = json.loads(res.stdout)
    assert want > 1
    assert got == [1, 1, want, None, "too long"]
