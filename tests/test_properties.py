"""Property tests: any valid spec lowers, renders and lints; no name can inject shell.

Specs are generated as Python data and dumped to YAML, so the tests exercise the
same path as a user's file. Derandomized: CI sees the same examples every run.
"""

from __future__ import annotations

import re
import shlex
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scriptcheck import bash_n, shellcheck, write_scripts

from netgen import dialects, lower, ops, render, spec
from netgen import model as m
from netgen.errors import SpecError
from netgen.ipam import usable

SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

FIRST = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
REST = FIRST + "_.-"


def name_strategy(max_size: int) -> st.SearchStrategy[str]:
    """Names the contract accepts for specs, containers and (short enough) interfaces."""
    return st.builds(
        lambda a, b: a + b,
        st.sampled_from(FIRST),
        st.text(alphabet=REST, max_size=max_size - 1),
    )


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def build(text: str) -> tuple[m.Spec, dict[str, str]]:
    """Load, lower and render a spec in every dialect, setup and teardown."""
    s = spec.loads(text, "gen.yaml")
    built = lower.lower(s)
    scripts = {}
    for dialect in dialects.DIALECTS:
        scripts[f"{dialect}-setup"] = render.render(s, built, dialect=dialect)
        scripts[f"{dialect}-teardown"] = render.render(
            s, ops.teardown(built), dialect=dialect, teardown=True
        )
    return s, scripts


# -- valid specs ------------------------------------------------------------------


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A spec that must validate: every choice is kept inside the contract."""
    names = draw(st.lists(name_strategy(12), min_size=0, max_size=6, unique=True))
    # "br..." never meets an explicit host_ifname ("h...") or a derived one ("v...")
    bridge_names = draw(st.lists(name_strategy(13).map("br".__add__), max_size=3, unique=True))
    data: dict[str, Any] = {"version": 1, "name": draw(name_strategy(20))}
    bridges: dict[str, dict[str, Any]] = {}
    subnets: dict[str, IPv4Network] = {}
    free: dict[str, list[int]] = {}  # host offsets a static address may still take
    octets = draw(st.permutations(range(256)))
    for k, bname in enumerate(bridge_names):
        subnet = IPv4Network(f"10.{octets[k]}.0.0/{draw(st.integers(20, 26))}")
        first, last = usable(subnet)
        offsets = list(range(first, last + 1))
        body: dict[str, Any] = {"subnet": str(subnet)}
        if draw(st.booleans()):
            gateway = draw(st.sampled_from(offsets))
            body["address"] = str(IPv4Address(gateway))
            offsets.remove(gateway)
        else:
            offsets.remove(first)
        if draw(st.booleans()):
            body["mtu"] = draw(st.integers(1280, 9000))
        bridges[bname] = body
        subnets[bname] = subnet
        free[bname] = offsets[len(offsets) // 2 :]  # statics high, automatic ones low
    if bridges:
        data["bridges"] = bridges

    host_names = iter(f"h{i}-{draw(name_strategy(4))}"[:15] for i in range(100))
    containers: dict[str, dict[str, Any]] = {}
    own_netns: list[str] = []
    taken_netns: set[str] = set()
    ports = iter(range(20000, 30000))
    for i, cname in enumerate(names):
        modes = ["none", "host"] + (["bridge", "interfaces"] if bridges else [])
        if containers:
            modes.append("container")
        mode = draw(st.sampled_from(modes))
        c: dict[str, Any] = {}
        legs: list[str] = []
        if mode in ("none", "host"):
            c["network"] = mode
        elif mode == "container":
            c["network"] = "container:" + draw(st.sampled_from(list(containers)))
        else:
            chosen = (
                [draw(st.sampled_from(bridge_names))]
                if mode == "bridge"
                else draw(st.lists(st.sampled_from(bridge_names), min_size=1, max_size=3))
            )
            ifaces = []
            for bname in chosen:
                leg: dict[str, Any] = {"bridge": bname}
                if draw(st.booleans()) and free[bname]:
                    offset = draw(st.sampled_from(free[bname]))
                    free[bname].remove(offset)
                    prefix = f"/{subnets[bname].prefixlen}" if draw(st.booleans()) else ""
                    leg["address"] = f"{IPv4Address(offset)}{prefix}"
                if draw(st.booleans()):
                    leg["host_ifname"] = next(host_names)
                if draw(st.booleans()):
                    leg["mac"] = "02:" + ":".join(
                        f"{draw(st.integers(0, 255)):02x}" for _ in "abcde"
                    )
                ifaces.append(leg)
            if mode == "bridge":
                del ifaces[0]["bridge"]
                c.update(ifaces[0])
                if len(bridges) > 1 or draw(st.booleans()):
                    c["network"] = chosen[0]
                legs = ["eth0"]
            else:
                c["interfaces"] = ifaces
                legs = [f"eth{k}" for k in range(len(ifaces))]
            gateway = bridges[chosen[0]].get("address") or str(subnets[chosen[0]][1])
            if draw(st.booleans()):
                c["default_route"] = False
                c["routes"] = [{"to": "default", "via": gateway}]
            else:
                c["routes"] = [{"to": f"172.16.{i}.0/24", "via": gateway, "dev": legs[0]}]
            if draw(st.booleans()):
                c["ports"] = [draw(st.sampled_from(["80", "53/udp", "127.0.0.1::8080"]))]
                c["ports"].append(f"{next(ports)}:{draw(st.integers(1, 65535))}")
                c["expose"] = [80, "53/udp"]
        if mode in ("none", "bridge", "interfaces"):
            own_netns.append(cname)
            netns = f"ns{i}-{cname}"
            if draw(st.booleans()) and netns not in names and netns not in taken_netns:
                c["netns"] = netns
            taken_netns.add(c.get("netns", cname))
            if draw(st.booleans()):
                c["hostname"] = f"host{i}.example.test"
                c["dns"] = {
                    "nameservers": ["192.0.2.53", "2001:db8::53"],
                    "search": ["example.test"],
                    "options": ["ndots:2"],
                }
                c["hosts"] = {"db.example.test": "198.51.100.7"}
        containers[cname] = c
    if containers:
        data["containers"] = containers
    if len(own_netns) >= 1:
        links = []
        for k in range(draw(st.integers(0, 3))):
            a, b = draw(st.sampled_from(own_netns)), draw(st.sampled_from(own_netns))
            link: dict[str, Any] = {"endpoints": [f"{a}:p{k}a", f"{b}:p{k}b"]}
            if draw(st.booleans()):
                link["addresses"] = [f"100.64.{k}.1/32", f"100.64.{k}.2/32"]
            links.append(link)
        if links:
            data["links"] = links
    return data


def check_ipam(data: dict[str, Any], s: m.Spec) -> None:
    """The contract's IPAM, restated: automatic addresses are the lowest free ones,
    handed out in declaration order, skipping network, broadcast, bridge and statics."""
    statics: dict[str, set[IPv4Address]] = {b.name: {b.address} for b in s.bridges}
    wanted: list[tuple[str, str, str | None]] = []  # (container, bridge, static address)
    for cname, c in data.get("containers", {}).items():
        if "interfaces" in c:
            legs = c["interfaces"]
        elif c.get("network", "").partition(":")[0] in ("none", "host", "container"):
            continue
        else:
            legs = [{**c, "bridge": c.get("network") or next(iter(data["bridges"]))}]
        for leg in legs:
            static = leg.get("address", "").split("/")[0] or None
            wanted.append((cname, leg["bridge"], static))
            if static:
                statics[leg["bridge"]].add(IPv4Address(static))
    cursor = {b.name: usable(b.subnet)[0] for b in s.bridges}
    seen = [(c.name, i.bridge, i.address.ip) for c in s.containers for i in c.interfaces]
    expected = []
    for cname, bname, static in wanted:
        if static:
            expected.append((cname, bname, IPv4Address(static)))
            continue
        while IPv4Address(cursor[bname]) in statics[bname]:
            cursor[bname] += 1
        expected.append((cname, bname, IPv4Address(cursor[bname])))
        cursor[bname] += 1
    assert seen == expected


def test_valid_specs_load_lower_render_and_lint(tmp_path: Path) -> None:
    """Each example is checked in Python; the scripts of all of them go through
    `bash -n` and one shellcheck run at the end (its start-up dominates), each saved
    next to the spec that produced it so a finding can be traced back."""
    scripts: dict[str, str] = {}
    features: set[str] = set()

    @settings(SETTINGS, max_examples=30)
    @given(valid_specs())
    def check(data: dict[str, Any]) -> None:
        text = dump(data)
        s, rendered = build(text)
        check_ipam(data, s)
        legs = [i for c in s.containers for i in c.interfaces]
        hosts = [i.host_ifname for i in legs]
        assert len(set(hosts)) == len(hosts)
        assert not set(hosts) & {b.name for b in s.bridges}
        assert all(spec.IFNAME_RE.fullmatch(h) and h not in (".", "..") for h in hosts)
        for script in rendered.values():
            command_words(script)  # every command line is shlex-quoted words
        features.update(c.mode for c in s.containers)
        features.update("link" for _ in s.links)
        for c in data.get("containers", {}).values():
            features.update("static" for leg in c.get("interfaces", [c]) if "address" in leg)
            features.update("interfaces" for _ in c.get("interfaces", ()))
        features.update("several bridges" for _ in s.bridges[1:])
        example = f"example{len(scripts) // len(rendered):03d}"
        (tmp_path / f"{example}.yaml").write_text(text)
        scripts.update({f"{example}-{kind}": script for kind, script in rendered.items()})

    check()
    assert len(scripts) >= 4 * 15, "hypothesis ran too few examples to mean much"
    assert features >= {"bridge", "none", "host", "container", "link", "static", "interfaces"}
    assert "several bridges" in features
    paths = write_scripts(tmp_path, scripts)
    bash_n(paths)
    shellcheck(paths)


# -- hostile names ----------------------------------------------------------------------

NASTY = [
    "$(reboot)",
    "`reboot`",
    "a;reboot",
    "a && reboot",
    "a|b",
    "a>b",
    "a<b",
    "a b",
    "a\tb",
    "a\nb",
    "a'b",
    'a"b',
    "a\\b",
    "../x",
    "..",
    ".",
    "/",
    "a/b",
    "-rf",
    "--help",
    "*",
    "~",
    "${IFS}",
    "a#b",
    "#a",
    "!a",
    "a:b",
    "a,b",
    "a=b",
    "\u00e9t\u00e9",
    "\u202ebidi",
    "a\u00a0b",
    "\x1b[2J",
    "",
    "x" * 16,
    "x" * 65,
    "NETGEN_EOF",
]

hostile = st.one_of(
    st.sampled_from(NASTY),
    st.builds(
        lambda a, b, c: a + b + c,
        st.text(alphabet=REST, max_size=4),
        st.sampled_from(NASTY),
        st.text(alphabet=REST, max_size=4),
    ),
    st.text(max_size=12),
)

BASE: dict[str, Any] = {
    "version": 1,
    "name": "base",
    "bridges": {"br0": {"subnet": "10.0.0.0/24", "uplinks": ["em1"]}},
    "containers": {
        "web": {
            "network": "br0",
            "host_ifname": "vweb",
            "hostname": "web",
            "dns": {"search": ["example.test"], "options": ["ndots:2"]},
            "hosts": {"db": "10.0.0.9"},
            "link": ["db:alias"],
        },
        "db": {"network": "br0", "netns": "dbns"},
    },
    "links": [{"endpoints": ["web:eth1", "db:eth1"]}],
}


def place(position: str, name: str) -> dict[str, Any]:
    """BASE with `name` put in one name position (keys are renamed, references follow)."""
    data: dict[str, Any] = yaml.safe_load(dump(BASE))
    web = data["containers"]["web"]
    if position == "spec name":
        data["name"] = name
    elif position == "bridge":
        data["bridges"] = {name: data["bridges"].pop("br0")}
        web["network"] = name
    elif position == "container":
        data["containers"] = {name: data["containers"].pop("web"), "db": data["containers"]["db"]}
        data["links"][0]["endpoints"][0] = f"{name}:eth1"
    elif position == "netns":
        data["containers"]["db"]["netns"] = name
    elif position in ("ifname", "host_ifname"):
        web[position] = name
    elif position == "link endpoint":
        data["links"][0]["endpoints"][1] = f"db:{name}"
    elif position == "uplink":
        data["bridges"]["br0"]["uplinks"] = [name]
    elif position == "hostname":
        web["hostname"] = name
    elif position == "search":
        web["dns"]["search"] = [name]
    elif position == "dns option":
        web["dns"]["options"] = [name]
    elif position == "hosts":
        web["hosts"] = {name: "10.0.0.9"}
    elif position == "link alias":
        web["link"] = [f"db:{name}"]
    else:
        raise AssertionError(position)
    return data


POSITIONS = [
    "spec name",
    "bridge",
    "container",
    "netns",
    "ifname",
    "host_ifname",
    "link endpoint",
    "uplink",
    "hostname",
    "search",
    "dns option",
    "hosts",
    "link alias",
]
HEREDOC = re.compile(r" <<'(NETGEN_EOF\w*)'$")
SAFE = re.compile(r"[A-Za-z0-9_.:-]+")  # what any accepted name in any position is made of


def command_words(script: str) -> list[list[str]]:
    """Each command line of a script as shell words; heredoc bodies are not commands."""
    out = []
    lines = iter(script.split("\n"))
    for line in lines:
        if not line or line.startswith(("#", "set -euo", "trap ")):
            continue
        heredoc = HEREDOC.search(line)
        if heredoc:
            line = line[: heredoc.start()]
        guarded = re.fullmatch(r"if (.+) 2>/dev/null; then (.+); fi", line)
        for part in guarded.groups() if guarded else [line]:
            words = shlex.split(part)
            assert shlex.join(words) == part, f"not shlex-quoted words: {part!r}"
            out.append(words)
        if heredoc:
            for body in lines:
                if body == heredoc[1]:
                    break
    return out


def heredoc_bodies(script: str) -> list[str]:
    """The content every `install ... <<'END'` of a script writes."""
    return [
        m[2] for m in re.finditer(r" <<'(NETGEN_EOF\w*)'\n(.*?)^\1$", script, flags=re.S | re.M)
    ]


def test_the_base_spec_for_hostile_names_is_valid() -> None:
    s, scripts = build(dump(BASE))
    assert [c.name for c in s.containers] == ["web", "db"]
    assert any(
        ["ip", "netns", "add", "dbns"] == w for w in command_words(scripts["iproute2-setup"])
    )


@SETTINGS
@given(position=st.sampled_from(POSITIONS), name=hostile)
def test_hostile_names_are_rejected_or_stay_one_word(position: str, name: str) -> None:
    text = dump(place(position, name))
    try:
        _, scripts = build(text)
    except SpecError as exc:
        assert exc.exit_code == 2
        assert exc.diagnostics, "a SpecError always says what is wrong"
        for d in exc.diagnostics:
            assert d.line >= 1 and d.col >= 1
            assert "\n" not in d.path and "\x1b" not in d.path
        return
    assert SAFE.fullmatch(name), f"accepted a name outside the contract: {name!r}"
    for kind, script in scripts.items():
        words = [w for cmd in command_words(script) for w in cmd]
        if kind.endswith("teardown"):
            continue  # undoing the namespace undoes what is inside: not every name appears
        if position in ("hostname", "search", "dns option", "hosts", "link alias"):
            # file content travels in a quoted heredoc whose end marker it cannot spell
            assert any(name in body for body in heredoc_bodies(script)), (position, name)
        elif position == "spec name":
            assert f"netgen:{name}" in words  # the ownership mark, one word
        else:
            assert name in words, (position, name)  # a name is always a whole word


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_text_is_a_spec_or_a_spec_error(text: str) -> None:
    try:
        spec.loads(text, "x.yaml")
    except SpecError as exc:
        assert exc.diagnostics
