"""Loading and validating specs: every error the contract names, and what valid specs mean.

Error tests assert the exact text a user sees on the first line of each diagnostic,
`file:line:col: key.path: message`, so a moved caret or a reworded message shows here.
"""

from __future__ import annotations

import json
import re
import textwrap
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from netgen import model as m
from netgen import spec
from netgen.errors import SpecError, UsageError

NAME_RULE = "use up to 64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit"
IFNAME_RULE = "use 1 to 15 characters of A-Z a-z 0-9 _ . -"


def text(source: str) -> str:
    return textwrap.dedent(source).lstrip("\n")


def load(source: str, file: str = "good.yaml") -> m.Spec:
    return spec.loads(text(source), file)


def problems(source: str, file: str = "bad.yaml") -> list[str]:
    """The first line of every diagnostic of a spec that must be rejected, in order."""
    with pytest.raises(SpecError) as info:
        spec.loads(text(source), file)
    return [d.format().splitlines()[0] for d in info.value.diagnostics]


def addresses(s: m.Spec) -> dict[str, str]:
    return {c.name: str(c.address) for c in s.containers if c.address is not None}


ONE_BRIDGE = """
version: 1
bridges:
  br0:
    subnet: 10.0.0.0/24
"""


class TestYaml:
    def test_invalid_syntax(self) -> None:
        assert problems("version: 1\nbridges:\n  br0: [\n") == [
            "bad.yaml:4:1: invalid YAML: did not find expected node content"
        ]

    def test_tab_indentation(self) -> None:
        assert problems("version: 1\nbridges:\n\tbr0: {}\n") == [
            "bad.yaml:3:1: invalid YAML: found character that cannot start any token"
        ]

    def test_duplicate_key(self) -> None:
        assert problems(
            """
            version: 1
            bridges:
              br0: {subnet: 10.0.0.0/24}
              br0: {subnet: 10.1.0.0/24}
            """
        ) == ["bad.yaml:4:3: bridges.br0: duplicate key 'br0' (first given on line 3)"]

    def test_duplicate_key_inside_a_container(self) -> None:
        assert problems(
            ONE_BRIDGE + "containers:\n  web:\n    address: 10.0.0.5\n    address: 10.0.0.6\n"
        ) == [
            "bad.yaml:8:5: containers.web.address: duplicate key 'address' (first given on line 7)"
        ]

    @pytest.mark.parametrize("source", ["", "\n\n", "# only a comment\n", "---\n"])
    def test_empty_file(self, source: str) -> None:
        assert problems(source) == ["bad.yaml:1:1: spec is empty; it needs at least 'version: 1'"]

    def test_top_level_must_be_a_mapping(self) -> None:
        assert problems("- version: 1\n") == ["bad.yaml:1:1: expected a mapping, got a list"]

    def test_keys_must_be_plain_strings(self) -> None:
        assert problems("version: 1\n? [a, b]\n: x\n") == [
            "bad.yaml:2:3: keys must be plain strings"
        ]

    def test_an_alias_bomb_is_rejected_not_expanded(self) -> None:
        lines = ["version: 1", 'lol0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        lines += [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
        lines += ["containers:", "  c:", "    network: none", "    routes: *l9"]
        with pytest.raises(SpecError) as info:
            spec.loads("\n".join(lines) + "\n", "bomb.yaml")
        paths = sorted(d.path for d in info.value.diagnostics)
        # ten unknown keys, and routes: nine items, each a list where a route should be
        assert paths == sorted(
            [f"lol{i}" for i in range(10)] + [f"containers.c.routes[{i}]" for i in range(9)]
        )

    def test_an_alias_bomb_in_a_valid_place_is_still_bounded(self) -> None:
        # every alias is a real list item: nine names, each a list of a billion strings
        lines = ["version: 1", "x0: &x0 [a, a, a, a, a, a, a, a, a]"]
        lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]" for i in range(1, 10)]
        lines += ["bridges:", "  br0:", "    subnet: 10.0.0.0/24", "    uplinks: *x9"]
        with pytest.raises(SpecError) as info:
            spec.loads("\n".join(lines) + "\n", "bomb.yaml")
        uplink_errors = [d for d in info.value.diagnostics if d.path.startswith("bridges.br0")]
        assert [d.message for d in uplink_errors] == ["expected a single value, got a list"] * 9

    def test_a_huge_input_is_rejected_before_parsing(self, tmp_path: Path) -> None:
        path = tmp_path / "huge.yaml"
        path.write_bytes(b"version: 1\n" + b"#" * (32 * 1024 * 1024) + b"\n")
        with pytest.raises(SpecError) as info:
            spec.load(path)
        assert [d.format().splitlines()[0] for d in info.value.diagnostics] == [
            f"{path}:1:1: spec is larger than 32 MiB"
        ]

    def test_a_file_that_is_not_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "latin1.yaml"
        path.write_bytes("version: 1\nname: caf\xe9\n".encode("latin-1"))
        with pytest.raises(UsageError, match=r"is not UTF-8 text"):
            spec.load(path)

    def test_a_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(UsageError, match=r"cannot read spec '.*nope.yaml': No such file"):
            spec.load(tmp_path / "nope.yaml")


class TestVersion:
    def test_missing(self) -> None:
        assert problems("name: x\n") == [
            "bad.yaml:1:1: version: missing required key 'version' (use 'version: 1')"
        ]

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("2", "unsupported version 2; expected 1"),
            ("0", "unsupported version 0; expected 1"),
            ('"1"', "expected 1, got string '1'"),
            ("true", "expected 1, got boolean true"),
            ("1.0", "expected 1, got float 1.0"),
            ("", "expected 1, got null"),
        ],
    )
    def test_must_be_the_integer_1(self, value: str, message: str) -> None:
        col = len("version: ") + 1 if value else len("version:") + 1
        source = f"version: {value}\n" if value else "version:\nname: x\n"
        found = problems(source)
        assert found == [f"bad.yaml:1:{col}: version: {message}"]


class TestUnknownKeys:
    def test_top_level_with_a_hint(self) -> None:
        assert problems("version: 1\nbridge: {}\n") == [
            "bad.yaml:2:1: bridge: unknown key 'bridge'; did you mean 'bridges'?"
        ]

    def test_top_level_without_a_close_match_lists_the_keys(self) -> None:
        assert problems("version: 1\ncolour: blue\n") == [
            "bad.yaml:2:1: colour: unknown key 'colour' "
            "(expected one of: version, name, hosts, bridges, containers, links, outside, checks)"
        ]

    def test_at_every_depth(self) -> None:
        assert problems(
            """
            version: 1
            bridges:
              br0: {subnet: 10.0.0.0/24, adress: 10.0.0.1}
            containers:
              web:
                netwrk: br0
                interfaces:
                  - {bridge: br0, host_ifnam: x}
                routes:
                  - {to: 10.9.0.0/16, via: 10.0.0.1, metric: 5}
                dns: {nameserver: [10.0.0.1]}
            links:
              - {endpoints: [web:eth1, web:eth2], adresses: []}
            """
        ) == [
            "bad.yaml:3:30: bridges.br0.adress: unknown key 'adress'; did you mean 'address'?",
            "bad.yaml:6:5: containers.web.netwrk: unknown key 'netwrk'; did you mean 'network'?",
            "bad.yaml:8:23: containers.web.interfaces[0].host_ifnam: unknown key 'host_ifnam'; "
            "did you mean 'host_ifname'?",
            "bad.yaml:10:42: containers.web.routes[0].metric: unknown key 'metric' "
            "(expected one of: to, via, dev)",
            "bad.yaml:11:11: containers.web.dns.nameserver: unknown key 'nameserver'; "
            "did you mean 'nameservers'?",
            "bad.yaml:13:39: links[0].adresses: unknown key 'adresses'; did you mean 'addresses'?",
        ]


class TestTypes:
    def test_wrong_types_everywhere_all_reported(self) -> None:
        assert problems(
            """
            version: 1
            bridges:
              br0: {subnet: 10, address: 7, mtu: "1500", external: yes please}
              br1: {subnet: 10.1.0.0/24, mtu: 10, icc: 1, uplinks: em1}
            containers:
              web: {network: br0, routes: {to: default}, hosts: [a], ports: "80", dns: [1]}
              db: [1]
              app: {network: [br0], default_route: maybe, pid: -1}
            links: {}
            """
        ) == [
            "bad.yaml:3:17: bridges.br0.subnet: '10' is not an IPv4 CIDR (like 10.0.0.0/24)",
            "bad.yaml:3:30: bridges.br0.address: '7' is not an IPv4 address",
            "bad.yaml:3:38: bridges.br0.mtu: expected an integer, got string '1500'",
            "bad.yaml:3:56: bridges.br0.external: expected true or false, got string 'yes please'",
            "bad.yaml:4:35: bridges.br1.mtu: must be between 68 and 65535, got 10",
            "bad.yaml:4:44: bridges.br1.icc: expected true or false, got int 1",
            "bad.yaml:4:56: bridges.br1.uplinks: expected a list, got string 'em1'",
            "bad.yaml:6:31: containers.web.routes: expected a list, got a mapping",
            "bad.yaml:6:53: containers.web.hosts: expected a mapping, got a list",
            "bad.yaml:6:65: containers.web.ports: expected a list, got string '80'",
            "bad.yaml:6:76: containers.web.dns: expected a mapping, got a list",
            "bad.yaml:7:7: containers.db: expected a mapping, got a list",
            "bad.yaml:8:18: containers.app.network: expected a single value, got a list",
            "bad.yaml:8:40: containers.app.default_route: expected true or false, "
            "got string 'maybe'",
            "bad.yaml:8:52: containers.app.pid: must be between 1 and 4194304, got -1",
            "bad.yaml:9:8: links: expected a list, got a mapping",
        ]

    def test_address_forms(self) -> None:
        assert problems(
            """
            version: 1
            bridges:
              br0: {subnet: 10.0.0.0/33}
              br1: {subnet: 10.1.0.1/24}
              br2: {subnet: 10.2.0.0}
              br3: {subnet: 10.3.0.0/24, address: 10.3.0.300}
            containers:
              a: {network: br3, address: 10.3.0.5/99}
            """
        ) == [
            "bad.yaml:3:17: bridges.br0.subnet: '10.0.0.0/33' is not an IPv4 CIDR "
            "(like 10.0.0.0/24)",
            "bad.yaml:4:17: bridges.br1.subnet: '10.1.0.1/24' has host bits set; "
            "did you mean 10.1.0.0/24?",
            "bad.yaml:5:17: bridges.br2.subnet: '10.2.0.0' is not an IPv4 CIDR (like 10.0.0.0/24)",
            "bad.yaml:6:39: bridges.br3.address: '10.3.0.300' is not an IPv4 address",
            "bad.yaml:8:30: containers.a.address: '10.3.0.5/99' is not an IPv4 address "
            "or address/prefix",
        ]

    @pytest.mark.parametrize(
        ("mac", "message"),
        [
            ("zz:00", "'zz:00' is not a MAC address (like 02:42:ac:11:00:02)"),
            ("02:42:ac:11:00", "'02:42:ac:11:00' is not a MAC address (like 02:42:ac:11:00:02)"),
            (
                "02-42-ac-11-00-02",
                "'02-42-ac-11-00-02' is not a MAC address (like 02:42:ac:11:00:02)",
            ),
            (
                "01:00:5e:00:00:01",
                "01:00:5e:00:00:01 is a multicast MAC; an interface needs unicast",
            ),
        ],
    )
    def test_bad_mac(self, mac: str, message: str) -> None:
        assert problems(ONE_BRIDGE + f'containers:\n  web: {{mac: "{mac}"}}\n') == [
            f"bad.yaml:6:14: containers.web.mac: {message}"
        ]

    def test_mac_is_kept_lower_case(self) -> None:
        s = load(ONE_BRIDGE + "containers:\n  web: {mac: 02:42:AC:11:00:02}\n")
        assert s.container("web").interfaces[0].mac == "02:42:ac:11:00:02"

    def test_dns_hosts_and_hostname(self) -> None:
        assert problems(
            ONE_BRIDGE
            + text(
                """
                containers:
                  web:
                    dns:
                      nameservers: [1.2.3]
                      search: ["bad domain"]
                      options: ["a b"]
                    hosts:
                      "bad host": 1.2.3.4
                      ok: notanip
                    hostname: "-x"
                """
            )
        ) == [
            "bad.yaml:8:21: containers.web.dns.nameservers[0]: '1.2.3' is not an IP address",
            "bad.yaml:9:16: containers.web.dns.search[0]: 'bad domain' is not a valid host name",
            "bad.yaml:10:17: containers.web.dns.options[0]: 'a b' is not a resolv.conf option "
            "(like ndots:2)",
            "bad.yaml:12:7: containers.web.hosts.bad host: 'bad host' is not a valid host name",
            "bad.yaml:13:11: containers.web.hosts.ok: 'notanip' is not an IP address",
            "bad.yaml:14:15: containers.web.hostname: '-x' is not a valid host name",
        ]

    def test_routes(self) -> None:
        assert problems(
            ONE_BRIDGE
            + text(
                """
                containers:
                  web:
                    routes:
                      - to: 10.9.0.0/16
                      - via: 10.0.0.1
                      - {to: 10.8.0.0/16, via: 10.0.0.256}
                      - {to: 10.7.0.0/16, dev: eth7}
                      - {to: default, via: 10.0.0.9}
                """
            )
        ) == [
            "bad.yaml:8:9: containers.web.routes[0]: a route needs 'via' or 'dev' (or both)",
            "bad.yaml:9:9: containers.web.routes[1].to: missing required key 'to'",
            "bad.yaml:10:32: containers.web.routes[2].via: '10.0.0.256' is not an IPv4 address",
            "bad.yaml:11:32: containers.web.routes[3].dev: no interface 'eth7' in web "
            "(has: eth0, lo)",
            "bad.yaml:12:14: containers.web.routes[4].to: web already gets "
            "'default via 10.0.0.1'; set default_route: false to route default elsewhere",
        ]


class TestNames:
    HOSTILE = [
        "$(reboot)",
        "a;reboot",
        "a b",
        "a/b",
        "../x",
        "`id`",
        "a'b",
        'a"b',
        "a\nb",
        "a|b",
        "a&b",
        "a>b",
        "caf\u00e9",
        "-x",
        ".",
        "..",
        ".hidden",
    ]

    @pytest.mark.parametrize("name", [*HOSTILE, "x" * 65])
    def test_container_name(self, name: str) -> None:
        quoted = json.dumps(name)
        assert problems(f"version: 1\ncontainers:\n  {quoted}: {{network: none}}\n") == [
            f"bad.yaml:3:3: containers.{_shown(name)}: invalid container name {name!r}: {NAME_RULE}"
        ]

    @pytest.mark.parametrize("name", ["x" * 64, "a", "A.b-c_d", "0web"])
    def test_container_name_accepted(self, name: str) -> None:
        s = load(f"version: 1\ncontainers:\n  {name}: {{network: none}}\n")
        assert s.containers[0].netns == name

    @pytest.mark.parametrize("name", [n for n in HOSTILE if n not in (".", "..", "-x", ".hidden")])
    def test_bridge_name(self, name: str) -> None:
        quoted = json.dumps(name)
        assert problems(f"version: 1\nbridges:\n  {quoted}: {{subnet: 10.0.0.0/24}}\n") == [
            f"bad.yaml:3:3: bridges.{_shown(name)}: invalid bridge name {name!r}: {IFNAME_RULE}"
        ]

    @pytest.mark.parametrize("name", [".", ".."])
    def test_bridge_name_dots(self, name: str) -> None:
        assert problems(f'version: 1\nbridges:\n  "{name}": {{subnet: 10.0.0.0/24}}\n') == [
            f"bad.yaml:3:3: bridges.{name}: invalid bridge name {name!r}: "
            ". and .. are not interface names"
        ]

    def test_bridge_name_too_long(self) -> None:
        assert problems("version: 1\nbridges:\n  br0123456789abcd: {subnet: 10.0.0.0/24}\n") == [
            "bad.yaml:3:3: bridges.br0123456789abcd: invalid bridge name 'br0123456789abcd': "
            f"{IFNAME_RULE}"
        ]

    def test_spec_name(self) -> None:
        assert problems('version: 1\nname: "$(reboot)"\n') == [
            f"bad.yaml:2:7: name: invalid spec name '$(reboot)': {NAME_RULE}"
        ]

    def test_spec_name_defaults_to_the_file_stem_which_must_be_valid(self) -> None:
        assert load("version: 1\n", "dir/my-net.yaml").name == "my-net"
        assert problems("version: 1\n", "my net.yaml") == [
            "my net.yaml:1:1: name: the file name 'my net' is not a valid spec name; set 'name:'"
        ]
        assert load("version: 1\nname: ok\n", "my net.yaml").name == "ok"

    @pytest.mark.parametrize("name", ["../x", "a;b", "a b", "$(x)", "x" * 65])
    def test_netns(self, name: str) -> None:
        quoted = json.dumps(name)
        assert problems(f"version: 1\ncontainers:\n  c: {{network: none, netns: {quoted}}}\n") == [
            f"bad.yaml:3:29: containers.c.netns: invalid netns name {name!r}: {NAME_RULE}"
        ]

    @pytest.mark.parametrize("key", ["ifname", "host_ifname"])
    @pytest.mark.parametrize(
        ("name", "rule"),
        [
            ("eth0123456789012", IFNAME_RULE),
            ("a/b", IFNAME_RULE),
            ("a b", IFNAME_RULE),
            ("$(x)", IFNAME_RULE),
            ("a;b", IFNAME_RULE),
            ("", IFNAME_RULE),
            (".", ". and .. are not interface names"),
            ("..", ". and .. are not interface names"),
        ],
    )
    def test_interface_names(self, key: str, name: str, rule: str) -> None:
        quoted = json.dumps(name)
        col = len(f"    {key}: ") + 1
        assert problems(ONE_BRIDGE + f"containers:\n  c:\n    {key}: {quoted}\n") == [
            f"bad.yaml:7:{col}: containers.c.{key}: invalid interface name {name!r}: {rule}"
        ]

    def test_interface_name_of_15_chars_is_fine(self) -> None:
        s = load(
            ONE_BRIDGE
            + "containers:\n  c: {ifname: eth012345678901, host_ifname: h12345678901234}\n"
        )
        leg = s.container("c").interfaces[0]
        assert (leg.ifname, leg.host_ifname) == ("eth012345678901", "h12345678901234")

    def test_uplink_and_link_endpoint_names(self) -> None:
        assert problems(
            """
            version: 1
            bridges:
              br0: {subnet: 10.0.0.0/24, uplinks: [em1, "$(reboot)"]}
            containers:
              a: {network: none}
            links:
              - endpoints: ["a:$(x)", "a:eth1"]
              - endpoints: ["a-eth1", "a:eth2"]
            """
        ) == [
            f"bad.yaml:3:45: bridges.br0.uplinks[1]: invalid interface name '$(reboot)': "
            f"{IFNAME_RULE}",
            "bad.yaml:7:17: links[0].endpoints[0]: 'a:$(x)' is not CONTAINER:IFNAME (like a:eth1)",
            "bad.yaml:8:17: links[1].endpoints[0]: 'a-eth1' is not CONTAINER:IFNAME (like a:eth1)",
        ]

    def test_a_hostile_key_cannot_forge_output_lines(self) -> None:
        with pytest.raises(SpecError) as info:
            spec.loads('version: 1\ncontainers:\n  "a\\nb\\e[2J": {network: none}\n', "x.yaml")
        first = str(info.value).splitlines()[0]
        assert first.startswith("x.yaml:3:3: containers.a\\nb\\x1b[2J: invalid container name")
        assert "\x1b" not in str(info.value)


def _shown(name: str) -> str:
    """How a key path shows a name: non-printable characters escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in name)


class TestAddresses:
    def test_overlapping_subnets(self) -> None:
        assert problems(
            """
            version: 1
            bridges:
              a: {subnet: 10.0.0.0/8}
              b: {subnet: 10.1.0.0/16}
              c: {subnet: 10.1.2.0/24}
              d: {subnet: 192.168.0.0/24}
              e: {subnet: 192.168.0.0/24}
            """
        ) == [
            "bad.yaml:4:15: bridges.b.subnet: subnet 10.1.0.0/16 overlaps 10.0.0.0/8 of bridge a",
            "bad.yaml:5:15: bridges.c.subnet: subnet 10.1.2.0/24 overlaps 10.1.0.0/16 of bridge b",
            "bad.yaml:7:15: bridges.e.subnet: subnet 192.168.0.0/24 overlaps 192.168.0.0/24 "
            "of bridge d",
        ]

    def test_adjacent_subnets_are_fine(self) -> None:
        s = load(
            """
            version: 1
            bridges:
              a: {subnet: 10.0.0.0/25}
              b: {subnet: 10.0.0.128/25}
            """
        )
        assert [str(b.address) for b in s.bridges] == ["10.0.0.1", "10.0.0.129"]

    def test_bridge_address_must_be_a_host_of_its_subnet(self) -> None:
        assert problems(
            """
            version: 1
            bridges:
              br0: {subnet: 10.0.0.0/24, address: 10.0.1.1}
              br1: {subnet: 10.1.0.0/24, address: 10.1.0.0}
              br2: {subnet: 10.2.0.0/24, address: 10.2.0.255}
            """
        ) == [
            "bad.yaml:3:39: bridges.br0.address: 10.0.1.1 is outside subnet 10.0.0.0/24",
            "bad.yaml:4:39: bridges.br1.address: 10.1.0.0 is the network address of 10.1.0.0/24",
            "bad.yaml:5:39: bridges.br2.address: 10.2.0.255 is the broadcast address "
            "of 10.2.0.0/24",
        ]

    @pytest.mark.parametrize(
        ("address", "message"),
        [
            ("10.0.1.5", "10.0.1.5 is outside bridge br0's subnet 10.0.0.0/24"),
            ("10.0.0.0", "10.0.0.0 is the network address of bridge br0's subnet 10.0.0.0/24"),
            (
                "10.0.0.255",
                "10.0.0.255 is the broadcast address of bridge br0's subnet 10.0.0.0/24",
            ),
            (
                "10.0.0.1",
                "10.0.0.1 is the address of bridge br0 itself (its containers' gateway)",
            ),
            (
                "10.0.0.5/16",
                "prefix /16 differs from bridge br0's subnet 10.0.0.0/24; "
                "write 10.0.0.5/24 or just 10.0.0.5",
            ),
        ],
    )
    def test_container_address(self, address: str, message: str) -> None:
        assert problems(ONE_BRIDGE + f"containers:\n  web:\n    address: {address}\n") == [
            f"bad.yaml:7:14: containers.web.address: {message}"
        ]

    def test_address_with_the_bridges_prefix_is_fine(self) -> None:
        s = load(ONE_BRIDGE + "containers:\n  web: {address: 10.0.0.5/24}\n")
        assert s.container("web").interfaces[0].address == IPv4Interface("10.0.0.5/24")

    def test_same_address_twice(self) -> None:
        assert problems(
            ONE_BRIDGE
            + text(
                """
                containers:
                  a: {address: 10.0.0.7}
                  b: {address: 10.0.0.7}
                  c: {network: none}
                  d: {network: none}
                links:
                  - endpoints: [c:eth1, d:eth1]
                    addresses: [10.0.0.7/32, 10.9.0.2/32]
                  - endpoints: [c:eth2, d:eth2]
                    addresses: [10.9.0.2/32, 10.9.0.3/32]
                """
            )
        ) == [
            "bad.yaml:7:16: containers.b.address: 10.0.0.7 is already used by containers.a",
            "bad.yaml:12:17: links[0].addresses[0]: 10.0.0.7 is already used by containers.a",
            "bad.yaml:14:17: links[1].addresses[0]: 10.9.0.2 is already used by links[0]",
        ]

    def test_a_subnet_with_no_room_left(self) -> None:
        assert problems(
            """
            version: 1
            bridges:
              br0: {subnet: 10.0.0.0/30}
            containers:
              a: {}
              b: {}
              c: {}
            """
        ) == [
            "bad.yaml:6:6: containers.b: no address left in bridge br0's subnet 10.0.0.0/30: "
            "all 2 usable addresses are taken",
            "bad.yaml:7:6: containers.c: no address left in bridge br0's subnet 10.0.0.0/30: "
            "all 2 usable addresses are taken",
        ]

    def test_link_addresses(self) -> None:
        assert problems(
            """
            version: 1
            containers:
              a: {network: none}
              b: {network: none}
            links:
              - endpoints: [a:eth1, b:eth1]
                addresses: [10.1.1.1/32]
              - endpoints: [a:eth2, b:eth2]
                addresses: [10.1.1.1, 10.1.1.2/32]
            """
        ) == [
            "bad.yaml:7:16: links[0].addresses: give one address per endpoint (2), got 1",
            "bad.yaml:9:17: links[1].addresses[0]: '10.1.1.1' is not an IPv4 address/prefix "
            "(like 10.1.1.1/32)",
        ]


class TestInterfaceNamesClash:
    def test_same_ifname_twice_in_one_namespace(self) -> None:
        assert problems(
            """
            version: 1
            bridges:
              br0: {subnet: 10.0.0.0/24}
              br1: {subnet: 10.1.0.0/24}
            containers:
              a:
                interfaces:
                  - {bridge: br0, ifname: eth0}
                  - {bridge: br1, ifname: eth0}
              b: {network: br0}
              c: {network: br1}
            links:
              - endpoints: [b:eth0, c:lo]
              - endpoints: [b:eth1, c:eth1]
              - endpoints: [b:eth1, c:eth2]
            """
        ) == [
            "bad.yaml:9:31: containers.a.interfaces[1].ifname: a already has an interface "
            "'eth0' (its leg on bridge br0)",
            "bad.yaml:13:17: links[0].endpoints[0]: b already has an interface 'eth0' "
            "(its leg on bridge br0)",
            "bad.yaml:13:25: links[0].endpoints[1]: c already has an interface 'lo' "
            "(the loopback device)",
            "bad.yaml:15:17: links[2].endpoints[0]: b already has an interface 'eth1' "
            "(an end of links[1])",
        ]

    def test_a_link_onto_the_same_interface(self) -> None:
        assert problems(
            "version: 1\ncontainers:\n  a: {network: none}\n"
            "links:\n  - endpoints: [a:eth1, a:eth1]\n"
        ) == ["bad.yaml:5:25: links[0].endpoints[1]: both endpoints are the same interface"]

    def test_same_host_ifname_twice(self) -> None:
        assert problems(
            """
            version: 1
            bridges:
              br0: {subnet: 10.0.0.0/24, uplinks: [em1]}
              br1: {subnet: 10.1.0.0/24, uplinks: [em1]}
            containers:
              a: {network: br0, host_ifname: br1}
              b: {network: br0, host_ifname: em1}
              c: {network: br0, host_ifname: lo}
              d: {network: br0, host_ifname: vd}
              e:
                interfaces:
                  - {bridge: br1, host_ifname: vd}
            """
        ) == [
            "bad.yaml:4:3: bridges.br1.uplinks: uplink em1 is already an uplink of bridge br0",
            "bad.yaml:6:34: containers.a.host_ifname: host interface name 'br1' "
            "is already bridge br1",
            "bad.yaml:7:34: containers.b.host_ifname: host interface name 'em1' "
            "is already an uplink of bridge br1",
            "bad.yaml:8:34: containers.c.host_ifname: host interface name 'lo' "
            "is already the loopback device",
            "bad.yaml:12:36: containers.e.interfaces[0].host_ifname: host interface name 'vd' "
            "is already the host end of d's eth0",
        ]

    def test_same_netns_twice(self) -> None:
        assert problems(
            """
            version: 1
            containers:
              a: {network: none, netns: shared}
              b: {network: none, netns: shared}
              c: {network: none, netns: a}
            links:
              - endpoints: [a:eth1, b:eth1]
            """
        ) == [
            "bad.yaml:4:22: containers.b.netns: netns 'shared' is already used by container a; "
            "to share it, use network: container:a",
        ]


class TestReferences:
    def test_network_naming_nothing(self) -> None:
        assert problems(
            ONE_BRIDGE
            + text(
                """
                containers:
                  a: {network: br00}
                  b: {network: hots}
                  c: {network: bridge}
                  d:
                    interfaces:
                      - bridge: br1
                """
            )
        ) == [
            "bad.yaml:6:16: containers.a.network: no bridge named 'br00'; did you mean 'br0'?",
            "bad.yaml:7:16: containers.b.network: no bridge named 'hots'; did you mean 'host'?",
            "bad.yaml:8:16: containers.c.network: no bridge named 'bridge'; "
            "say a bridge name, none, host or container:NAME",
            "bad.yaml:11:17: containers.d.interfaces[0].bridge: no bridge named 'br1'; "
            "did you mean 'br0'?",
        ]

    def test_an_invalid_bridge_is_reported_once_not_again_where_it_is_used(self) -> None:
        assert problems(
            """
            version: 1
            bridges:
              br0: {subnet: 10.0.0.0/24, mtu: big}
            containers:
              a: {network: br0}
              b: {}
            """
        ) == ["bad.yaml:3:35: bridges.br0.mtu: expected an integer, got string 'big'"]

    def test_missing_network_needs_exactly_one_bridge(self) -> None:
        assert problems("version: 1\ncontainers:\n  a: {}\n") == [
            "bad.yaml:3:6: containers.a.network: missing 'network': there are no bridges; "
            "say none, host, container:NAME or a bridge"
        ]
        assert problems(
            "version: 1\nbridges:\n  a: {subnet: 10.0.0.0/24}\n  b: {subnet: 10.1.0.0/24}\n"
            "containers:\n  c:\n    ifname: eth0\n"
        ) == [
            "bad.yaml:7:5: containers.c.network: missing 'network': there are 2 bridges; "
            "say none, host, container:NAME or a bridge"
        ]

    def test_container_naming_nothing(self) -> None:
        assert problems(
            """
            version: 1
            containers:
              web: {network: none}
              a: {network: "container:wbe"}
              b: {network: "container:"}
            """
        ) == [
            "bad.yaml:4:16: containers.a.network: no container named 'wbe'; did you mean 'web'?",
            "bad.yaml:5:16: containers.b.network: no container named ''",
        ]

    def test_container_cycles(self) -> None:
        assert problems(
            """
            version: 1
            containers:
              a: {network: "container:b"}
              b: {network: "container:a"}
              c: {network: "container:c"}
              d: {network: "container:a"}
            """
        ) == [
            "bad.yaml:3:16: containers.a.network: container: cycle a -> b -> a",
            "bad.yaml:4:16: containers.b.network: container: cycle b -> a -> b",
            "bad.yaml:5:16: containers.c.network: container: cycle c -> c",
            "bad.yaml:6:16: containers.d.network: container: cycle a -> b -> a",
        ]

    def test_link_endpoints_naming_nothing(self) -> None:
        assert problems(
            """
            version: 1
            containers:
              web: {network: none}
              tools: {network: host}
            links:
              - endpoints: [wbe:eth1, web:eth1]
              - endpoints: [ghost:eth1, tools:eth1]
            """
        ) == [
            "bad.yaml:6:17: links[0].endpoints[0]: no container named 'wbe'; did you mean 'web'?",
            "bad.yaml:7:17: links[1].endpoints[0]: no container named 'ghost'",
            "bad.yaml:7:29: links[1].endpoints[1]: container tools has network: host; "
            "a link needs a namespace of its own",
        ]

    def test_link_refs_naming_nothing(self) -> None:
        assert problems(
            ONE_BRIDGE
            + text(
                """
                containers:
                  web: {link: ["$(x)", web, "db:bad alias", dbb]}
                  db: {}
                """
            )
        ) == [
            f"bad.yaml:6:16: containers.web.link[0]: invalid container name '$(x)': {NAME_RULE}",
            "bad.yaml:6:24: containers.web.link[1]: a container cannot link to itself",
            "bad.yaml:6:29: containers.web.link[2]: alias 'bad alias' is not a valid host name",
            "bad.yaml:6:45: containers.web.link[3]: no container named 'dbb'; did you mean 'db'?",
        ]

    def test_short_form_keys_together_with_interfaces(self) -> None:
        assert problems(
            ONE_BRIDGE
            + text(
                """
                containers:
                  web:
                    address: 10.0.0.5
                    mac: 02:00:00:00:00:01
                    interfaces:
                      - bridge: br0
                  db:
                    network: br0
                    interfaces:
                      - bridge: br0
                """
            )
        ) == [
            "bad.yaml:7:5: containers.web.address: 'address' cannot be used together with "
            "'interfaces'; give it inside the interface instead",
            "bad.yaml:12:14: containers.db.network: give either 'network' or 'interfaces', "
            "not both",
        ]

    def test_keys_that_need_a_namespace_of_its_own(self) -> None:
        assert problems(
            """
            version: 1
            containers:
              a: {network: host, ports: ["80"]}
              b: {network: "container:c", hostname: x}
              c: {network: none, address: 10.0.0.5, ports: ["81"]}
            """
        ) == [
            "bad.yaml:3:22: containers.a.ports: 'ports' cannot be used with 'network: host': "
            "the container uses the host's network namespace",
            "bad.yaml:4:31: containers.b.hostname: 'hostname' cannot be used with "
            "'network: container:c': the container uses c's network namespace",
            "bad.yaml:5:22: containers.c.address: 'address' needs a bridge; "
            "network: none has only lo",
            "bad.yaml:5:41: containers.c.ports: 'ports' needs a bridge; network: none has only lo",
        ]


class TestPorts:
    @pytest.mark.parametrize(
        ("port", "message"),
        [
            (
                '"80:"',
                "'80:' is not a port mapping; use CONTAINER_PORT, HOST_PORT:CONTAINER_PORT, "
                "HOST_IP:HOST_PORT:CONTAINER_PORT or HOST_IP::CONTAINER_PORT, "
                "optionally with /tcp or /udp",
            ),
            (
                '"a:b"',
                "'a:b' is not a port mapping; use CONTAINER_PORT, HOST_PORT:CONTAINER_PORT, "
                "HOST_IP:HOST_PORT:CONTAINER_PORT or HOST_IP::CONTAINER_PORT, "
                "optionally with /tcp or /udp",
            ),
            ('"x:1:2"', "'x' in 'x:1:2' is not an IPv4 address"),
            ('"1.2.3.4.5::80"', "'1.2.3.4.5' in '1.2.3.4.5::80' is not an IPv4 address"),
            ('"70000"', "port 70000 is out of range 1..65535"),
            ('"0:80"', "port 0 is out of range 1..65535"),
            ('"80/sctp"', "unknown protocol 'sctp'; use tcp or udp"),
            ("true", "expected a port like '8080:80/tcp', got boolean true"),
            ("8.5", "expected a port like '8080:80/tcp', got float 8.5"),
        ],
    )
    def test_bad_port(self, port: str, message: str) -> None:
        assert problems(ONE_BRIDGE + f"containers:\n  web: {{ports: [{port}]}}\n") == [
            f"bad.yaml:6:17: containers.web.ports[0]: {message}"
        ]

    def test_errors_name_the_items_own_index(self) -> None:
        assert problems(
            ONE_BRIDGE
            + 'containers:\n  a: {ports: ["x", "8080:80"]}\n  b: {ports: ["y", "8080:81"]}\n'
        ) == [
            "bad.yaml:6:15: containers.a.ports[0]: 'x' is not a port mapping; use "
            "CONTAINER_PORT, HOST_PORT:CONTAINER_PORT, HOST_IP:HOST_PORT:CONTAINER_PORT "
            "or HOST_IP::CONTAINER_PORT, optionally with /tcp or /udp",
            "bad.yaml:7:15: containers.b.ports[0]: 'y' is not a port mapping; use "
            "CONTAINER_PORT, HOST_PORT:CONTAINER_PORT, HOST_IP:HOST_PORT:CONTAINER_PORT "
            "or HOST_IP::CONTAINER_PORT, optionally with /tcp or /udp",
            "bad.yaml:7:20: containers.b.ports[1]: host port 8080/tcp is already published "
            "by containers.a.ports[1]",
        ]

    def test_host_port_collisions(self) -> None:
        assert problems(
            ONE_BRIDGE
            + text(
                """
                containers:
                  a:
                    ports: ["8080:80", "127.0.0.1:8081:80", "53:53/udp", "8082:80"]
                  b:
                    ports:
                      - "8080:81"            # same port, same proto
                      - "8080:80/udp"        # same port, other proto: fine
                      - "8081:81"            # wildcard vs a's 127.0.0.1
                      - "127.0.0.2:8081:81"  # another specific address: fine
                      - "0.0.0.0:8082:81"    # 0.0.0.0 is the wildcard
                      - "53:54/udp"
                      - "9000:90"
                      - "9000:90"
                """
            )
        ) == [
            "bad.yaml:10:9: containers.b.ports[0]: host port 8080/tcp is already published "
            "by containers.a.ports[0]",
            "bad.yaml:12:9: containers.b.ports[2]: host port 8081/tcp is already published "
            "by containers.a.ports[1]",
            "bad.yaml:14:9: containers.b.ports[4]: host port 8082/tcp is already published "
            "by containers.a.ports[3]",
            "bad.yaml:15:9: containers.b.ports[5]: host port 53/udp is already published "
            "by containers.a.ports[2]",
            "bad.yaml:17:9: containers.b.ports[7]: the same port mapping is given twice",
        ]

    def test_every_docker_form(self) -> None:
        s = load(
            ONE_BRIDGE
            + text(
                """
                containers:
                  web:
                    ports:
                      - 80
                      - "8080:80"
                      - "127.0.0.1:8081:80"
                      - "127.0.0.1::80"
                      - "53/udp"
                      - "5353:53/udp"
                      - "0.0.0.0:8443:443/TCP"
                """
            )
        )
        got = [
            (p.proto, p.host_ip, p.host_port, p.container_port) for p in s.container("web").ports
        ]
        assert got == [
            ("tcp", None, 49153, 80),
            ("tcp", None, 8080, 80),
            ("tcp", IPv4Address("127.0.0.1"), 8081, 80),
            ("tcp", IPv4Address("127.0.0.1"), 49154, 80),
            ("udp", None, 49153, 53),
            ("udp", None, 5353, 53),
            ("tcp", None, 8443, 443),
        ]

    def test_unquoted_host_port_mapping_is_not_read_as_base_60(self) -> None:
        """YAML 1.1 resolves a plain 22:22 to the sexagesimal int 1342; netgen keeps the text."""
        s = load(ONE_BRIDGE + "containers:\n  web:\n    ports: [22:22, 8022:22]\n")
        got = [(p.host_port, p.container_port) for p in s.container("web").ports]
        assert got == [(22, 22), (8022, 22)]

    def test_host_ports_are_allocated_upward_skipping_explicit_ones(self) -> None:
        s = load(
            ONE_BRIDGE
            + text(
                """
                containers:
                  a: {ports: [80, 81]}
                  b: {ports: [82, "49154:1", "49156:2", 83, "49153:3/udp", 84/udp]}
                """
            )
        )
        got = {c.name: [(p.host_port, p.proto) for p in c.ports] for c in s.containers}
        assert got == {
            "a": [(49153, "tcp"), (49155, "tcp")],
            "b": [
                (49157, "tcp"),
                (49154, "tcp"),
                (49156, "tcp"),
                (49158, "tcp"),
                (49153, "udp"),
                (49154, "udp"),
            ],
        }

    def test_expose(self) -> None:
        assert problems(ONE_BRIDGE + 'containers:\n  web: {expose: [80, "81/udp", x, 0]}\n') == [
            "bad.yaml:6:32: containers.web.expose[2]: expected PORT or PORT/tcp|udp, "
            "got string 'x'",
            "bad.yaml:6:35: containers.web.expose[3]: port 0 is out of range 1..65535",
        ]
        s = load(ONE_BRIDGE + 'containers:\n  web: {expose: [80, "81/udp"]}\n')
        assert s.container("web").expose == (m.Exposed(80, "tcp"), m.Exposed(81, "udp"))


class TestAllAtOnce:
    SOURCE = """
        version: 1
        bridges:
          br0: {subnet: 10.0.0.0/24}
        containers:
          web: {network: br9}
          db: {address: 10.0.1.5}
        links:
          - endpoints: [web:eth1, ghost:eth1]
        """

    def test_independent_errors_are_all_reported_sorted_by_line(self) -> None:
        assert problems(self.SOURCE) == [
            "bad.yaml:5:18: containers.web.network: no bridge named 'br9'; did you mean 'br0'?",
            "bad.yaml:6:17: containers.db.address: 10.0.1.5 is outside bridge br0's subnet "
            "10.0.0.0/24",
            "bad.yaml:8:27: links[0].endpoints[1]: no container named 'ghost'",
        ]

    def test_the_report_shows_each_source_line_with_a_caret_and_a_count(self) -> None:
        with pytest.raises(SpecError) as info:
            spec.loads(text(self.SOURCE), "bad.yaml")
        assert str(info.value) == (
            "bad.yaml:5:18: containers.web.network: no bridge named 'br9'; did you mean 'br0'?\n"
            "      web: {network: br9}\n"
            "                     ^\n"
            "bad.yaml:6:17: containers.db.address: 10.0.1.5 is outside bridge br0's subnet "
            "10.0.0.0/24\n"
            "      db: {address: 10.0.1.5}\n"
            "                    ^\n"
            "bad.yaml:8:27: links[0].endpoints[1]: no container named 'ghost'\n"
            "      - endpoints: [web:eth1, ghost:eth1]\n"
            "                              ^\n"
            "3 errors in spec"
        )
        assert info.value.exit_code == 2


class TestLimits:
    def test_more_than_1023_ports_on_one_bridge(self) -> None:
        containers = "".join(f"  c{i}: {{}}\n" for i in range(1023))
        source = "version: 1\nbridges:\n  br0: {subnet: 10.0.0.0/16, uplinks: [em1]}\n"
        assert problems(source + "containers:\n" + containers) == [
            "bad.yaml:3:3: bridges.br0: 1024 interfaces on one bridge; Linux allows at most "
            "1023: split the containers over several bridges"
        ]
        fits = "".join(f"  c{i}: {{}}\n" for i in range(1022))
        assert len(spec.loads(source + "containers:\n" + fits, "ok.yaml").containers) == 1022


class TestIpam:
    def test_declaration_order(self) -> None:
        s = load(ONE_BRIDGE + "containers:\n  c: {}\n  a: {}\n  b: {}\n")
        assert addresses(s) == {"c": "10.0.0.2", "a": "10.0.0.3", "b": "10.0.0.4"}

    def test_skips_network_bridge_and_static_addresses(self) -> None:
        s = load(
            """
            version: 1
            bridges:
              br0: {subnet: 10.0.0.0/29, address: 10.0.0.2}
            containers:
              a: {}
              b: {address: 10.0.0.3}
              c: {}
              d: {}
              e: {}
            """
        )
        # .0 network, .2 bridge, .3 static (declared after a), .7 broadcast
        assert addresses(s) == {
            "a": "10.0.0.1",
            "b": "10.0.0.3",
            "c": "10.0.0.4",
            "d": "10.0.0.5",
            "e": "10.0.0.6",
        }

    def test_a_later_static_address_is_never_handed_out_earlier(self) -> None:
        s = load(ONE_BRIDGE + "containers:\n  auto: {}\n  fixed: {address: 10.0.0.2}\n")
        assert addresses(s) == {"auto": "10.0.0.3", "fixed": "10.0.0.2"}

    def test_the_last_address_is_usable_and_then_the_subnet_is_full(self) -> None:
        s = load("version: 1\nbridges:\n  br0: {subnet: 10.0.0.0/30}\ncontainers:\n  a: {}\n")
        assert addresses(s) == {"a": "10.0.0.2"}

    def test_each_bridge_has_its_own_pool_and_the_long_form_uses_them_in_order(self) -> None:
        s = load(
            """
            version: 1
            bridges:
              front: {subnet: 10.10.0.0/24}
              back: {subnet: 10.20.0.0/24}
            containers:
              app:
                interfaces:
                  - bridge: front
                  - bridge: back
                    address: 10.20.0.2
                  - bridge: back
              db: {network: back}
            """
        )
        legs = [(i.bridge, i.ifname, str(i.address)) for i in s.container("app").interfaces]
        assert legs == [
            ("front", "eth0", "10.10.0.2/24"),
            ("back", "eth1", "10.20.0.2/24"),
            ("back", "eth2", "10.20.0.3/24"),
        ]
        assert addresses(s)["db"] == "10.20.0.4"

    def test_same_spec_same_addresses(self) -> None:
        source = ONE_BRIDGE + "containers:\n" + "".join(f"  c{i}: {{}}\n" for i in range(50))
        assert load(source) == load(source)


class TestDefaults:
    def test_the_only_bridge_is_the_default_network(self) -> None:
        s = load(ONE_BRIDGE + "containers:\n  web: {}\n")
        web = s.container("web")
        assert (web.mode, web.netns, [i.bridge for i in web.interfaces]) == (
            "bridge",
            "web",
            ["br0"],
        )
        assert web.interfaces[0].ifname == "eth0"
        assert web.default_route

    def test_bridge_address_defaults_to_the_first_host(self) -> None:
        s = load(
            """
            version: 1
            bridges:
              a: {subnet: 192.168.5.0/24}
              b: {subnet: 10.9.0.0/31}
              c: {subnet: 10.8.0.0/16, address: 10.8.42.1}
            """
        )
        assert [str(b.address) for b in s.bridges] == ["192.168.5.1", "10.9.0.0", "10.8.42.1"]

    def test_modes(self) -> None:
        s = spec.load(Path(__file__).parent.parent / "specs" / "net-modes.yaml")
        got = {c.name: (c.mode, c.netns, c.share) for c in s.containers}
        assert got == {
            "web": ("bridge", "web", None),
            "isolated": ("none", "isolated", None),
            "tools": ("host", None, None),
            "sidecar": ("container", "web", "web"),
            "logger": ("container", "web", "web"),
            "worker": ("bridge", "worker", None),
        }

    def test_a_container_chain_ending_at_host_is_host(self) -> None:
        s = load("version: 1\ncontainers:\n  h: {network: host}\n  c: {network: 'container:h'}\n")
        assert (s.container("c").mode, s.container("c").netns) == ("host", None)


class TestHostIfname:
    def test_explicit_one_is_kept(self) -> None:
        s = load(ONE_BRIDGE + "containers:\n  web: {host_ifname: A}\n")
        assert s.container("web").interfaces[0].host_ifname == "A"

    def test_derived_names_are_short_valid_unique_and_deterministic(self) -> None:
        names = [f"container-with-a-long-name-{i}" for i in range(300)]
        source = (
            "version: 1\nbridges:\n  br0: {subnet: 10.0.0.0/22}\n  br1: {subnet: 10.1.0.0/22}\n"
            "containers:\n"
            + "".join(
                f"  {n}:\n    interfaces: [{{bridge: br0}}, {{bridge: br1}}]\n" for n in names
            )
        )
        first = load(source)
        derived = [i.host_ifname for c in first.containers for i in c.interfaces]
        assert len(derived) == 600
        assert len(set(derived)) == 600
        assert all(spec.IFNAME_RE.fullmatch(d) and d not in (".", "..") for d in derived)
        assert all(len(d) <= 15 for d in derived)
        assert [i.host_ifname for c in load(source).containers for i in c.interfaces] == derived

    def test_derived_names_avoid_explicit_ones_and_bridges(self) -> None:
        plain = load(ONE_BRIDGE + "containers:\n  web: {}\n")
        taken = plain.container("web").interfaces[0].host_ifname
        s = load(
            f"version: 1\nbridges:\n  br0: {{subnet: 10.0.0.0/24}}\n"
            f"containers:\n  web: {{}}\n  other: {{host_ifname: {taken}}}\n"
        )
        assert s.container("other").interfaces[0].host_ifname == taken
        derived = s.container("web").interfaces[0].host_ifname
        assert derived != taken and re.fullmatch(r"v[0-9a-f]{6}-web", derived)

    def test_derived_names_depend_on_the_spec_name(self) -> None:
        a = load(
            "version: 1\nname: a\n"
            + ONE_BRIDGE.replace("version: 1\n", "")
            + "containers:\n  web: {}\n"
        )
        b = load(
            "version: 1\nname: b\n"
            + ONE_BRIDGE.replace("version: 1\n", "")
            + "containers:\n  web: {}\n"
        )
        assert (
            a.container("web").interfaces[0].host_ifname
            != b.container("web").interfaces[0].host_ifname
        )
