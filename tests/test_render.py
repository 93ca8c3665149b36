"""Rendering: every spec in specs/ x every dialect x setup/teardown.

Snapshots pin the exact scripts (a snapshot change is a behaviour change: read the
diff before `--snapshot-update`); the other tests check what must hold for any
spec: determinism, the header, a spec-line comment before every command group,
`bash -n` and shellcheck.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest
import scriptcheck
import yaml
from scriptcheck import bash_n, shellcheck, single_host_specs, write_scripts
from syrupy.assertion import SnapshotAssertion
from typer.testing import CliRunner

from netgen import __version__, dialects, lower, ops, render, spec
from netgen.cli import app
from netgen.errors import DialectError

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILES = single_host_specs(ROOT / "specs")
STEMS = [p.stem for p in SPEC_FILES]
DIALECTS = dialects.DIALECTS
KINDS = ("setup", "teardown")
CASES = [
    pytest.param(stem, dialect, kind, id=f"{stem}-{dialect}-{kind}")
    for stem in STEMS
    for dialect in DIALECTS
    for kind in KINDS
]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec paths in scripts are as given: render from the repo root, as a user would."""
    monkeypatch.chdir(ROOT)


HEREDOC = re.compile(r" <<'(NETGEN_EOF\w*)'$")


def script_for(stem: str, dialect: str, kind: str) -> str:
    s = spec.load(f"specs/{stem}.yaml")
    built = lower.lower(s)
    todo = ops.teardown(built) if kind == "teardown" else built
    return render.render(s, todo, dialect=dialect, teardown=kind == "teardown")


def render_text(text: str, dialect: str = "iproute2", teardown: bool = False) -> str:
    s = spec.loads(text, "inline.yaml")
    built = lower.lower(s)
    return render.render(
        s, ops.teardown(built) if teardown else built, dialect=dialect, teardown=teardown
    )


def commands_of(script: str) -> list[str]:
    """The command lines of a script: no comments, blanks, prologue or heredoc bodies."""
    out = []
    lines = iter(script.splitlines())
    for line in lines:
        if not line or line.startswith(("#", "set -euo", "trap ")):
            continue
        out.append(line)
        heredoc = HEREDOC.search(line)
        if heredoc:
            for body in lines:
                if body == heredoc[1]:
                    break
    return out


def groups_of(script: str) -> list[tuple[str, list[str]]]:
    """(comment, command lines) per blank-line-separated group after the prologue."""
    body = script.split("\ntrap ", 1)[1].split("\n", 1)[1]
    groups: list[tuple[str, list[str]]] = []
    lines = iter(body.splitlines())
    current: list[str] | None = None
    for line in lines:
        if not line:
            current = None
            continue
        if current is None:
            assert line.startswith("# "), f"a command group must open with a comment: {line!r}"
            current = []
            groups.append((line[2:], current))
            continue
        assert not line.startswith("#"), f"a stray comment inside a group: {line!r}"
        current.append(line)
        heredoc = HEREDOC.search(line)
        if heredoc:
            for body in lines:
                if body == heredoc[1]:
                    break
    return groups


def yaml_line(text: str, path: str) -> int:
    """The 1-based line a key path points at: a key's own line, or a list item's first line."""
    node = yaml.compose(text)
    line = 0
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            node = node.value[int(part[1:-1])]
            line = node.start_mark.line + 1
        else:
            key, node = next((k, v) for k, v in node.value if k.value == part)
            line = key.start_mark.line + 1
    return line


class TestEverySpec:
    def test_the_examples_are_all_there(self) -> None:
        expected = {
            "walkthrough",
            "custom-bridge",
            "point-to-point",
            "multihomed",
            "net-modes",
            "dns",
            "uplink",
        }
        assert expected <= set(STEMS)

    @pytest.mark.parametrize("path", SPEC_FILES, ids=STEMS)
    def test_spec_validates_and_says_what_it_shows(self, path: Path) -> None:
        text = path.read_text()
        assert text.startswith("# "), "every example opens with a comment saying what it shows"
        s = spec.load(f"specs/{path.name}")
        assert s.name == path.stem
        assert "pid:" not in text, "a PID is not known in advance: no pid: in specs/"

    @pytest.mark.parametrize(("stem", "dialect", "kind"), CASES)
    def test_script_matches_snapshot(
        self, stem: str, dialect: str, kind: str, snapshot: SnapshotAssertion
    ) -> None:
        assert script_for(stem, dialect, kind) == snapshot

    @pytest.mark.parametrize(("stem", "dialect", "kind"), CASES)
    def test_same_spec_same_bytes(self, stem: str, dialect: str, kind: str) -> None:
        first = script_for(stem, dialect, kind)
        render._env.cache_clear()
        assert script_for(stem, dialect, kind).encode() == first.encode()

    @pytest.mark.parametrize(("stem", "dialect", "kind"), CASES)
    def test_header_names_spec_file_hash_and_version_without_a_timestamp(
        self, stem: str, dialect: str, kind: str
    ) -> None:
        script = script_for(stem, dialect, kind)
        header = script.split("set -euo pipefail", 1)[0]
        digest = hashlib.sha256((ROOT / "specs" / f"{stem}.yaml").read_bytes()).hexdigest()
        assert header.startswith("#!/usr/bin/env bash\n")
        assert f"# netgen {kind} script for spec '{stem}'\n" in header
        assert f"# spec:    specs/{stem}.yaml (name {stem})\n" in header
        assert f"# sha256:  {digest}\n" in header
        assert f"# netgen:  {__version__}, dialect {dialect}\n" in header
        assert not re.search(r"\d{4}-\d\d-\d\d|\d\d:\d\d|\b(19|20)\d\d\b", header), header

    @pytest.mark.parametrize(("stem", "dialect", "kind"), CASES)
    def test_every_command_group_names_its_spec_line(
        self, stem: str, dialect: str, kind: str
    ) -> None:
        script = script_for(stem, dialect, kind)
        text = (ROOT / "specs" / f"{stem}.yaml").read_text()
        groups = groups_of(script)
        assert sum(len(cmds) for _, cmds in groups) == len(commands_of(script))
        if stem != "net-modes" or kind == "setup":
            assert groups, "every example builds something"
        for comment, cmds in groups:
            assert cmds, f"an empty group: {comment}"
            if f" of spec {stem} " in comment:
                continue  # what belongs to the whole spec (the firewall's chains) names it
            match = re.fullmatch(rf"specs/{re.escape(stem)}\.yaml:(\d+) (\S+)", comment)
            assert match, comment
            assert int(match[1]) == yaml_line(text, match[2]), comment

    @pytest.mark.parametrize("dialect", DIALECTS)
    def test_scripts_pass_bash_n_and_shellcheck(self, dialect: str, tmp_path: Path) -> None:
        scripts = {
            f"{stem}-{kind}": script_for(stem, dialect, kind) for stem in STEMS for kind in KINDS
        }
        paths = write_scripts(tmp_path, scripts)
        bash_n(paths)
        shellcheck(paths)


class TestScriptChecks:
    """The checkers themselves must be able to fail, or the tests above prove nothing."""

    def test_shellcheck_rejects_an_unquoted_expansion(self, tmp_path: Path) -> None:
        paths = write_scripts(tmp_path, {"bad": "#!/usr/bin/env bash\nrm -rf $1/x\n"})
        with pytest.raises(AssertionError, match="SC2086"):
            shellcheck(paths)

    def test_a_missing_shellcheck_fails_in_ci(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(scriptcheck.shutil, "which", lambda tool: None)
        paths = write_scripts(tmp_path, {"ok": "#!/usr/bin/env bash\ntrue\n"})
        monkeypatch.setenv("CI", "true")
        with pytest.raises(pytest.fail.Exception, match="shellcheck is not installed"):
            shellcheck(paths)
        monkeypatch.setenv("CI", "")
        with pytest.raises(pytest.skip.Exception, match="shellcheck is not installed"):
            shellcheck(paths)

    def test_bash_n_rejects_a_syntax_error(self, tmp_path: Path) -> None:
        paths = write_scripts(tmp_path, {"bad": "#!/usr/bin/env bash\nif true; then\n"})
        with pytest.raises(AssertionError, match="bash -n bad.sh"):
            bash_n(paths)


class TestIproute2:
    def test_walkthrough_is_the_chapters_commands_in_modern_ip(self) -> None:
        assert commands_of(script_for("walkthrough", "iproute2", "setup")) == [
            "ip link add name docker0 type bridge",
            "ip link set dev docker0 alias netgen:walkthrough",
            "ip addr add 172.17.42.1/16 dev docker0",
            "ip link set dev docker0 up",
            "ip netns add web",
            "ip -n web link set dev lo alias netgen:walkthrough",
            "ip -n web link set dev lo up",
            "ip link add name A type veth peer name eth0 netns web",
            "ip link set dev A alias netgen:walkthrough",
            "ip link set dev A addrgenmode none",
            "ip -n web link set dev eth0 addrgenmode none",
            "ip link set dev A master docker0",
            "ip link set dev A up",
            "ip -n web addr add 172.17.42.99/16 dev eth0",
            "ip -n web link set dev eth0 up",
            "ip -n web route add default via 172.17.42.1 dev eth0",
        ]

    def test_teardown_touches_only_what_carries_the_spec_mark(self) -> None:
        assert commands_of(script_for("walkthrough", "iproute2", "teardown")) == [
            "if grep -qsxF netgen:walkthrough /sys/class/net/A/ifalias 2>/dev/null; "
            "then ip link delete dev A; fi",
            "if ip netns exec web grep -qsxF netgen:walkthrough /sys/class/net/lo/ifalias "
            "2>/dev/null; then ip netns delete web; fi",
            "if grep -qsxF netgen:walkthrough /sys/class/net/docker0/ifalias 2>/dev/null; "
            "then ip link delete dev docker0 type bridge; fi",
        ]

    def test_bridge_mtu_applies_to_the_bridge_and_both_veth_ends(self) -> None:
        cmds = commands_of(script_for("custom-bridge", "iproute2", "setup"))
        assert "ip link add name bridge0 mtu 1400 type bridge" in cmds
        assert (
            "ip link add name v42c3ec-cache mtu 1400 type veth peer name eth0 netns cache "
            "mtu 1400 address 02:42:c0:a8:05:03"
        ) in cmds

    def test_a_veth_name_that_spells_an_ip_keyword_stays_a_name(self) -> None:
        script = render_text(
            "version: 1\nbridges: {br0: {subnet: 10.0.0.0/24}}\n"
            "containers: {web: {host_ifname: up}}\n"
        )
        assert "ip link add name up type veth peer name eth0 netns web" in commands_of(script)

    def test_mcast_snooping_is_an_option_of_the_bridge(self) -> None:
        script = render_text(
            "version: 1\nbridges: {br0: {subnet: 10.0.0.0/24, mcast_snooping: false}}\n"
        )
        assert "ip link add name br0 type bridge mcast_snooping 0" in commands_of(script)

    def test_point_to_point_routes_each_32_to_the_other_end(self) -> None:
        cmds = commands_of(script_for("point-to-point", "iproute2", "setup"))
        link = cmds[cmds.index("ip -n c1 link add name A type veth peer name B netns c2") :]
        assert [c for c in link if " addr " in c or " route " in c or " up" in c] == [
            "ip -n c1 addr add 10.1.1.1/32 dev A",
            "ip -n c1 link set dev A up",
            "ip -n c1 route add 10.1.1.2/32 dev A",
            "ip -n c2 addr add 10.1.1.2/32 dev B",
            "ip -n c2 link set dev B up",
            "ip -n c2 route add 10.1.1.1/32 dev B",
        ]

    def test_uplink_is_enslaved_and_released_never_deleted(self) -> None:
        setup = commands_of(script_for("uplink", "iproute2", "setup"))
        teardown = commands_of(script_for("uplink", "iproute2", "teardown"))
        assert "ip link set dev em1 master br0" in setup
        assert [c for c in teardown if "em1" in c] == [
            "if test -e /sys/class/net/br0/brif/em1 2>/dev/null; "
            "then ip link set dev em1 nomaster; fi"
        ]

    def test_shared_and_host_namespaces_build_nothing(self) -> None:
        script = script_for("net-modes", "iproute2", "setup")
        for name in ("tools", "sidecar", "logger"):
            assert name not in script
        assert "ip netns add isolated" in commands_of(script)


class TestBrctl:
    def test_walkthrough_is_the_chapters_listing(self) -> None:
        cmds = commands_of(script_for("walkthrough", "brctl", "setup"))
        # the chapter's own commands (it names the netns $pid, netgen `web`; it brings eth0
        # up before adding the address, netgen after: the end state is the same)
        chapter = [
            "brctl addif docker0 A",
            "ip link set dev A up",
            "ip netns exec web ip addr add 172.17.42.99/16 dev eth0",
            "ip netns exec web ip link set dev eth0 up",
            "ip netns exec web ip route add default via 172.17.42.1 dev eth0",
        ]
        positions = [cmds.index(c) for c in chapter]
        assert positions == sorted(positions)
        assert cmds[0] == "brctl addbr docker0"
        veth = [c for c in cmds if "type veth" in c]
        assert len(veth) == 1 and veth[0].startswith("ip link add name A type veth peer name ngt")
        temp = veth[0].rsplit(" ", 1)[1]
        assert f"ip link set {temp} netns web" in cmds
        assert f"ip netns exec web ip link set dev {temp} name eth0" in cmds

    def test_bridge_teardown_checks_the_mark_before_each_step(self) -> None:
        cmds = commands_of(script_for("custom-bridge", "brctl", "teardown"))
        guard = "if grep -qsxF netgen:custom-bridge /sys/class/net/bridge0/ifalias 2>/dev/null"
        assert cmds[-2:] == [
            f"{guard}; then ip link set dev bridge0 down; fi",
            f"{guard}; then brctl delbr bridge0; fi",
        ]

    def test_a_name_that_looks_like_an_option_is_not_taken_for_one(self) -> None:
        text = (
            "version: 1\nbridges:\n  -b0: {subnet: 10.9.0.0/24}\n"
            "containers:\n  w: {host_ifname: -rf}\n"
        )
        setup = commands_of(render_text(text, "brctl"))
        assert setup[0] == "brctl -- addbr -b0"
        assert "brctl -- addif -b0 -rf" in setup
        assert "ip link add name -rf type veth peer name ngt" in " ".join(setup)
        teardown = commands_of(render_text(text, "brctl", teardown=True))
        assert teardown[-1] == (
            "if grep -qsxF netgen:inline /sys/class/net/-b0/ifalias 2>/dev/null; "
            "then brctl -- delbr -b0; fi"
        )

    def test_point_to_point_moves_and_renames_each_end(self) -> None:
        cmds = commands_of(script_for("point-to-point", "brctl", "setup"))
        moved = [c for c in cmds if re.search(r"type veth| netns c.$| name [AB]$", c)]
        assert [re.sub(r"ngt[0-9a-f]{10}", "TEMP", c) for c in moved] == [
            "ip link add name TEMPa type veth peer name TEMPb",
            "ip link set TEMPa netns c1",
            "ip netns exec c1 ip link set dev TEMPa name A",
            "ip link set TEMPb netns c2",
            "ip netns exec c2 ip link set dev TEMPb name B",
        ]

    def test_temporary_names_are_valid_interface_names(self) -> None:
        for stem in STEMS:
            for temp in re.findall(r"ngt\w+", script_for(stem, "brctl", "setup")):
                assert spec.IFNAME_RE.fullmatch(temp), temp

    def test_mcast_snooping_cannot_be_expressed(self) -> None:
        text = "version: 1\nbridges: {br0: {subnet: 10.0.0.0/24, mcast_snooping: true}}\n"
        with pytest.raises(DialectError) as info:
            render_text(text, dialect="brctl")
        assert (info.value.op, info.value.dialect) == ("AddBridge", "brctl")
        assert str(info.value) == (
            "dialect 'brctl' cannot express AddBridge: "
            "brctl has no multicast snooping setting; use iproute2"
        )

    def test_unknown_dialect_is_named(self) -> None:
        with pytest.raises(DialectError, match="dialect 'ifconfig' cannot express AddBridge"):
            render_text("version: 1\nbridges: {br0: {subnet: 10.0.0.0/24}}\n", "ifconfig")


class TestFiles:
    def test_resolv_conf_hosts_and_hostname_are_written_verbatim(self) -> None:
        script = script_for("dns", "iproute2", "setup")
        assert (
            "install -m 0644 /dev/stdin /etc/netns/web/resolv.conf <<'NETGEN_EOF'\n"
            "# written by netgen for container web of spec dns\n"
            "nameserver 10.53.0.1\n"
            "nameserver 192.0.2.53\n"
            "nameserver 2001:db8::53\n"
            "search example.test corp.example.test\n"
            "options ndots:2 timeout:1\n"
            "NETGEN_EOF\n"
        ) in script
        assert (
            "127.0.0.1\tlocalhost\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
            "10.53.0.2\tweb.example.test\n"
            "198.51.100.7\tdb.example.test\n"
            "10.53.0.9\tcache\n"
            "NETGEN_EOF\n"
        ) in script
        assert "/etc/netns/web/hostname <<'NETGEN_EOF'\nweb.example.test\nNETGEN_EOF\n" in script
        assert "/etc/netns/ns-resolver/resolv.conf" in script

    def test_content_never_ends_its_heredoc_early(self) -> None:
        script = render_text(
            "version: 1\ncontainers:\n  c: {network: none, hostname: NETGEN_EOF}\n"
        )
        assert (
            "install -m 0644 /dev/stdin /etc/netns/c/hostname <<'NETGEN_EOF_2'\n"
            "NETGEN_EOF\n"
            "NETGEN_EOF_2\n"
        ) in script
        assert commands_of(script)[-1] == (
            "install -m 0644 /dev/stdin /etc/netns/c/hostname <<'NETGEN_EOF_2'"
        )

    def test_teardown_removes_the_files_then_the_directory(self) -> None:
        cmds = commands_of(script_for("dns", "iproute2", "teardown"))
        web = [c for c in cmds if "/etc/netns/web" in c]
        assert web == [
            "rm -f /etc/netns/web/hostname",
            "rm -f /etc/netns/web/hosts",
            "rm -f /etc/netns/web/resolv.conf",
            "if test -d /etc/netns/web 2>/dev/null; "
            "then rmdir --ignore-fail-on-non-empty /etc/netns/web; fi",
        ]


WEB_LOC = {"file": "specs/walkthrough.yaml", "line": 10, "col": 3, "path": "containers.web"}


class TestOps:
    """`netgen ops`: the IR as JSON, the contract between lowering and the backends."""

    def ops_json(self, *args: str) -> list[dict[str, object]]:
        result = CliRunner().invoke(app, ["ops", "specs/walkthrough.yaml", *args])
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert isinstance(data, list)
        return data

    def test_walkthrough_ops_in_order(self) -> None:
        assert [op["op"] for op in self.ops_json()] == [
            "AddBridge",
            "AddAddress",
            "LinkUp",
            "AddNetns",
            "LinkUp",
            "AddVeth",
            "SetMaster",
            "LinkUp",
            "AddAddress",
            "LinkUp",
            "AddRoute",
        ]

    def test_walkthrough_ops_say_what_not_how(self) -> None:
        data = self.ops_json()
        assert data[5] == {
            "op": "AddVeth",
            "name": "A",
            "netns": None,
            "peer": "eth0",
            "peer_netns": "web",
            "owner": "walkthrough",
            "mtu": None,
            "peer_mac": None,
            "peer_autoconf": False,
            "autoconf": False,
            "loc": {
                "file": "specs/walkthrough.yaml",
                "line": 10,
                "col": 3,
                "path": "containers.web",
            },
        }
        assert data[-1] == {
            "op": "AddRoute",
            "netns": "web",
            "to": "default",
            "via": "172.17.42.1",
            "dev": "eth0",
            "loc": {
                "file": "specs/walkthrough.yaml",
                "line": 10,
                "col": 3,
                "path": "containers.web",
            },
        }
        for op in data:
            assert not any(isinstance(v, list) for v in op.values()), "no argv on an op"

    def test_teardown_ops_are_the_inverses_in_reverse(self) -> None:
        assert [(op["op"], op["name"]) for op in self.ops_json("--teardown")] == [
            ("DelVeth", "A"),
            ("DelNetns", "web"),
            ("DelBridge", "docker0"),
        ]

    def test_ops_json_matches_the_lowered_ops(self) -> None:
        built = lower.lower(spec.load("specs/walkthrough.yaml"))
        assert self.ops_json() == [ops.to_json(op) for op in built]


class TestOwnershipGuard:
    """A mark is compared literally: the teardown of spec `a.b` must not take `a-b`'s objects."""

    def test_guard_matches_the_exact_mark_only(self, tmp_path: Path) -> None:
        from netgen import dialects, ops

        alias = tmp_path / "ifalias"
        guard = dialects.commands(ops.DelBridge("br0", "a.b"))[0].guard
        assert guard is not None
        argv = [a if a != "/sys/class/net/br0/ifalias" else str(alias) for a in guard]
        alias.write_text("netgen:a-b\n")
        assert subprocess.run(argv).returncode == 1
        alias.write_text("netgen:a.b\n")
        assert subprocess.run(argv).returncode == 0
