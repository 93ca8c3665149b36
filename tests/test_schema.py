"""`netgen schema`: the JSON Schema and the validator agree, because both read fields.py.

Every bad input here is rejected by both `spec.loads` and the schema, every good one
accepted by both; each is one change to a spec both accept, and both must point
their errors at the changed place. Rules that span the spec (overlaps, references)
are the validator's alone and are not tested against the schema.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator, Draft202012Validator
from syrupy.assertion import SnapshotAssertion

from netgen import cli, fields, schema, spec
from netgen.errors import SpecError

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILES = sorted((ROOT / "specs").glob("*.yaml"))
SCHEMA = schema.schema()
VALIDATOR = Draft202012Validator(SCHEMA)
SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=300)

Path_ = tuple[str | int, ...]
DELETE = object()

# A spec both accept that uses every table and most keys: the base of every case below.
GOOD: dict[str, Any] = {
    "version": 1,
    "name": "good",
    "hosts": {
        "h1": {
            "address": "192.0.2.11",
            "dev": "eth0",
            "mtu": 1500,
            "vars": {"ansible_user": "root", "ports": [22, 2222], "opts": {"a": None}},
        }
    },
    "bridges": {
        "br0": {
            "subnet": "10.0.0.0/24",
            "address": "10.0.0.1",
            "mtu": 1500,
            "icc": True,
            "uplinks": ["eth9"],
            "vni": 100,
            "vxlan_port": 4789,
        },
        "br1": {"subnet": "10.1.0.0/24"},
    },
    "containers": {
        "web": {
            "network": "br0",
            "host": "h1",
            "address": "10.0.0.10",
            "ifname": "eth0",
            "host_ifname": "veth-web",
            "mac": "02:42:ac:11:00:02",
            "ports": ["8080:80", "127.0.0.1::53/udp", 443],
            "expose": [80, "53/udp"],
            "hostname": "web.example.test",
            "dns": {
                "nameservers": ["10.0.0.1", "2001:db8::53"],
                "search": ["example.test"],
                "options": ["ndots:2"],
            },
            "hosts": {"db.example.test": "10.0.0.11"},
            "routes": [{"to": "10.9.0.0/16", "via": "10.0.0.1"}],
        },
        "db": {
            "interfaces": [
                {"bridge": "br0", "address": "10.0.0.11/24"},
                {"bridge": "br1", "ifname": "eth1", "host_ifname": "db-1"},
            ],
            "link": ["web:www"],
            "default_route": False,
            "routes": [{"to": "default", "via": "10.1.0.1", "dev": "eth1"}],
        },
        "side": {"network": "container:web"},
        "lonely": {"network": "none", "netns": "ns-lonely"},
        "hosty": {"network": "host"},
        "adopted": {"network": "br1", "pid": 1},
        "a": {"network": "none"},
        "b": {"network": "none"},
    },
    "links": [
        {
            "endpoints": ["a:p2p0", "b:p2p0"],
            "addresses": ["10.2.0.1/32", "10.2.0.2/32"],
            "vni": 200,
        }
    ],
    "outside": "198.51.100.7",
    "checks": [
        {"from": "web", "to": "db", "port": "5432/tcp", "expect": "open"},
        {"from": "b", "to": "10.2.0.1"},
        {"from": "web", "to": "outside", "port": 53},
    ],
}

# Where each table of fields.py sits in GOOD.
LOCATIONS: dict[str, Path_] = {
    "spec": (),
    "bridge": ("bridges", "br0"),
    "container": ("containers", "web"),
    "interface": ("containers", "db", "interfaces", 1),
    "route": ("containers", "web", "routes", 0),
    "link": ("links", 0),
    "dns": ("containers", "web", "dns"),
    "check": ("checks", 0),
    "host": ("hosts", "h1"),
}

WEB: Path_ = ("containers", "web")
DB_IF: Path_ = ("containers", "db", "interfaces", 1)
ROUTE: Path_ = ("containers", "web", "routes", 0)
LINK: Path_ = ("links", 0)
CHECK: Path_ = ("checks", 0)

BAD: list[tuple[str, Path_, Any]] = [
    # unknown keys, in every table
    ("unknown-top-key", ("bridgs",), {}),
    ("unknown-bridge-key", ("bridges", "br0", "adress"), "10.0.0.1"),
    ("unknown-container-key", (*WEB, "ipaddress"), "10.0.0.9"),
    ("unknown-interface-key", (*DB_IF, "brige"), "br1"),
    ("unknown-route-key", (*ROUTE, "gw"), "10.0.0.1"),
    ("unknown-link-key", (*LINK, "mtu"), 1400),
    ("unknown-dns-key", (*WEB, "dns", "domain"), "example.test"),
    ("unknown-check-key", (*CHECK, "proto"), "tcp"),
    # wrong types
    ("bridges-a-list", ("bridges",), ["br0"]),
    ("container-null", ("containers", "lonely"), None),
    ("mtu-a-string", ("bridges", "br0", "mtu"), "big"),
    ("icc-a-string", ("bridges", "br0", "icc"), "sometimes"),
    ("uplinks-a-string", ("bridges", "br0", "uplinks"), "eth9"),
    ("ports-a-mapping", (*WEB, "ports"), {"80": 80}),
    ("hostname-a-list", (*WEB, "hostname"), ["web"]),
    ("default-route-a-string", ("containers", "db", "default_route"), "no"),
    ("pid-a-string", ("containers", "adopted", "pid"), "1"),
    ("endpoints-a-string", (*LINK, "endpoints"), "a:p2p0 b:p2p0"),
    # names
    ("spec-name-with-a-space", ("name",), "my spec"),
    ("container-name-leading-dash", ("containers", "-web"), {"network": "none"}),
    ("container-name-too-long", ("containers", "c" * 65), {"network": "none"}),
    ("netns-with-a-slash", ("containers", "lonely", "netns"), "ns/x"),
    # interface names
    ("ifname-too-long", (*WEB, "ifname"), "e" * 16),
    ("host-ifname-dot", (*WEB, "host_ifname"), "."),
    ("bridge-name-dotdot", ("bridges", ".."), {"subnet": "10.5.0.0/24"}),
    ("bridge-name-too-long", ("bridges", "b" * 16), {"subnet": "10.5.0.0/24"}),
    ("uplink-with-a-space", ("bridges", "br0", "uplinks"), ["em 1"]),
    ("route-dev-with-a-colon", (*ROUTE, "dev"), "eth0:1"),
    # numbers
    ("mtu-67", ("bridges", "br0", "mtu"), 67),
    ("mtu-65536", ("bridges", "br0", "mtu"), 65536),
    ("version-2", ("version",), 2),
    ("version-a-string", ("version",), "1"),
    ("version-true", ("version",), True),
    ("version-missing", ("version",), DELETE),
    ("pid-0", ("containers", "adopted", "pid"), 0),
    # addresses
    ("subnet-missing", ("bridges", "br1", "subnet"), DELETE),
    ("subnet-without-prefix", ("bridges", "br1", "subnet"), "10.1.0.0"),
    ("subnet-prefix-33", ("bridges", "br1", "subnet"), "10.1.0.0/33"),
    ("address-octet-256", ("bridges", "br0", "address"), "10.0.0.256"),
    ("address-leading-zero", (*WEB, "address"), "10.0.0.010"),
    ("address-ipv6", (*WEB, "address"), "fd00::10"),
    ("nameserver-a-name", (*WEB, "dns", "nameservers"), ["dns.example"]),
    ("hosts-value-not-an-ip", (*WEB, "hosts", "db.example.test"), "db"),
    ("link-address-without-prefix", (*LINK, "addresses"), ["10.2.0.1", "10.2.0.2/32"]),
    # MACs
    ("mac-five-octets", (*WEB, "mac"), "02:42:ac:11:00"),
    ("mac-with-dashes", (*WEB, "mac"), "02-42-ac-11-00-02"),
    ("mac-multicast", (*WEB, "mac"), "01:00:5e:00:00:01"),
    # ports
    ("port-a-word", (*WEB, "ports"), ["80:http"]),
    ("port-sctp", (*WEB, "ports"), ["8080:80/sctp"]),
    ("port-70000", (*WEB, "ports"), ["70000"]),
    ("port-0", (*WEB, "ports"), [0]),
    ("host-port-0", (*WEB, "ports"), ["0:80"]),
    ("port-bad-host-ip", (*WEB, "ports"), ["10.0.0:8080:80"]),
    ("port-empty-ip", (*WEB, "ports"), ["::80"]),
    ("expose-sctp", (*WEB, "expose"), ["80/sctp"]),
    ("expose-65536", (*WEB, "expose"), [65536]),
    # other patterns
    ("network-container-without-name", ("containers", "side", "network"), "container:"),
    ("network-with-a-space", ("containers", "side", "network"), "my bridge"),
    ("link-alias-with-a-space", ("containers", "db", "link"), ["web:my web"]),
    ("hosts-key-not-a-hostname", (*WEB, "hosts", "db host"), "10.0.0.11"),
    ("dns-option-with-a-space", (*WEB, "dns", "options"), ["ndots 2"]),
    ("search-not-a-hostname", (*WEB, "dns", "search"), ["-example"]),
    ("hostname-with-a-space", (*WEB, "hostname"), "web server"),
    ("endpoint-without-colon", (*LINK, "endpoints"), ["a-p2p0", "b:p2p0"]),
    ("endpoint-empty-ifname", (*LINK, "endpoints"), ["a:", "b:p2p0"]),
    # lengths, required keys, and the rules inside one object
    ("three-endpoints", (*LINK, "endpoints"), ["a:p2p0", "b:p2p0", "a:p2p1"]),
    ("one-link-address", (*LINK, "addresses"), ["10.2.0.1/32"]),
    ("endpoints-missing", (*LINK, "endpoints"), DELETE),
    ("interface-bridge-missing", (*DB_IF, "bridge"), DELETE),
    ("route-to-missing", (*ROUTE, "to"), DELETE),
    ("route-without-via-or-dev", (*ROUTE, "via"), DELETE),
    ("interfaces-and-address", ("containers", "db", "address"), "10.0.0.12"),
    ("interfaces-and-mac", ("containers", "db", "mac"), "02:00:00:00:00:09"),
    # checks
    ("check-expect-maybe", (*CHECK, "expect"), "maybe"),
    ("check-port-sctp", (*CHECK, "port"), "80/sctp"),
    ("check-port-0", (*CHECK, "port"), 0),
    ("check-from-with-a-space", (*CHECK, "from"), "my web"),
    ("check-to-with-a-space", (*CHECK, "to"), "my db"),
    ("check-to-missing", (*CHECK, "to"), DELETE),
    ("outside-not-an-ip", ("outside",), "somewhere"),
    # hosts
    ("host-address-missing", ("hosts", "h1", "address"), DELETE),
    ("host-address-a-name", ("hosts", "h1", "address"), "h1.example"),
    ("host-name-with-a-space", ("hosts", "h 2"), {"address": "192.0.2.12"}),
    ("host-dev-too-long", ("hosts", "h1", "dev"), "e" * 16),
    ("host-mtu-67", ("hosts", "h1", "mtu"), 67),
    ("host-vars-a-list", ("hosts", "h1", "vars"), ["ansible_user"]),
    ("host-var-name-with-a-dash", ("hosts", "h1", "vars", "ansible-user"), "root"),
    ("container-host-with-a-space", (*WEB, "host"), "h 1"),
    ("vni-0", ("bridges", "br0", "vni"), 0),
    ("vni-too-big", ("bridges", "br0", "vni"), 16777216),
    ("vxlan-port-0", ("bridges", "br0", "vxlan_port"), 0),
    ("link-vni-a-string", (*LINK, "vni"), "200"),
]

VALID: list[tuple[str, Path_, Any]] = [
    ("port-an-integer", (*WEB, "ports"), [80]),
    ("port-upper-case-proto", (*WEB, "ports"), ["8081:81/TCP"]),
    ("port-any-address", (*WEB, "ports"), ["0.0.0.0:8082:82"]),
    ("port-leading-zeros", (*WEB, "ports"), ["08083:0083"]),
    ("port-65535", (*WEB, "ports"), ["65535"]),
    ("expose-upper-case-udp", (*WEB, "expose"), ["53/UDP", 65535]),
    ("address-with-prefix", (*WEB, "address"), "10.0.0.10/24"),
    ("mac-upper-case", (*WEB, "mac"), "02:42:AC:11:00:02"),
    ("bridge-address-default", ("bridges", "br0", "address"), DELETE),
    ("subnet-as-netmask", ("bridges", "br1", "subnet"), "10.1.0.0/255.255.255.0"),
    ("subnet-prefix-leading-zero", ("bridges", "br1", "subnet"), "10.1.0.0/024"),
    ("bridge-flags", ("bridges", "br1"), {"subnet": "10.1.0.0/24", "external": True}),
    ("masquerade-no-icc", ("bridges", "br0", "icc"), False),
    ("mcast-snooping", ("bridges", "br1", "mcast_snooping"), False),
    ("container-name-with-dots", ("containers", "web.1"), {"network": "none"}),
    ("container-name-64", ("containers", "c" * 64), {"network": "none"}),
    ("ifname-vlan-style", (*WEB, "ifname"), "eth0.100"),
    ("ifname-15", (*WEB, "ifname"), "e" * 15),
    ("bridge-name-odd", ("bridges", "-._"), {"subnet": "10.5.0.0/24"}),
    ("hostname-trailing-dot", (*WEB, "hostname"), "web.example.test."),
    ("link-ref-empty-alias", ("containers", "db", "link"), ["web:"]),
    ("nameserver-with-zone", (*WEB, "dns", "nameservers"), ["fe80::1%eth0"]),
    ("link-without-addresses", (*LINK, "addresses"), DELETE),
    ("route-dev-only", ROUTE, {"to": "10.9.0.0/16", "dev": "eth0"}),
    ("route-via-and-dev", (*ROUTE, "dev"), "eth0"),
    ("empty-lists", ("links",), []),
    ("mtu-68", ("bridges", "br0", "mtu"), 68),
    ("mtu-65535", ("bridges", "br0", "mtu"), 65535),
    ("check-to-an-address", (*CHECK, "to"), "10.0.0.99"),
    ("check-to-ipv6", (*CHECK, "to"), "2001:db8::1"),
    ("check-port-udp-upper-case", (*CHECK, "port"), "53/UDP"),
    ("check-blocked", (*CHECK, "expect"), "blocked"),
    ("check-ping", (*CHECK, "port"), DELETE),
    ("outside-ipv6", ("outside",), "2001:db8::7"),
    ("host-ipv6", ("hosts", "h1", "address"), "2001:db8::11"),
    ("host-vars-empty", ("hosts", "h1", "vars"), {}),
    ("vni-max", ("bridges", "br0", "vni"), 16777215),
]


def changed(path: Path_, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    data = copy.deepcopy(GOOD if base is None else base)
    *parents, last = path
    target: Any = data
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return data


def dotted(path: Path_) -> str:
    """A key path as the validator writes it: containers.web.routes[0].via."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


def validator_errors(data: dict[str, Any]) -> list[str]:
    """The key paths of the validator's diagnostics; [] if it accepts."""
    text = yaml.safe_dump(data, sort_keys=False)
    try:
        spec.loads(text, "case.yaml")
    except SpecError as exc:
        return [d.path for d in exc.diagnostics]
    return []


def schema_errors(data: Any) -> list[Path_]:
    return [tuple(e.absolute_path) for e in VALIDATOR.iter_errors(data)]


def tables() -> list[fields.Table]:
    """Every table reachable from the top, each once, in a fixed order."""
    found: dict[str, fields.Table] = {}

    def walk(t: fields.Type) -> None:
        if isinstance(t, fields.Table):
            if t.name not in found:
                found[t.name] = t
                for k in t.keys:
                    walk(k.type)
        elif isinstance(t, fields.Named):
            walk(t.type)
        elif isinstance(t, fields.Seq):
            walk(t.item)
        elif isinstance(t, fields.Map):
            walk(t.value)
        elif isinstance(t, fields.Either):
            for option in t.options:
                walk(option)

    walk(fields.TOP)
    return list(found.values())


def _inner(t: fields.Type) -> fields.Type:
    return _inner(t.type) if isinstance(t, fields.Named) else t


def assert_both_reject(data: dict[str, Any], where: Path_) -> None:
    """Both reject, and both blame the changed key's object (among follow-on errors)."""
    parent = where[:-1]
    theirs = validator_errors(data)
    ours = schema_errors(data)
    assert theirs, "spec.loads accepted it"
    assert ours, "the schema accepted it"
    assert any(p.startswith(dotted(parent)) for p in theirs), theirs
    assert all(p[: len(parent)] == parent for p in ours), ours


def test_the_base_spec_is_valid_for_both() -> None:
    assert validator_errors(GOOD) == []
    assert schema_errors(GOOD) == []


class TestSchemaItself:
    def test_is_a_valid_2020_12_schema(self) -> None:
        Draft202012Validator.check_schema(SCHEMA)
        assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"

    def test_means_the_same_to_draft_7_tools(self) -> None:
        """Editors mostly speak draft 7: the same schema must give them the same answers."""
        draft7 = {**SCHEMA, "$schema": "http://json-schema.org/draft-07/schema#"}
        Draft7Validator.check_schema(draft7)
        v7 = Draft7Validator(draft7)
        for name, path, value in BAD + VALID:
            data = changed(path, value)
            assert v7.is_valid(data) == VALIDATOR.is_valid(data), name

    def test_says_what_it_cannot_check(self) -> None:
        assert "overlap" in SCHEMA["description"]
        assert "netgen validate" in SCHEMA["description"]

    def test_snapshot_of_the_command(
        self,
        snapshot: SnapshotAssertion,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setattr("sys.argv", ["netgen", "schema"])
        with pytest.raises(SystemExit) as info:
            cli.main()
        out, err = capsys.readouterr()
        assert (info.value.code, err) == (0, "")
        assert out == schema.dumps()
        assert json.loads(out) == SCHEMA
        assert out == snapshot

    def test_same_text_every_time(self) -> None:
        assert schema.dumps() == schema.dumps()


class TestOneSourceOfTruth:
    """The validator's key lists are the tables' own, and the schema lists the same keys."""

    @pytest.mark.parametrize(
        "name", ["TOP", "BRIDGE", "CONTAINER", "INTERFACE", "ROUTE", "LINK", "DNS"]
    )
    def test_validator_keys_are_the_tables(self, name: str) -> None:
        table: fields.Table = getattr(fields, name)
        assert getattr(spec, f"{name}_KEYS") is getattr(fields, f"{name}_KEYS")
        assert getattr(fields, f"{name}_KEYS") == table.names

    def test_validator_patterns_are_the_tables(self) -> None:
        for name in ("NAME", "IFNAME", "HOSTNAME", "DNS_OPTION", "MAC", "PORT", "EXPOSE"):
            assert getattr(spec, f"{name}_RE") is getattr(fields, f"{name}_RE")

    def test_schema_lists_each_tables_keys(self) -> None:
        for table in tables():
            body = SCHEMA if table is fields.TOP else SCHEMA["$defs"][table.name]
            assert tuple(body["properties"]) == table.names
            assert body["additionalProperties"] is False
            assert body.get("required", []) == [k.name for k in table.keys if k.required]

    def test_every_table_has_a_place_in_the_base_spec(self) -> None:
        assert sorted(t.name for t in tables()) == sorted(LOCATIONS)

    @pytest.mark.parametrize(
        ("table", "key"),
        [pytest.param(t.name, k.name, id=f"{t.name}.{k.name}") for t in tables() for k in t.keys],
    )
    def test_a_wrong_type_is_rejected_by_both(self, table: str, key: str) -> None:
        """A key added to a table but not read by spec.py would be accepted here: caught."""
        t = next(t for t in tables() if t.name == table)
        k = next(k for k in t.keys if k.name == key)
        wrong = ["x"] if isinstance(_inner(k.type), (fields.Map, fields.Table)) else {"x": 1}
        where = (*LOCATIONS[table], key)
        assert_both_reject(changed(where, wrong), where)

    @pytest.mark.parametrize(
        ("table", "key"),
        [
            pytest.param(t.name, k.name, id=f"{t.name}.{k.name}")
            for t in tables()
            for k in t.keys
            if k.required
        ],
    )
    def test_a_missing_required_key_is_rejected_by_both(self, table: str, key: str) -> None:
        where = (*LOCATIONS[table], key)
        assert_both_reject(changed(where, DELETE), where)


class TestBadInput:
    @pytest.mark.parametrize(("path", "value"), [pytest.param(p, v, id=n) for n, p, v in BAD])
    def test_both_reject(self, path: Path_, value: Any) -> None:
        assert_both_reject(changed(path, value), path)


class TestValidInput:
    @pytest.mark.parametrize(("path", "value"), [pytest.param(p, v, id=n) for n, p, v in VALID])
    def test_both_accept(self, path: Path_, value: Any) -> None:
        data = changed(path, value)
        assert (validator_errors(data), schema_errors(data)) == ([], [])

    @pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
    def test_every_bundled_spec(self, path: Path) -> None:
        assert schema_errors(yaml.safe_load(path.read_text())) == []

    def test_the_smallest_spec(self) -> None:
        assert (validator_errors({"version": 1}), schema_errors({"version": 1})) == ([], [])


# -- patterns: the same answers as the validator, and valid ECMAScript -------------


def one_port(port: Any) -> dict[str, Any]:
    return changed((*WEB, "ports"), [port])


@SETTINGS
@given(st.text(alphabet="0123456789:./tcpudTCP", max_size=24))
def test_port_strings_agree_with_the_validator(text: str) -> None:
    data = one_port(text)
    assert (validator_errors(data) == []) == (schema_errors(data) == []), text


@SETTINGS
@given(st.integers(min_value=-5, max_value=70000))
def test_port_numbers_agree_with_the_validator(number: int) -> None:
    data = one_port(number)
    assert (validator_errors(data) == []) == (schema_errors(data) == []), number


@SETTINGS
@given(st.text(alphabet="0123456789abcdefABCDEF:-", max_size=20))
def test_macs_agree_with_the_validator(text: str) -> None:
    data = changed((*WEB, "mac"), text)
    assert (validator_errors(data) == []) == (schema_errors(data) == []), text


@SETTINGS
@given(
    st.one_of(
        st.text(alphabet="0123456789.", max_size=16),
        st.tuples(*[st.integers(0, 300)] * 4).map(lambda t: ".".join(map(str, t))),
    )
)
def test_ipv4_addresses_agree_with_the_validator(text: str) -> None:
    data = changed(ROUTE, {"to": "default", "via": text})
    data["containers"]["web"]["default_route"] = False
    assert (validator_errors(data) == []) == (schema_errors(data) == []), text


def patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from patterns(value)
    elif isinstance(node, list):
        for item in node:
            yield from patterns(item)


def test_patterns_use_no_python_only_syntax() -> None:
    for p in patterns(SCHEMA):
        assert p.startswith("^(?:") and p.endswith(")$"), p
        assert not re.search(r"\(\?P|\\[dDwWsSAZ]|\(\?[aiLmsux]", p), p


def test_ecma_translation() -> None:
    assert schema.ecma(r"(?P<a>\d+):x") == "^(?:(?:[0-9]+):x)$"


def test_patterns_mean_the_same_in_ecmascript() -> None:
    """node's RegExp (with and without the u flag) answers like Python's re on samples."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    samples = sorted(
        {
            *(str(v) for v in _strings(GOOD)),
            *(str(v) for _, _, value in BAD + VALID for v in _strings(value)),
            "",
            ".",
            "..",
            "eth0\n",
            "a" * 70,
            "٨٠",
        }
    )
    pats = sorted(set(patterns(SCHEMA)))
    expected = [[re.search(p, s) is not None for s in samples] for p in pats]
    script = textwrap.dedent(
        """
        const fs = require("fs");
        const {pats, samples} = JSON.parse(fs.readFileSync(0, "utf8"));
        const out = pats.map(p => [new RegExp(p, "u"), new RegExp(p)]).map(([ru, r]) =>
          samples.map(s => { const a = ru.test(s), b = r.test(s); return a === b ? a : null; }));
        console.log(JSON.stringify(out));
        """
    )
    done = subprocess.run(
        [node, "-e", script],
        input=json.dumps({"pats": pats, "samples": samples}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    # Python's $ also matches before a final newline; ECMAScript's does not
    for p, want, have in zip(pats, expected, got, strict=True):
        for s, w, h in zip(samples, want, have, strict=True):
            if s.endswith("\n"):
                continue
            assert w == h, (p, s)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


class TestKnownDifferences:
    """Where the two answer differently, on purpose or awaiting a fix in spec.py."""

    def test_a_yaml_number_as_a_name(self) -> None:
        """netgen reads `netns: 123` as the name "123"; the schema asks for a string.

        On purpose: an editor's nudge to quote it costs nothing, and a schema that also
        took numbers would need a second rule for every name.
        """
        data = changed(("containers", "lonely", "netns"), 123)
        assert validator_errors(data) == []
        assert schema_errors(data) == [("containers", "lonely", "netns")]

    def test_a_whole_float(self) -> None:
        """JSON Schema counts 1.0 as an integer (JSON does not tell them apart); netgen not."""
        data = changed(("bridges", "br0", "mtu"), 1500.0)
        assert validator_errors(data) == ["bridges.br0.mtu"]
        assert schema_errors(data) == []

    def test_a_dot_endpoint_ifname(self) -> None:
        where = (*LINK, "endpoints")
        assert_both_reject(changed(where, ["a:.", "b:p2p0"]), (*where, 0))
