"""A multi-host spec renders one script per host: snapshots of every host x dialect x
setup/teardown (and batch style for one host), byte-stable, shellcheck-clean; what each
host's part holds (VXLAN device, flood entries, gateway, MTU, p2p tunnels, firewall)."""

from __future__ import annotations

import textwrap
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from scriptcheck import bash_n, shellcheck, write_scripts
from syrupy.assertion import SnapshotAssertion

from netgen import check, dialects, golden, lower, migrate, render, spec
from netgen import model as m
from netgen import ops as o
from netgen.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = "specs/multihost.yaml"
HOSTS = ("h1", "h2", "h3")
KINDS = ("setup", "teardown")
CASES = [
    pytest.param(host, dialect, kind, id=f"{host}-{dialect}-{kind}")
    for host in HOSTS
    for dialect in dialects.DIALECTS
    for kind in KINDS
]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def example() -> m.Spec:
    return spec.load(EXAMPLE)


def script(host: str, dialect: str = "iproute2", kind: str = "setup", batch: bool = False) -> str:
    return golden.script(
        example(), dialect=dialect, teardown=kind == "teardown", batch=batch, host=host
    )


def load(source: str) -> m.Spec:
    return spec.loads(textwrap.dedent(source).lstrip("\n"), "inline.yaml")


def commands(s: m.Spec, host: str, teardown: bool = False) -> list[str]:
    built = lower.lower(s, host)
    todo = o.teardown(built) if teardown else built
    return [" ".join(c.argv) for op in todo for c in dialects.commands(op)]


class TestEveryHost:
    @pytest.mark.parametrize(("host", "dialect", "kind"), CASES)
    def test_script_matches_snapshot(
        self, host: str, dialect: str, kind: str, snapshot: SnapshotAssertion
    ) -> None:
        assert script(host, dialect, kind) == snapshot

    @pytest.mark.parametrize("kind", KINDS)
    def test_batch_style_matches_snapshot(self, kind: str, snapshot: SnapshotAssertion) -> None:
        assert script("h1", kind=kind, batch=True) == snapshot

    @pytest.mark.parametrize(("host", "dialect", "kind"), CASES)
    def test_same_spec_same_bytes(self, host: str, dialect: str, kind: str) -> None:
        first = script(host, dialect, kind)
        render._env.cache_clear()
        assert script(host, dialect, kind).encode() == first.encode()

    @pytest.mark.parametrize("kind", KINDS)
    def test_header_names_the_host(self, kind: str) -> None:
        header = script("h2", kind=kind).split("set -euo pipefail", 1)[0]
        assert f"# netgen {kind} script for spec 'multihost' on host 'h2'\n" in header
        assert "# host:    h2 (underlay 192.0.2.12, mtu 1500; one of 3 hosts)\n" in header

    def test_scripts_pass_bash_n_and_shellcheck(self, tmp_path: Path) -> None:
        scripts = {
            f"{host}-{dialect}-{kind}": script(host, dialect, kind)
            for host, dialect, kind in [c.values for c in CASES]
        }
        scripts.update({f"h1-batch-{k}": script("h1", kind=k, batch=True) for k in KINDS})
        scripts.update(
            {
                f"{h}-nftables-{k}": golden.script(
                    example(), firewall="nftables", teardown=k == "teardown", host=h
                )
                for h in HOSTS
                for k in KINDS
            }
        )
        paths = write_scripts(tmp_path, scripts)  # type: ignore[arg-type]
        bash_n(paths)
        shellcheck(paths)


class TestWhatEachHostGets:
    def test_the_bridge_its_gateway_the_vxlan_device_and_a_flood_entry_per_peer(self) -> None:
        cmds = commands(example(), "h2")
        assert cmds[:11] == [
            "ip link add name br0 mtu 1450 type bridge",
            "ip link set dev br0 alias netgen:multihost",
            "ip addr add 10.10.0.2/24 dev br0",
            "ip link set dev br0 up",
            "ip link add name vx100 mtu 1450 type vxlan id 100 local 192.0.2.12 dstport 4789",
            "ip link set dev vx100 alias netgen:multihost",
            "ip link set dev vx100 addrgenmode none",
            "ip link set dev vx100 master br0",
            "ip link set dev vx100 up",
            "bridge fdb append 00:00:00:00:00:00 dev vx100 dst 192.0.2.11",
            "bridge fdb append 00:00:00:00:00:00 dev vx100 dst 192.0.2.13",
        ]

    def test_only_the_hosts_own_containers_route_through_its_gateway(self) -> None:
        s = example()
        names = {
            h: [op.name for op in lower.lower(s, h) if isinstance(op, o.AddNetns)] for h in HOSTS
        }
        assert names == {"h1": ["a", "d"], "h2": ["b"], "h3": ["c"]}
        routes = [
            (op.netns, str(op.via))
            for op in lower.lower(s, "h3")
            if isinstance(op, o.AddRoute) and op.to == "default"
        ]
        assert routes == [("c", "10.10.0.3")]

    def test_a_link_across_hosts_is_a_vxlan_tunnel_at_each_end(self) -> None:
        s = example()
        h1 = [c for c in commands(s, "h1") if "vxlan id 200" in c]
        h3 = [c for c in commands(s, "h3") if "vxlan id 200" in c]
        assert h1 == [
            "ip link add name eth1 mtu 1450 netns a type vxlan id 200 local 192.0.2.11 "
            "remote 192.0.2.13 dstport 4789"
        ]
        assert h3 == [
            "ip link add name eth1 mtu 1450 netns c type vxlan id 200 local 192.0.2.13 "
            "remote 192.0.2.11 dstport 4789"
        ]
        assert not any("vxlan id 200" in c for c in commands(s, "h2"))

    def test_teardown_removes_only_marked_devices(self) -> None:
        built = lower.lower(example(), "h1")
        for op in o.teardown(built):
            if isinstance(op, (o.DelVxlan, o.DelFdb)):
                (cmd,) = dialects.commands(op)
                assert cmd.guard is not None and "netgen:multihost" in cmd.guard

    def test_underlay_dev_and_port(self) -> None:
        s = load(
            """
            version: 1
            name: dev
            hosts:
              h1: {address: "2001:db8::11", dev: eth7}
              h2: {address: "2001:db8::12"}
            bridges: {br0: {subnet: 10.0.0.0/24, vni: 9, vxlan_port: 8472}}
            containers: {a: {host: h1}, b: {host: h2}}
            """
        )
        assert (
            "ip link add name vx9 mtu 1430 type vxlan id 9 local 2001:db8::11 dstport 8472 "
            "dev eth7" in commands(s, "h1")
        )
        assert (
            "ip link add name vx9 mtu 1430 type vxlan id 9 local 2001:db8::12 dstport 8472"
            in commands(s, "h2")
        )

    def test_a_bridge_on_one_host_has_no_overlay(self) -> None:
        s = load(
            """
            version: 1
            name: one
            hosts: {h1: {address: 192.0.2.11}, h2: {address: 192.0.2.12}}
            bridges: {br0: {subnet: 10.0.0.0/24}}
            containers: {a: {host: h1}, b: {host: h1}}
            """
        )
        assert not any("vxlan" in c or "fdb" in c for c in commands(s, "h1"))
        assert commands(s, "h2") == []

    def test_a_spec_of_one_host_renders_as_without_hosts_plus_the_header(self) -> None:
        without = "version: 1\nname: same\nbridges: {br0: {subnet: 10.0.0.0/24}}\n"
        without += "containers: {a: {ports: ['80']}}\n"
        with_host = without + "hosts: {h1: {address: 192.0.2.11}}\n"
        a, b = spec.loads(without, "x.yaml"), spec.loads(with_host, "x.yaml")
        assert lower.lower(a) == lower.lower(b) == lower.lower(b, "h1")


class TestFirewallPerHost:
    def test_ports_on_the_containers_host_masquerade_on_every_host(self) -> None:
        s = example()
        rules = {
            h: [
                type(r).__name__
                for op in lower.lower(s, h)
                if isinstance(op, o.AddFirewall)
                for r in op.rules
            ]
            for h in HOSTS
        }
        assert rules == {
            "h1": ["Masquerade"],
            "h2": ["PublishPort", "Masquerade"],
            "h3": ["Masquerade"],
        }

    def test_icc_false_isolates_the_vxlan_port_and_a_link_opens_on_both_ends(self) -> None:
        s = load(
            """
            version: 1
            name: icc
            hosts: {h1: {address: 192.0.2.11}, h2: {address: 192.0.2.12}}
            bridges: {br0: {subnet: 10.0.0.0/24, icc: false, vni: 5}}
            containers:
              web: {host: h1, link: [db]}
              db: {host: h2, expose: [5432]}
            """
        )
        for host in ("h1", "h2"):
            (fw,) = [op for op in lower.lower(s, host) if isinstance(op, o.AddFirewall)]
            (iso,) = [r for r in fw.rules if isinstance(r, o.Isolate)]
            assert iso.ports[-1] == "vx5"
            (allow,) = [r for r in fw.rules if isinstance(r, o.AllowLink)]
            assert (str(allow.src), str(allow.dst), allow.port) == ("10.0.0.3", "10.0.0.4", 5432)


class TestHostChoice:
    def test_a_spec_of_several_hosts_needs_one(self) -> None:
        with pytest.raises(UsageError, match=r"spans 3 hosts \(h1, h2, h3\): say which one's"):
            lower.lower(example())

    def test_an_unknown_host_has_a_hint(self) -> None:
        with pytest.raises(UsageError) as info:
            lower.lower(example(), "h11")
        assert str(info.value) == (
            "spec 'multihost' has no host named 'h11'; did you mean 'h1'? (hosts: h1, h2, h3)"
        )

    def test_a_spec_without_hosts_takes_none(self) -> None:
        with pytest.raises(UsageError, match="has no 'hosts:', it runs on the local host"):
            lower.lower(spec.load("specs/walkthrough.yaml"), "h1")


class TestMigration:
    def test_adding_a_host_appends_one_flood_entry_on_the_others(self) -> None:
        two = """
            version: 1
            name: grow
            hosts:
              h1: {address: 192.0.2.11}
              h2: {address: 192.0.2.12}
            %s
            bridges: {br0: {subnet: 10.0.0.0/24, vni: 5}}
            containers:
              a: {host: h1, address: 10.0.0.10}
              b: {host: h2, address: 10.0.0.11}
            %s
            """
        old = load(two % ("", ""))
        new = load(two % ("  h3: {address: 192.0.2.13}", "  c: {host: h3, address: 10.0.0.12}"))
        steps = [(st.action, st.op) for st in migrate.migrate(old, new, host="h1").steps]
        assert steps == [("+", o.AddFdb("vx5", IPv4Address("192.0.2.13"), "grow"))]
        h3 = [type(st.op).__name__ for st in migrate.migrate(old, new, host="h3").steps]
        assert "AddVxlan" in h3 and h3.count("AddFdb") == 2


class TestChecksPerHost:
    def test_only_the_probes_that_start_on_the_host(self) -> None:
        probes = check.compile(example(), host="h2")
        assert [(p.src, p.dst, str(p.address), p.origin) for p in probes] == [
            ("b", "br0 gateway", "10.10.0.2", "gateway"),
            ("host", "b:80 via host", "10.10.0.2", "published"),
        ]

    def test_a_listener_on_another_host_makes_a_skip(self) -> None:
        s = load(
            """
            version: 1
            name: icc
            hosts: {h1: {address: 192.0.2.11}, h2: {address: 192.0.2.12}}
            bridges: {br0: {subnet: 10.0.0.0/24, icc: false}}
            containers:
              web: {host: h1, link: [db]}
              db: {host: h2, expose: [5432]}
            """
        )
        (exposed,) = [p for p in check.compile(s, host="h1") if p.origin == "exposed"]
        assert (exposed.listener, exposed.skip) == (
            None,
            "the listener would run in db, on host h2",
        )
        assert not [p for p in check.compile(s, host="h2") if p.origin == "exposed"]


def test_the_docs_show_h2s_script_as_rendered() -> None:
    doc = (ROOT / "docs" / "multihost.md").read_text()
    assert f"```bash\n{script('h2')}```\n" in doc
    assert f"```yaml\n{(ROOT / EXAMPLE).read_text()}```\n" in doc
