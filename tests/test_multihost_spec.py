"""Multi-host specs (`hosts:`): placement, gateways, MTU, VNIs and every cross-host error.

Error tests assert the exact first line of each diagnostic, `file:line:col: key.path:
message`, as tests/test_spec.py does.
"""

from __future__ import annotations

import textwrap
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from netgen import model as m
from netgen import spec
from netgen.errors import SpecError

ROOT = Path(__file__).resolve().parent.parent


def load(source: str) -> m.Spec:
    return spec.loads(textwrap.dedent(source).lstrip("\n"), "good.yaml")


def problems(source: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        spec.loads(textwrap.dedent(source).lstrip("\n"), "bad.yaml")
    return [d.format().splitlines()[0] for d in info.value.diagnostics]


# indented as the blocks appended to it, so that the whole dedents as one
TWO = """
            version: 1
            name: two
            hosts:
              h1: {address: 192.0.2.11}
              h2: {address: 192.0.2.12}
"""


class TestModel:
    def test_the_example(self) -> None:
        s = spec.load(ROOT / "specs" / "multihost.yaml")
        assert [h.name for h in s.hosts] == ["h1", "h2", "h3"]
        assert {c.name: c.host for c in s.containers} == {
            "a": "h1",
            "b": "h2",
            "c": "h3",
            "d": "h1",
        }
        br0 = s.bridge("br0")
        assert br0.gateways == (
            ("h1", IPv4Address("10.10.0.1"), None),
            ("h2", IPv4Address("10.10.0.2"), None),
            ("h3", IPv4Address("10.10.0.3"), None),
        )
        # IPAM skips every host's gateway
        assert {c.name: str(c.address) for c in s.containers} == {
            "a": "10.10.0.4",
            "b": "10.10.0.5",
            "c": "10.10.0.6",
            "d": "10.10.0.7",
        }
        assert (br0.vni, br0.vxlan_port, br0.mtu, br0.overlay) == (100, 4789, 1450, True)
        (link,) = s.links
        assert (link.vni, link.hosts, link.crosses) == (200, ("h1", "h3"), True)

    def test_one_host_is_every_containers_host(self) -> None:
        s = load(
            """
            version: 1
            hosts: {h1: {address: 192.0.2.11}}
            bridges: {br0: {subnet: 10.0.0.0/24}}
            containers: {a: {}}
            """
        )
        assert s.container("a").host == "h1"
        assert s.bridge("br0").overlay is False
        assert s.bridge("br0").mtu is None  # one host: no overlay, the kernel's MTU

    def test_without_hosts_nothing_changes(self) -> None:
        s = load("version: 1\nbridges: {br0: {subnet: 10.0.0.0/24, vni: 5}}\ncontainers: {a: {}}\n")
        assert (s.hosts, s.container("a").host, s.bridge("br0").gateways) == ((), None, ())

    def test_a_bridge_spans_only_its_containers_hosts(self) -> None:
        s = load(
            TWO
            + """
            bridges:
              br0: {subnet: 10.0.0.0/24}
              br1: {subnet: 10.1.0.0/24}
            containers:
              a: {host: h2, network: br0}
            """
        )
        assert s.bridge("br0").hosts == ("h2",)
        assert s.bridge("br0").address == IPv4Address("10.0.0.1")
        assert s.bridge("br1").hosts == ("h1", "h2")  # no containers: every host

    def test_gateways_skip_static_addresses_and_come_before_automatic_ones(self) -> None:
        s = load(
            TWO
            + """
            bridges: {br0: {subnet: 10.0.0.0/24, subnet6: "fd00::/64"}}
            containers:
              a: {host: h1, address: 10.0.0.2}
              b: {host: h2}
            """
        )
        br0 = s.bridge("br0")
        assert [(h, str(a), str(a6)) for h, a, a6 in br0.gateways] == [
            ("h1", "10.0.0.1", "fd00::1"),
            ("h2", "10.0.0.3", "fd00::2"),
        ]
        assert (str(s.container("b").address), str(s.container("b").address6)) == (
            "10.0.0.4",
            "fd00::4",
        )

    def test_the_overlay_mtu_is_the_smallest_hosts(self) -> None:
        s = load(
            """
            version: 1
            hosts:
              h1: {address: "2001:db8::11", mtu: 9000}
              h2: {address: "2001:db8::12", mtu: 1500}
            bridges: {br0: {subnet: 10.0.0.0/24}}
            containers: {a: {host: h1}, b: {host: h2}}
            """
        )
        assert s.bridge("br0").mtu == 1430  # 1500 less 70 bytes of VXLAN over IPv6

    def test_derived_vnis_are_stable_and_skip_given_ones(self) -> None:
        source = (
            TWO
            + """
            bridges:
              br0: {subnet: 10.0.0.0/24}
              br1: {subnet: 10.1.0.0/24, vni: %d}
            containers: {a: {host: h1, network: br0}, b: {host: h2, network: br1}}
            """
        )
        first = load(source % 1).bridge("br0").vni
        assert first is not None and load(source % 1).bridge("br0").vni == first
        assert load(source % first).bridge("br0").vni == first % 16777215 + 1

    def test_container_mode_follows_its_namespaces_host(self) -> None:
        s = load(
            TWO
            + """
            bridges: {br0: {subnet: 10.0.0.0/24}}
            containers:
              a: {host: h2}
              side: {network: "container:a"}
            """
        )
        assert s.container("side").host == "h2"

    def test_the_same_host_port_on_two_hosts(self) -> None:
        s = load(
            TWO
            + """
            bridges: {br0: {subnet: 10.0.0.0/24}}
            containers:
              a: {host: h1, ports: ["8080:80", "81"]}
              b: {host: h2, ports: ["8080:80", "81"]}
            """
        )
        assert [(p.host_port, p.container_port) for p in s.container("b").ports] == [
            (8080, 80),
            (49153, 81),
        ]

    def test_vars(self) -> None:
        s = load(
            """
            version: 1
            hosts:
              h1:
                address: 192.0.2.11
                vars: {ansible_user: root, ports: [22], opts: {a: null, "b": 1.5}}
            """
        )
        assert dict(s.host("h1").vars) == {
            "ansible_user": "root",
            "ports": [22],
            "opts": {"a": None, "b": 1.5},
        }


class TestErrors:
    def test_unknown_host_with_a_hint(self) -> None:
        assert problems(
            TWO
            + """
            containers:
              a: {host: h11, network: none}
            """
        ) == ["bad.yaml:8:13: containers.a.host: no host named 'h11'; did you mean 'h1'?"]

    def test_host_is_required_with_two_hosts(self) -> None:
        assert problems(TWO + "            containers:\n              a: {network: none}\n") == [
            "bad.yaml:7:6: containers.a.host: missing 'host': the spec has 2 hosts (h1, h2); "
            "say which one a runs on"
        ]

    def test_host_without_hosts(self) -> None:
        assert problems("version: 1\ncontainers:\n  a: {network: none, host: h1}\n") == [
            "bad.yaml:3:28: containers.a.host: 'host' needs the top-level 'hosts:' "
            "(the machines the spec spans)"
        ]

    def test_host_addresses(self) -> None:
        assert problems(
            """
            version: 1
            hosts:
              h1: {address: 192.0.2.11}
              h2: {address: 192.0.2.11}
              h3: {address: "2001:db8::1"}
              h4: {address: 127.0.0.1}
            """
        ) == [
            "bad.yaml:4:17: hosts.h2.address: 192.0.2.11 is already the address of host h1",
            "bad.yaml:5:17: hosts.h3.address: 2001:db8::1 is IPv6 but host h1's address "
            "192.0.2.11 is IPv4; the VXLAN tunnels between hosts need one address family",
            "bad.yaml:6:17: hosts.h4.address: 127.0.0.1 is not a unicast address another "
            "host can reach",
        ]

    def test_host_mtu_too_small_for_the_overlay(self) -> None:
        assert problems("version: 1\nhosts:\n  h1: {address: 192.0.2.11, mtu: 100}\n") == [
            "bad.yaml:3:34: hosts.h1.mtu: mtu 100 leaves 50 for the VXLAN overlay (50 bytes of "
            "headers over IPv4); an interface needs at least 68"
        ]

    def test_bridge_mtu_above_the_overlays(self) -> None:
        assert problems(
            """
            version: 1
            hosts:
              h1: {address: 192.0.2.11}
              h2: {address: 192.0.2.12, mtu: 1400}
            bridges: {br0: {subnet: 10.0.0.0/24, mtu: 1500}}
            containers: {a: {host: h1}, b: {host: h2}}
            """
        ) == [
            "bad.yaml:5:43: bridges.br0.mtu: mtu 1500 does not fit the VXLAN overlay: at most "
            "1350 (host h2's mtu 1400 less 50 bytes of VXLAN over IPv4)"
        ]

    def test_uplinks_and_external_on_a_bridge_across_hosts(self) -> None:
        assert problems(
            TWO
            + """
            bridges:
              br0: {subnet: 10.0.0.0/24, uplinks: [eth9]}
              br1: {subnet: 10.1.0.0/24, external: true}
            containers:
              a: {host: h1, interfaces: [{bridge: br0}, {bridge: br1}]}
              b: {host: h2, interfaces: [{bridge: br0}, {bridge: br1}]}
            """
        ) == [
            "bad.yaml:8:39: bridges.br0.uplinks: bridge br0 spans hosts h1, h2 (its containers "
            "run there): an uplink is one host's interface; put it on a bridge whose containers "
            "all run on one host",
            "bad.yaml:9:40: bridges.br1.external: bridge br1 spans hosts h1, h2 (its containers "
            "run there), so netgen builds it on each of them with a VXLAN device; an external "
            "bridge exists on one host only",
        ]

    def test_uplinks_on_a_bridge_of_one_host_are_fine(self) -> None:
        s = load(
            TWO
            + """
            bridges: {br0: {subnet: 10.0.0.0/24, uplinks: [eth9]}}
            containers: {a: {host: h1}}
            """
        )
        assert s.bridge("br0").hosts == ("h1",)

    def test_duplicate_vnis(self) -> None:
        assert problems(
            TWO
            + """
            bridges: {br0: {subnet: 10.0.0.0/24, vni: 7}}
            containers: {a: {host: h1}, b: {host: h2}}
            links:
              - endpoints: [a:eth1, b:eth1]
                vni: 7
            """
        ) == ["bad.yaml:11:10: links[0].vni: VNI 7 is already used by bridges.br0"]

    def test_ports_clash_on_one_host_only(self) -> None:
        assert problems(
            TWO
            + """
            bridges: {br0: {subnet: 10.0.0.0/24}}
            containers:
              a: {host: h1, ports: ["80:80"]}
              b: {host: h2, ports: ["80:80"]}
              c: {host: h1, ports: ["80:80"]}
            """
        ) == [
            "bad.yaml:11:25: containers.c.ports[0]: host port 80/tcp is already published on "
            "host h1 by containers.a.ports[0]"
        ]

    def test_host_ifname_clashes_with_the_vxlan_device_on_its_host(self) -> None:
        assert problems(
            TWO
            + """
            bridges: {br0: {subnet: 10.0.0.0/24, vni: 7}}
            containers:
              a: {host: h1, host_ifname: vx7}
              b: {host: h2, host_ifname: same}
              c: {host: h1, host_ifname: same}
            """
        ) == [
            "bad.yaml:9:30: containers.a.host_ifname: host interface name 'vx7' is already "
            "bridge br0's VXLAN device on host h1"
        ]

    def test_container_mode_on_another_host(self) -> None:
        assert problems(
            TWO
            + """
            bridges: {br0: {subnet: 10.0.0.0/24}}
            containers:
              a: {host: h1}
              b: {host: h2, network: "container:a"}
            """
        ) == [
            "bad.yaml:10:13: containers.b.host: b shares the network namespace of a "
            "(network: container:a), which runs on host h1; leave out 'host' or say h1"
        ]

    def test_var_names(self) -> None:
        assert problems("version: 1\nhosts:\n  h1: {address: 192.0.2.11, vars: {1x: 2}}\n") == [
            "bad.yaml:3:36: hosts.h1.vars.1x: invalid variable name '1x': use A-Z a-z 0-9 _, "
            "not starting with a digit (Ansible's rule)"
        ]
