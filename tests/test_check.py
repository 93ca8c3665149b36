"""Reachability checks: `checks:` in the spec, the checks netgen implies, `netgen check`.

Compiling is pure and tested against every spec in specs/; running is tested with a
fake prober (no traffic at all) and, in the sandbox, against a real kernel: apply,
check passes, break the network by hand, check fails and names what broke. The only
"outside" address probed is a namespace inside the sandbox, on a documentation range.
"""

from __future__ import annotations

import json
import sys
import textwrap
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from scriptcheck import single_host_specs
from syrupy.assertion import SnapshotAssertion

from netgen import check, spec
from netgen import model as m
from netgen.check import Probe
from netgen.errors import SpecError
from netgen.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILES = single_host_specs(ROOT / "specs")
NETGEN = [sys.executable, "-m", "netgen"]

kernel = pytest.mark.kernel


def text(source: str) -> str:
    return textwrap.dedent(source).lstrip("\n")


def load(source: str, file: str = "good.yaml") -> m.Spec:
    return spec.loads(text(source), file)


def problems(source: str, file: str = "bad.yaml") -> list[str]:
    """The first line of every diagnostic of a spec that must be rejected, in order."""
    with pytest.raises(SpecError) as info:
        spec.loads(text(source), file)
    return [d.format().splitlines()[0] for d in info.value.diagnostics]


def rows(probes: list[Probe]) -> list[tuple[str, str, str, str, str]]:
    """(from, to, address, what, expect) per probe: what a reader checks by eye."""
    return [(p.src, p.dst, str(p.address), p.what, p.expect) for p in probes]


def compiled(path: Path) -> list[Probe]:
    return check.compile(spec.load(path))


BASE = """
version: 1
name: base
outside: 198.51.100.7
bridges:
  front:
    subnet: 10.60.0.0/24
  back:
    subnet: 10.61.0.0/24
containers:
  web:
    interfaces:
      - bridge: front          # 10.60.0.2
      - bridge: back           # 10.61.0.2
  db:
    network: back              # 10.61.0.3
    expose: [5432]
  proxy:
    network: front             # 10.60.0.3
  side:
    network: container:web
  a:
    network: none
  b:
    network: none
  tools:
    network: host
links:
  - endpoints: [a:p0, b:p0]
    addresses: [10.62.0.1/32, 10.62.0.2/32]
"""


def with_checks(checks: str, base: str = BASE) -> str:
    return text(base) + "checks:\n" + textwrap.indent(text(checks), "  ")


# -- compiling ------------------------------------------------------------------------


class TestImplied:
    @pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
    def test_every_spec(self, path: Path, snapshot: SnapshotAssertion) -> None:
        """The implied checks of each bundled spec, as the table shows them before a run."""
        probes = compiled(path)
        assert probes == compiled(path)
        lines = [f"{p.src} -> {p.dst} {p.address} {p.what} {p.expect} ({p.origin})" for p in probes]
        assert "\n".join(lines) + "\n" == snapshot

    def test_walkthrough_reaches_its_gateway(self) -> None:
        assert rows(compiled(ROOT / "specs/walkthrough.yaml")) == [
            ("web", "docker0 gateway", "172.17.42.1", "ping", "open")
        ]

    def test_access_control(self) -> None:
        """Unlinked pairs are blocked; the linked client reaches web's exposed tcp port,
        if something listens; udp cannot be told apart, so it is skipped."""
        probes = compiled(ROOT / "specs/access-control.yaml")
        assert rows(probes) == [
            ("web", "docker0 gateway", "172.17.0.1", "ping", "open"),
            ("client", "docker0 gateway", "172.17.0.1", "ping", "open"),
            ("other", "docker0 gateway", "172.17.0.1", "ping", "open"),
            ("web", "other", "172.17.0.4", "ping", "blocked"),
            ("client", "other", "172.17.0.4", "ping", "blocked"),
            ("client", "web", "172.17.0.2", "tcp/80", "open"),
            ("client", "web", "172.17.0.2", "udp/5353", "open"),
        ]
        tcp, udp = probes[-2:]
        assert tcp.listener == check.Listener("web", "web", "tcp", 80) and tcp.skip is None
        assert udp.listener is None and udp.skip is not None

    def test_point_to_point_both_ways(self) -> None:
        assert rows(compiled(ROOT / "specs/point-to-point.yaml")) == [
            ("c1", "c2", "10.1.1.2", "ping", "open"),
            ("c2", "c1", "10.1.1.1", "ping", "open"),
        ]

    def test_published_ports_from_the_host(self) -> None:
        probes = [p for p in compiled(ROOT / "specs/port-mapping.yaml") if p.origin == "published"]
        assert [(p.netns, str(p.address), p.what, p.local) for p in probes] == [
            (None, "172.17.0.1", "tcp/49153", True),
            (None, "172.17.0.1", "tcp/3000", True),
            (None, "172.17.0.1", "tcp/5000", True),
            (None, "127.0.0.1", "tcp/49154", True),
            (None, "198.51.100.1", "tcp/8080", True),  # skipped unless the host has it
            (None, "172.17.0.1", "udp/5353", True),
            (None, "127.0.0.1", "udp/5000", True),
        ]
        assert probes[0].listener == check.Listener("web", "web", "tcp", 80)
        assert [p.skip is not None for p in probes] == [False] * 5 + [True] * 2

    def test_a_link_without_routes_between_its_ends_implies_nothing(self) -> None:
        s = load(
            """
            version: 1
            containers:
              a: {network: none}
              b: {network: none}
            links:
              - endpoints: [a:p0, b:p0]
                addresses: [10.1.0.1/24, 10.2.0.1/24]
              - endpoints: [a:p1, b:p1]
              - endpoints: [a:p2, b:p2]
                addresses: [10.3.0.1/24, 10.3.0.2/24]
            """
        )
        assert rows(check.compile(s)) == [
            ("a", "b", "10.3.0.2", "ping", "open"),
            ("b", "a", "10.3.0.1", "ping", "open"),
        ]

    def test_many_unlinked_containers_are_probed_in_a_ring(self) -> None:
        names = [f"c{i:02}" for i in range(20)]  # 190 pairs: more than MAX_PAIRS
        body = "".join(f"  {n}: {{}}\n" for n in names)
        s = spec.loads(
            "version: 1\nbridges:\n  br0: {subnet: 10.0.0.0/24, icc: false}\n"
            f"containers:\n{body}",
            "ring.yaml",
        )
        blocked = [(p.src, p.dst) for p in check.compile(s) if p.expect == "blocked"]
        assert blocked == [(n, names[(i + 1) % 20]) for i, n in enumerate(names)]

    def test_no_implied(self) -> None:
        assert check.compile(spec.load(ROOT / "specs/access-control.yaml"), implied=False) == []


class TestDeclared:
    def test_the_address_from_uses(self) -> None:
        """On a bridge both are on, else over their link, else the target's first."""
        s = load(
            with_checks(
                """
                - {from: db, to: web}           # shared bridge back: web's 10.61.0.2
                - {from: proxy, to: web}        # shared bridge front: 10.60.0.2
                - {from: a, to: b}              # the link
                - {from: a, to: web}            # nothing shared: web's first address
                - {from: tools, to: b}          # the host: b's only address, on the link
                - {from: db, to: side}          # side is web's namespace
                - {from: side, to: db}          # probes from web's namespace
                """
            )
        )
        probes = check.compile(s, implied=False)
        assert [(p.netns, str(p.address)) for p in probes] == [
            ("db", "10.61.0.2"),
            ("proxy", "10.60.0.2"),
            ("a", "10.62.0.2"),
            ("a", "10.60.0.2"),
            (None, "10.62.0.2"),
            ("db", "10.61.0.2"),
            ("web", "10.61.0.3"),
        ]

    def test_fields(self) -> None:
        s = load(
            with_checks(
                """
                - {from: web, to: db, port: 5432/tcp, expect: open}
                - {from: web, to: db, port: 53/UDP, expect: blocked}
                - {from: web, to: db, port: 5433}
                - {from: web, to: outside}
                - {from: web, to: 10.61.0.200, expect: blocked}
                - {from: web, to: "2001:db8::1"}
                """
            )
        )
        assert s.checks[0] == m.Check("web", "db", "container", None, 5432, "tcp", "open")
        assert s.checks[0].loc.line == 31 and s.checks[0].loc.path == "checks[0]"
        probes = check.compile(s, implied=False)
        assert [(p.dst, str(p.address), p.kind, p.port, p.expect) for p in probes] == [
            ("db", "10.61.0.3", "tcp", 5432, "open"),
            ("db", "10.61.0.3", "udp", 53, "blocked"),
            ("db", "10.61.0.3", "tcp", 5433, "open"),
            ("outside", "198.51.100.7", "ping", None, "open"),
            ("10.61.0.200", "10.61.0.200", "ping", None, "blocked"),
            ("2001:db8::1", "2001:db8::1", "ping", None, "open"),
        ]
        assert all(p.listener is None and not p.local for p in probes)
        assert probes[0].why == "good.yaml:31 checks[0]"

    def test_a_declared_check_replaces_the_implied_one_it_repeats(self) -> None:
        s = load(with_checks("- {from: db, to: 10.61.0.1}\n"))
        gateway = [p for p in check.compile(s) if p.netns == "db" and p.kind == "ping"]
        assert [(p.origin, p.why) for p in gateway] == [("declared", "good.yaml:31 checks[0]")]

    def test_a_container_named_outside_wins(self) -> None:
        s = load(
            """
            version: 1
            bridges: {br0: {subnet: 10.0.0.0/24}}
            containers: {outside: {}, web: {}}
            checks: [{from: web, to: outside}]
            """
        )
        assert s.checks[0].kind == "container"
        assert str(check.compile(s, implied=False)[0].address) == "10.0.0.2"


class TestErrors:
    def test_references(self) -> None:
        assert problems(
            with_checks(
                """
                - {from: wbe, to: db}
                - {from: web, to: dbb}
                - {from: web, to: tools}
                - {from: web, to: 10.0.0.300}
                """
            )
        ) == [
            "bad.yaml:31:12: checks[0].from: no container named 'wbe'; did you mean 'web'?",
            "bad.yaml:32:21: checks[1].to: no container named 'dbb'; did you mean 'db'?; "
            "'to' takes a container, outside or an IP address",
            "bad.yaml:33:21: checks[2].to: container tools uses the host's network: it has no "
            "address of its own to probe; give a host address instead",
            "bad.yaml:34:21: checks[3].to: no container named '10.0.0.300'; "
            "'to' takes a container, outside or an IP address",
        ]

    def test_a_container_without_an_address(self) -> None:
        assert problems(
            """
            version: 1
            containers:
              lonely: {network: none}
              web: {network: none}
            checks:
              - from: web
                to: lonely
            """
        ) == [
            "bad.yaml:7:9: checks[0].to: container lonely has no address on a bridge or link "
            "to probe"
        ]

    def test_outside_must_be_given(self) -> None:
        source = text(BASE).replace("outside: 198.51.100.7\n", "")
        assert problems(source + "checks:\n  - {from: web, to: outside}\n") == [
            "bad.yaml:30:21: checks[0].to: 'to: outside' needs the top-level key "
            "'outside: ADDRESS', a host beyond every bridge (netgen never guesses one: "
            "the probe sends real traffic there)"
        ]

    @pytest.mark.parametrize(
        ("address", "why"),
        [
            ("10.60.0.9", "10.60.0.9 is inside bridge front's subnet 10.60.0.0/24"),
            ("10.62.0.2", "10.62.0.2 is the address of b's p0"),
            ("127.0.0.1", "127.0.0.1 is not the address of another host"),
            ("0.0.0.0", "0.0.0.0 is not the address of another host"),
        ],
    )
    def test_outside_is_beyond_every_bridge(self, address: str, why: str) -> None:
        source = text(BASE).replace("198.51.100.7", address)
        assert problems(source) == [
            f"bad.yaml:3:10: outside: {why}; outside must be beyond every bridge"
        ]

    def test_shapes(self) -> None:
        assert problems(
            with_checks(
                """
                - {from: web, to: db, port: 99999}
                - {from: web, to: db, port: 80/sctp}
                - {from: web, to: db, expect: maybe}
                - {from: web, to: db, expect: true}
                - {to: db}
                - {from: web, to: db, prot: 80}
                - {from: -web, to: db}
                - web
                """
            )
        ) == [
            "bad.yaml:31:31: checks[0].port: port 99999 is out of range 1..65535",
            "bad.yaml:32:31: checks[1].port: unknown protocol 'sctp'; use tcp or udp",
            "bad.yaml:33:33: checks[2].expect: expected open or blocked, got 'maybe'",
            "bad.yaml:34:33: checks[3].expect: expected a string, got bool",
            "bad.yaml:35:5: checks[4].from: missing required key 'from'",
            "bad.yaml:36:25: checks[5].prot: unknown key 'prot'; did you mean 'port'?",
            "bad.yaml:37:12: checks[6].from: invalid container name '-web': use up to 64 "
            "characters of A-Z a-z 0-9 _ . -, starting with a letter or digit",
            "bad.yaml:38:5: checks[7]: expected a mapping, got string 'web'",
        ]

    def test_checks_is_a_list(self) -> None:
        assert problems(text(BASE) + "checks: {from: web, to: db}\n") == [
            "bad.yaml:30:9: checks: expected a list, got a mapping"
        ]


# -- running, with a fake host --------------------------------------------------------


@dataclass
class FakeProber:
    """Answers from tables; records every probe (nothing is sent anywhere)."""

    answers: dict[tuple[str | None, str, str], str] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    local: set[str] = field(default_factory=set)
    listening_on: set[tuple[str | None, str, int]] = field(default_factory=set)
    asked: list[tuple[Any, ...]] = field(default_factory=list)

    def netns_exists(self, name: str) -> bool:
        return name not in self.missing

    def is_local(self, address: m.IPAddress) -> bool:
        return str(address) in self.local

    def listening(self, netns: str | None, proto: m.Proto, port: int) -> bool:
        return (netns, proto, port) in self.listening_on

    def ping(self, netns: str | None, address: m.IPAddress, timeout: float) -> str:
        self.asked.append(("ping", netns, str(address), timeout))
        return self.answers.get((netns, str(address), "ping"), "no reply")

    def connect(
        self, netns: str | None, address: m.IPAddress, port: int, proto: m.Proto, timeout: float
    ) -> str:
        self.asked.append((proto, netns, str(address), port))
        return self.answers.get((netns, str(address), f"{proto}/{port}"), "timeout")


def probe(**kw: Any) -> Probe:
    base: dict[str, Any] = dict(
        src="a", netns="a", dst="b", address=ip_address("10.0.0.2"), kind="ping"
    )
    return Probe(**{**base, **kw})


class TestRun:
    @pytest.mark.parametrize(
        ("kind", "got", "expect", "ok"),
        [
            ("ping", "reply", "open", True),
            ("ping", "no reply", "open", False),
            ("ping", "unreachable", "blocked", True),
            ("ping", "reply", "blocked", False),
            ("tcp", "open", "open", True),
            ("tcp", "refused", "open", False),
            ("tcp", "refused", "blocked", True),
            ("tcp", "timeout", "blocked", True),
            ("udp", "reply", "open", True),
            ("udp", "no reply", "open", False),
            ("udp", "no reply", "blocked", True),
        ],
    )
    def test_what_passes(self, kind: str, got: str, expect: str, ok: bool) -> None:
        port = None if kind == "ping" else 80
        what = kind if port is None else f"{kind}/{port}"
        fake = FakeProber(answers={("a", "10.0.0.2", what): got})
        result = check.run_one(probe(kind=kind, port=port, expect=expect), fake)
        assert (result.got, result.ok) == (got, ok)

    def test_skips_and_missing_namespaces(self) -> None:
        listener = check.Listener("b", "b", "tcp", 80)
        fake = FakeProber(missing={"gone"}, local={"10.0.0.1"}, listening_on={("c", "tcp", 80)})
        cases = [
            probe(skip="udp: no way to tell"),
            probe(netns="gone"),
            probe(kind="tcp", port=80, listener=check.Listener("gone", "g", "tcp", 80)),
            probe(netns=None, local=True, address=ip_address("198.51.100.1")),
            probe(kind="tcp", port=80, listener=listener),
        ]
        got = [(r.got, r.ok, r.status) for r in check.run(cases, prober=fake)]
        assert got == [
            ("udp: no way to tell", None, "skipped"),
            ("no netns gone (not applied?)", False, "FAIL"),
            ("no netns gone (not applied?)", False, "FAIL"),
            ("198.51.100.1 is not an address of this host", None, "skipped"),
            ("nothing listens on tcp/80 in b", None, "skipped"),
        ]
        assert fake.asked == []  # none of them sent anything

    def test_runs_concurrently_and_keeps_the_order(self) -> None:
        import threading
        import time

        active, peak = [0], [0]
        lock = threading.Lock()

        class Slow(FakeProber):
            def ping(self, netns: str | None, address: m.IPAddress, timeout: float) -> str:
                with lock:
                    active[0] += 1
                    peak[0] = max(peak[0], active[0])
                time.sleep(0.05)
                with lock:
                    active[0] -= 1
                return "reply" if str(address).endswith("7") else "no reply"

        probes = [probe(address=ip_address(f"10.0.0.{i}")) for i in range(1, 41)]
        start = time.monotonic()
        results = check.run(probes, prober=Slow(), jobs=8)
        assert time.monotonic() - start < 1.5  # 40 x 50 ms one at a time would be 2 s
        assert 1 < peak[0] <= 8
        assert [r.probe for r in results] == probes
        assert [r.ok for r in results] == [str(p.address).endswith("7") for p in probes]

    def test_table_and_json(self) -> None:
        s = spec.load(ROOT / "specs/access-control.yaml")
        fake = FakeProber(
            answers={
                ("web", "172.17.0.1", "ping"): "reply",
                ("client", "172.17.0.1", "ping"): "reply",
            },
            listening_on={("web", "tcp", 80)},
        )
        results = check.run(check.compile(s), prober=fake)
        table = check.table(results).splitlines()
        assert table[0].split() == ["FROM", "TO", "WHAT", "EXPECT", "GOT", "OK", "WHY"]
        assert table[3].split()[:9] == [
            "other", "docker0", "gateway", "(172.17.0.1)", "ping", "open", "no", "reply", "FAIL"
        ]  # fmt: skip
        assert check.summary(results) == "7 checks: 4 passed, 2 failed, 1 skipped"
        data = json.loads(json.dumps(check.to_json(s, results)))
        assert data["ok"] is False and len(data["checks"]) == 7
        assert data["checks"][5] == {
            "from": "client",
            "netns": "client",
            "to": "web",
            "address": "172.17.0.2",
            "what": "tcp/80",
            "kind": "tcp",
            "port": 80,
            "expect": "open",
            "got": "timeout",
            "ok": False,
            "status": "FAIL",
            "origin": "exposed",
            "why": "implied: link to an exposed port",
        }


class TestCli:
    """The command, with the fake prober standing in for the host."""

    @pytest.fixture
    def run(self, monkeypatch: pytest.MonkeyPatch, netgen: Any) -> Any:
        fake = FakeProber(answers={("web", "172.17.42.1", "ping"): "reply"})
        monkeypatch.setattr(check, "LiveProber", lambda: fake)
        return netgen

    def test_passes(self, run: Any) -> None:
        code, out, err = run("check", "specs/walkthrough.yaml")
        assert code == 0
        assert out.splitlines()[1].split()[-8:] == [
            "reply", "ok", "implied:", "a", "container", "reaches", "its", "bridge"
        ]  # fmt: skip
        assert err == "netgen: spec 'walkthrough': 1 check: 1 passed, 0 failed\n"

    def test_fails(self, run: Any) -> None:
        code, out, err = run("check", "specs/point-to-point.yaml", "--json")
        assert code == 1
        assert [c["status"] for c in json.loads(out)["checks"]] == ["FAIL", "FAIL"]
        assert err == "netgen: spec 'point-to-point': 2 checks: 0 passed, 2 failed\n"

    def test_no_implied_and_nothing_to_check(self, run: Any) -> None:
        code, out, err = run("check", "specs/walkthrough.yaml", "--no-implied")
        assert (code, out.splitlines()) == (0, ["FROM  TO  WHAT  EXPECT  GOT  OK  WHY"])
        assert "0 checks" in err

    def test_a_bad_spec_is_exit_2_and_nothing_on_stdout(self, run: Any, tmp_path: Path) -> None:
        bad = tmp_path / "bad.yaml"
        bad.write_text("version: 1\nchecks: [{from: a, to: b}]\n")
        code, out, err = run("check", str(bad))
        assert (code, out) == (2, "")
        assert "checks[0].from: no container named 'a'" in err

    def test_apply_check_with_dry_run_is_a_usage_error(self, run: Any) -> None:
        code, out, err = run("apply", "specs/walkthrough.yaml", "--check", "--dry-run")
        assert (code, out) == (2, "")
        assert "--check needs a real apply" in err


# -- against a real kernel, in the sandbox --------------------------------------------


def netgen(sb: Sandbox, *args: str) -> tuple[int, str, str]:
    res = sb.run([*NETGEN, *args], check=False, timeout=300)
    return res.returncode, res.stdout, res.stderr


def failing(out: str) -> list[str]:
    """The table rows that failed, with single spaces between the words."""
    return [" ".join(line.split()) for line in out.splitlines() if " FAIL " in line]


LISTEN = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen()\n"
    "print('ready', flush=True); time.sleep(120)\n"
)


def listen(sb: Sandbox, netns: str, port: int) -> None:
    proc = sb.spawn([sys.executable, "-c", LISTEN, str(port)], netns=netns)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"


@kernel
def test_walkthrough(sandbox: Sandbox) -> None:
    assert netgen(sandbox, "apply", "specs/walkthrough.yaml", "--check")[0] == 0
    code, out, err = netgen(sandbox, "check", "specs/walkthrough.yaml")
    assert code == 0, out + err
    assert "1 check: 1 passed, 0 failed" in err
    sandbox.run(["ip", "link", "delete", "dev", "A"])  # the container's veth
    code, out, err = netgen(sandbox, "check", "specs/walkthrough.yaml")
    assert code == 1
    assert failing(out) == [
        "web docker0 gateway (172.17.42.1) ping open unreachable FAIL "
        "implied: a container reaches its bridge"
    ]
    assert "1 failed" in err
    # apply --check: the network is built again, and proven
    code, out, err = netgen(sandbox, "apply", "specs/walkthrough.yaml", "--check")
    assert code == 0 and failing(out) == []


WAN = "198.51.100.7"  # a documentation address, only ever on a namespace in the sandbox


@kernel
def test_outside_and_a_broken_default_route(sandbox: Sandbox, tmp_path: Path) -> None:
    """`to: outside`, played by a namespace of the sandbox behind its root namespace."""
    sandbox.sh(
        "ip netns add wan\n"
        "ip link add wan0 type veth peer name eth0 netns wan\n"
        "ip addr add 198.51.100.1/24 dev wan0 && ip link set wan0 up\n"
        f"ip -n wan addr add {WAN}/24 dev eth0 && ip -n wan link set eth0 up\n"
    )
    path = tmp_path / "walk.yaml"
    path.write_text(
        (ROOT / "specs/walkthrough.yaml")
        .read_text()
        .replace("    address: 172.17.42.1", "    address: 172.17.42.1\n    masquerade: true")
        + f"outside: {WAN}\n"
        "checks:\n"
        "  - {from: web, to: outside}\n"
        "  - {from: web, to: outside, port: 9/tcp, expect: blocked}\n"
    )
    code, out, err = netgen(sandbox, "apply", str(path), "--check")
    assert code == 0, out + err
    assert "3 checks: 3 passed, 0 failed" in err
    sandbox.run(["ip", "-n", "web", "route", "delete", "default"])
    code, out, err = netgen(sandbox, "check", str(path))
    assert code == 1
    assert failing(out) == [f"web outside ({WAN}) ping open unreachable FAIL {path}:17 checks[0]"]


@kernel
def test_access_control(sandbox: Sandbox, tmp_path: Path) -> None:
    assert netgen(sandbox, "apply", "specs/access-control.yaml")[0] == 0
    code, out, err = netgen(sandbox, "check", "specs/access-control.yaml")
    assert code == 0, out + err
    assert "7 checks: 5 passed, 0 failed, 2 skipped" in err
    assert "nothing listens on tcp/80 in web" in out
    listen(sandbox, "web", 80)
    code, out, err = netgen(sandbox, "check", "specs/access-control.yaml", "--json")
    assert code == 0, out + err
    data = json.loads(out)
    assert data["ok"] is True
    exposed = [c for c in data["checks"] if c["origin"] == "exposed"]
    assert [(c["what"], c["got"], c["status"]) for c in exposed] == [
        ("tcp/80", "open", "ok"),
        ("udp/5353", "udp: a silent service cannot be told from a blocked one", "skipped"),
    ]
    # a check that cannot hold: icc=false keeps other away from web
    path = tmp_path / "ac.yaml"
    path.write_text(
        (ROOT / "specs/access-control.yaml").read_text()
        + "checks:\n  - {from: other, to: web, port: 80/tcp}\n"
        + "  - {from: client, to: web, port: 80/tcp}\n"
    )
    code, out, err = netgen(sandbox, "check", str(path), "--no-implied")
    assert code == 1
    assert failing(out) == [f"other web (172.17.0.2) tcp/80 open timeout FAIL {path}:19 checks[0]"]
    assert "2 checks: 1 passed, 1 failed" in err
    # break isolation by hand (both layers: see firewall.py): blocked pairs fail
    sandbox.run(["nft", "delete", "table", "bridge", "netgen_access-control"])
    sandbox.run(["iptables", "-w", "-F", "NETGEN-access-control-FWD"])
    code, out, _ = netgen(sandbox, "check", "specs/access-control.yaml")
    assert code == 1
    assert failing(out) == [
        "web other (172.17.0.4) ping blocked reply FAIL implied: icc: false, no link",
        "client other (172.17.0.4) ping blocked reply FAIL implied: icc: false, no link",
    ]
    # and a container's interface. (Down, not deleted: deleting a port can change the
    # bridge's MAC, which the other containers' ARP caches notice only seconds later.)
    sandbox.run(["ip", "-n", "other", "link", "set", "dev", "eth0", "down"])
    code, out, _ = netgen(sandbox, "check", "specs/access-control.yaml")
    assert code == 1
    assert failing(out) == [
        "other docker0 gateway (172.17.0.1) ping open unreachable FAIL "
        "implied: a container reaches its bridge"
    ]


@kernel
def test_published_ports(sandbox: Sandbox) -> None:
    assert netgen(sandbox, "apply", "specs/port-mapping.yaml")[0] == 0
    listen(sandbox, "app", 5000)
    code, out, err = netgen(sandbox, "check", "specs/port-mapping.yaml", "--json")
    assert code == 0, out + err
    published = [c for c in json.loads(out)["checks"] if c["origin"] == "published"]
    assert [(c["address"], c["what"], c["got"]) for c in published] == [
        ("172.17.0.1", "tcp/49153", "nothing listens on tcp/80 in web"),
        ("172.17.0.1", "tcp/3000", "nothing listens on tcp/80 in web"),
        ("172.17.0.1", "tcp/5000", "open"),
        ("127.0.0.1", "tcp/49154", "open"),
        ("198.51.100.1", "tcp/8080", "198.51.100.1 is not an address of this host"),
        ("172.17.0.1", "udp/5353", "udp: a silent service cannot be told from a blocked one"),
        ("127.0.0.1", "udp/5000", "udp: a silent service cannot be told from a blocked one"),
    ]
    # the DNAT rules gone: the port no longer answers
    sandbox.run(["iptables", "-w", "-t", "nat", "-F", "NETGEN-port-mapping-DNAT"])
    code, out, _ = netgen(sandbox, "check", "specs/port-mapping.yaml")
    assert code == 1
    assert failing(out) == [
        "host app:5000 via host (172.17.0.1) tcp/5000 open refused FAIL implied: published port",
        "host app:5000 via host (127.0.0.1) tcp/49154 open refused FAIL implied: published port",
    ]
