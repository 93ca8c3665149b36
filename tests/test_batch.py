"""Batch style (`netgen render --batch`): the plain script's commands, grouped for speed.

Snapshots pin the scripts of every spec x dialect x setup/teardown (a snapshot change
is a behaviour change: read the diff). The other tests check what must hold for any
spec: the batch lines are the dialect's commands minus their prefix, nothing lost or
added; the stages respect what depends on what; ip's batch reader reads every line
back as the argv it came from; and, against a real kernel, a batch script leaves
exactly the state the plain script leaves, its teardown removes it, and a failure in
any background job fails the script.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from ipaddress import IPv6Interface
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scriptcheck import bash_n, shellcheck, single_host_specs, write_scripts
from syrupy.assertion import SnapshotAssertion
from test_kernel_scripts import prepare_host, start_container
from test_properties import SETTINGS, dump, valid_specs
from typer.testing import CliRunner

from netgen import batch, dialects, lower, ops, render, spec
from netgen import model as m
from netgen.cli import app
from netgen.dialects import Cmd
from netgen.sandbox import Sandbox

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

kernel = pytest.mark.kernel


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec paths in scripts are as given: render from the repo root, as a user would."""
    monkeypatch.chdir(ROOT)


def batch_script(s: m.Spec, dialect: str = "iproute2", kind: str = "setup") -> str:
    return render.render_batch(s, lower.lower(s), dialect=dialect, teardown=kind == "teardown")


def script_for(stem: str, dialect: str, kind: str) -> str:
    return batch_script(spec.load(f"specs/{stem}.yaml"), dialect, kind)


def loads(doc: dict[str, Any]) -> m.Spec:
    return spec.loads(yaml.safe_dump(doc, sort_keys=False), "inline.yaml")


def prefix(netns: str | None, opts: tuple[str, ...], dialect: str) -> tuple[str, ...]:
    """What batch.split() takes off a command that runs in `netns` (options included)."""
    if netns is None:
        return ("ip", *opts)
    if dialect == "brctl":
        return ("ip", "netns", "exec", netns, "ip", *opts)
    return ("ip", "-n", netns, *opts)


def items(stage: batch.Stage) -> list[batch.Batch | batch.Single]:
    return [*stage.host, *(item for job in stage.netns for item in job.items)]


def lines_of(b: batch.Batch | batch.Single) -> list[tuple[str, ...]]:
    return [line for g in b.groups for line in g.lines] if isinstance(b, batch.Batch) else []


def planned(stages: list[batch.Stage], dialect: str) -> list[tuple[str, ...]]:
    """Every command of a setup plan, prefixes put back, stage by stage."""
    out: list[tuple[str, ...]] = []
    for stage in stages:
        for item in items(stage):
            if isinstance(item, batch.Single):
                out.append(item.cmd.argv)
            else:
                out += [prefix(item.netns, item.opts, dialect) + line for line in lines_of(item)]
    return out


def heredocs(script: str) -> list[list[str]]:
    """The body lines of every `ip -batch` heredoc in a script."""
    bodies: list[list[str]] = []
    lines = iter(script.splitlines())
    for line in lines:
        start = re.search(r"\bip (-[46] )*-batch - <<'(\w+)'( &)?$", line)
        if start:
            end = start[2]
            bodies.append([])
            for body in lines:
                if body == end:
                    break
                bodies[-1].append(body)
    return bodies


# -- ip's batch reader, ported (iproute2 lib/utils.c: getcmdline, makeargs) ---------------


def ip_reads(line: str) -> list[str]:
    """The argv `ip -batch` makes of one line: cut at `#`, then words or quoted words."""
    line = line.split("#", 1)[0]
    assert not line.endswith("\\"), "a trailing backslash would join the next line"
    argv: list[str] = []
    i, ws = 0, " \t\r\n"
    while i < len(line):
        while i < len(line) and line[i] in ws:
            i += 1
        if i == len(line):
            break
        if line[i] in "'\"":
            end = line.find(line[i], i + 1)
            assert end >= 0, "Unterminated quoted string"
            argv.append(line[i + 1 : end])
        else:
            end = i
            while end < len(line) and line[end] not in ws:
                end += 1
            argv.append(line[i:end])
        i = end + 1
    return argv


# -- every spec ---------------------------------------------------------------------------


class TestEverySpec:
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

    @pytest.mark.parametrize("dialect", DIALECTS)
    def test_scripts_pass_bash_n_and_shellcheck(self, dialect: str, tmp_path: Path) -> None:
        scripts = {
            f"{stem}-{kind}": script_for(stem, dialect, kind) for stem in STEMS for kind in KINDS
        }
        paths = write_scripts(tmp_path, scripts)
        bash_n(paths)
        shellcheck(paths)

    @pytest.mark.parametrize("dialect", DIALECTS)
    @pytest.mark.parametrize("stem", STEMS)
    def test_setup_runs_every_command_of_the_plain_script_once(
        self, stem: str, dialect: str
    ) -> None:
        built = lower.lower(spec.load(f"specs/{stem}.yaml"))
        plain = [c.argv for op in built for c in dialects.commands(op, dialect)]
        assert Counter(planned(batch.stages(built, dialect), dialect)) == Counter(plain)

    @pytest.mark.parametrize("dialect", DIALECTS)
    @pytest.mark.parametrize("stem", STEMS)
    def test_each_namespace_and_the_host_keep_the_plain_order(
        self, stem: str, dialect: str
    ) -> None:
        """In the examples no command needs to move ahead of one in its own context."""
        built = lower.lower(spec.load(f"specs/{stem}.yaml"))
        plain = [c.argv for op in built for c in dialects.commands(op, dialect)]
        ours = planned(batch.stages(built, dialect), dialect)

        def by_context(cmds: list[tuple[str, ...]]) -> dict[str | None, list[tuple[str, ...]]]:
            out: dict[str | None, list[tuple[str, ...]]] = {}
            for argv in cmds:
                out.setdefault(batch.split(argv)[0], []).append(argv)
            return out

        assert by_context(ours) == by_context(plain)

    @pytest.mark.parametrize("dialect", DIALECTS)
    @pytest.mark.parametrize("stem", STEMS)
    def test_ip_reads_every_batch_line_back_as_a_plain_commands_argv(
        self, stem: str, dialect: str
    ) -> None:
        s = spec.load(f"specs/{stem}.yaml")
        built = lower.lower(s)
        setup = {batch.split(c.argv)[2] for op in built for c in dialects.commands(op, dialect)}
        bodies = heredocs(script_for(stem, dialect, "setup"))
        assert bodies, "every example has a batch"
        for body in bodies:
            for line in body:
                read = tuple(ip_reads(line))
                if line.startswith("# "):
                    assert read == (), line  # a comment: ip reads nothing
                else:
                    assert read in setup, line
        down = {
            batch.split(c.argv)[2]
            for op in ops.teardown(built)
            for c in dialects.commands(op, dialect)
        }
        for drop in batch.teardown(built, dialect).drops:
            assert tuple(ip_reads(batch.batch_line(drop.line))) in down

    def test_cli_renders_the_batch_style(self) -> None:
        result = CliRunner().invoke(app, ["render", "specs/walkthrough.yaml", "--batch"])
        assert result.exit_code == 0, result.output
        assert result.stdout == script_for("walkthrough", "iproute2", "setup")
        result = CliRunner().invoke(
            app, ["render", "specs/walkthrough.yaml", "--batch", "--teardown"]
        )
        assert result.exit_code == 0, result.output
        assert result.stdout == script_for("walkthrough", "iproute2", "teardown")

    def test_the_default_script_is_not_batched(self) -> None:
        result = CliRunner().invoke(app, ["render", "specs/walkthrough.yaml"])
        assert " -batch " not in result.stdout and "nsenter" not in result.stdout


def test_valid_specs_render_in_batch_style_and_lint(tmp_path: Path) -> None:
    """Generated specs: every setup command is planned once, and the scripts lint."""
    scripts: dict[str, str] = {}

    @settings(SETTINGS, max_examples=30)
    @given(valid_specs())
    def check(data: dict[str, Any]) -> None:
        s = spec.loads(dump(data), "gen.yaml")
        built = lower.lower(s)
        for dialect in DIALECTS:
            plain = [c.argv for op in built for c in dialects.commands(op, dialect)]
            assert Counter(planned(batch.stages(built, dialect), dialect)) == Counter(plain)
            for kind in KINDS:
                scripts[f"ex{len(scripts):03d}-{dialect}-{kind}"] = batch_script(s, dialect, kind)

    check()
    paths = write_scripts(tmp_path, scripts)
    bash_n(paths)
    shellcheck(paths)


# -- quoting for ip's batch reader --------------------------------------------------------


class TestQuoting:
    def test_names_addresses_and_marks_stay_bare(self) -> None:
        line = ("link", "set", "dev", "veth-a.1_b", "alias", "netgen:my.spec-1")
        assert batch.batch_line(line) == "link set dev veth-a.1_b alias netgen:my.spec-1"

    @pytest.mark.parametrize(
        ("token", "written"),
        [
            ("a b", '"a b"'),
            ("", '""'),
            ('say "hi"', "'say \"hi\"'"),
            ("it's", '"it\'s"'),
            ("back\\", '"back\\"'),
        ],
    )
    def test_blanks_quotes_and_backslashes_are_quoted(self, token: str, written: str) -> None:
        assert batch.batch_token(token) == written
        assert ip_reads(f"link set dev x alias {written}") == [
            "link",
            "set",
            "dev",
            "x",
            "alias",
            token,
        ]

    @pytest.mark.parametrize(
        "token", ["a#b", "#", "a\tb", "a\nb", "a\rb", "a\x00b", "'\"", "\x1b[2J"]
    )
    def test_what_ip_cannot_read_back_is_refused(self, token: str) -> None:
        with pytest.raises(batch.BatchSyntaxError):
            batch.batch_token(token)

    @SETTINGS
    @given(st.lists(st.text(max_size=8), min_size=1, max_size=6))
    def test_every_accepted_line_reads_back_as_its_tokens(self, tokens: list[str]) -> None:
        try:
            line = batch.batch_line(tokens)
        except batch.BatchSyntaxError:
            assert any("#" in t or not t.isprintable() or ("'" in t and '"' in t) for t in tokens)
            return
        assert "\n" not in line
        assert ip_reads(line) == tokens

    def test_a_command_ip_cannot_read_back_runs_on_its_own(self) -> None:
        assert batch.split(("ip", "link", "set", "dev", "x", "alias", "a#b")) == (None, (), None)
        assert batch.split(("ip", "-n", "ns", "link", "set", "dev", "x", "alias", "a#b")) == (
            "ns",
            (),
            None,
        )


# -- where commands run and what they touch ----------------------------------------------


class TestSplit:
    @pytest.mark.parametrize(
        ("argv", "where"),
        [
            (
                ("ip", "link", "set", "dev", "A", "up"),
                (None, (), ("link", "set", "dev", "A", "up")),
            ),
            (("ip", "netns", "add", "web"), (None, (), ("netns", "add", "web"))),
            (
                ("ip", "-n", "web", "addr", "add", "10.0.0.2/24", "dev", "eth0"),
                ("web", (), ("addr", "add", "10.0.0.2/24", "dev", "eth0")),
            ),
            (
                ("ip", "-n", "web", "-6", "addr", "add", "fd00::2/64", "dev", "eth0", "nodad"),
                ("web", ("-6",), ("addr", "add", "fd00::2/64", "dev", "eth0", "nodad")),
            ),
            (
                ("ip", "netns", "exec", "web", "ip", "link", "set", "dev", "lo", "up"),
                ("web", (), ("link", "set", "dev", "lo", "up")),
            ),
            (
                ("ip", "netns", "exec", "web", "ip", "-6", "route", "add", "default", "dev", "x"),
                ("web", ("-6",), ("route", "add", "default", "dev", "x")),
            ),
            (("ip", "netns", "exec", "web", "grep", "-qsxF", "m", "f"), ("web", (), None)),
            (("ip", "netns", "exec", "web", "sysctl", "-w", "k=v"), ("web", (), None)),
            (("sh", "-c", "prog", "x", "ip", "-n", "web", "-6", "addr", "show"), ("web", (), None)),
            (("ip", "-j", "link", "show"), (None, (), None)),
            (("ip", "-n", "web", "-j", "link", "show"), ("web", (), None)),
            (("brctl", "addif", "br0", "A"), (None, (), None)),
            (("iptables", "-w", "-t", "nat", "-N", "X"), (None, (), None)),
        ],
    )
    def test_split(self, argv: tuple[str, ...], where: tuple[Any, ...]) -> None:
        assert batch.split(argv) == where


class TestTouches:
    def touches(self, netns: str | None, line: str) -> set[batch.Resource]:
        return batch.touches(netns, tuple(line.split()), ops.LinkUp("x", netns))

    def test_a_veth_into_another_namespace_touches_both_ends(self) -> None:
        assert self.touches("c1", "link add name A type veth peer name B netns c2") == {
            ("c1", "A"),
            ("c2", "B"),
        }

    def test_a_veth_from_the_host_with_mtu_and_mac(self) -> None:
        line = (
            "link add name A mtu 1400 type veth peer name eth0 netns web"
            " mtu 1400 address 02:00:00:00:00:01"
        )
        assert self.touches(None, line) == {(None, "A"), ("web", "eth0")}

    def test_moving_a_link_touches_it_on_both_sides(self) -> None:
        assert self.touches(None, "link set ngt1 netns web") == {(None, "ngt1"), ("web", "ngt1")}

    def test_rename_and_master(self) -> None:
        assert self.touches("web", "link set dev t name eth0") == {("web", "t"), ("web", "eth0")}
        assert self.touches(None, "link set dev A master br0") == {(None, "A"), (None, "br0")}

    def test_names_that_spell_keywords_are_names(self) -> None:
        assert self.touches("c1", "link add name peer type veth peer name netns netns c2") == {
            ("c1", "peer"),
            ("c2", "netns"),
        }

    def test_a_route_without_dev_touches_the_whole_namespace(self) -> None:
        assert self.touches("db", "route add 10.0.0.0/24 via 10.1.0.1") == {("db", None)}
        assert self.touches("db", "route add default via 10.1.0.1 dev eth0") == {("db", "eth0")}

    def test_a_namespace_is_touched_whole_by_its_creation(self) -> None:
        assert self.touches(None, "netns add web") == {("web", None)}

    def test_an_unknown_word_touches_everything_it_might(self) -> None:
        assert self.touches("c1", "link add name v type vlan link eth0 id 5") == {("c1", None)}
        assert self.touches(None, "link set dev x vf 1 netns c2") == {(None, None), ("c2", None)}

    def test_a_sysctl_of_a_device_touches_that_device(self) -> None:
        argv = ("ip", "netns", "exec", "web", "sysctl", "-q", "-w", "net.ipv6.conf.e/1.x=0")
        assert batch.touches("web", None, ops.LinkUp("e.1", "web"), argv) == {("web", "e.1")}
        argv = ("sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
        assert batch.touches(None, None, ops.LinkUp("x"), argv) == {(None, None)}

    def test_a_command_that_is_no_batch_line_touches_its_ops_namespaces(self) -> None:
        op = ops.AdoptNetns("web", 42, "spec")
        assert batch.touches(None, None, op) == {(None, None), ("web", None)}


# -- stages -------------------------------------------------------------------------------


def chain(n: int) -> m.Spec:
    """n containers with only lo, each linked to the next (the shape that used to cascade)."""
    return loads(
        {
            "version": 1,
            "name": "chain",
            "containers": {f"c{i}": {"network": "none"} for i in range(n)},
            "links": [
                {
                    "endpoints": [f"c{i}:right", f"c{i + 1}:left"],
                    "addresses": [f"10.9.{i}.1/32", f"10.9.{i}.2/32"],
                }
                for i in range(n - 1)
            ],
        }
    )


class TestStages:
    def test_one_container_is_one_host_batch_then_one_namespace_batch(self) -> None:
        (stage,) = batch.stages(lower.lower(spec.load("specs/walkthrough.yaml")))
        (host,) = stage.host
        assert isinstance(host, batch.Batch) and host.netns is None
        lines = lines_of(host)
        assert ("netns", "add", "web") in lines
        assert lines.index(("netns", "add", "web")) < lines.index(
            ("link", "add", "name", "A", "type", "veth", "peer", "name", "eth0", "netns", "web")
        )
        assert [b.netns for b in stage.netns] == ["web"]

    def test_the_far_end_of_a_point_to_point_link_is_set_up_a_stage_later(self) -> None:
        first, second = batch.stages(lower.lower(spec.load("specs/point-to-point.yaml")))
        (c1,) = next(job for job in first.netns if job.netns == "c1").items
        created = ("link", "add", "name", "A", "type", "veth", "peer", "name", "B", "netns", "c2")
        assert created in lines_of(c1)
        (job,) = second.netns
        (c2,) = job.items
        assert job.netns == "c2"
        assert lines_of(c2)[0] == (
            "link",
            "set",
            "dev",
            "B",
            "addrgenmode",
            "none",
        )

    def test_a_chain_of_links_takes_two_stages_however_long(self) -> None:
        built = lower.lower(chain(30))
        stages = batch.stages(built)
        assert len(stages) == 2
        assert Counter(planned(stages, "iproute2")) == Counter(
            c.argv for op in built for c in dialects.commands(op)
        )

    def test_a_dual_stack_chain_does_not_cascade_either(self) -> None:
        doc = {
            "version": 1,
            "name": "chain6",
            "containers": {f"c{i}": {"network": "none"} for i in range(12)},
            "links": [
                {
                    "endpoints": [f"c{i}:right", f"c{i + 1}:left"],
                    "addresses": [f"fd00:{i}::1/128", f"fd00:{i}::2/128"],
                }
                for i in range(11)
            ],
        }
        assert len(batch.stages(lower.lower(loads(doc)))) <= 3

    def test_a_link_end_is_set_up_after_it_is_created(self) -> None:
        """In every plan: a command on B in c2 comes in a stage after the one creating B."""
        for built in (lower.lower(chain(6)), lower.lower(spec.load("specs/point-to-point.yaml"))):
            created: dict[tuple[str | None, str | None], int] = {}
            for number, stage in enumerate(batch.stages(built)):
                for b in (item for job in stage.netns for item in job.items):
                    for line in lines_of(b):
                        if line[:2] == ("link", "add") and "netns" in line:
                            created[(line[-1], line[line.index("peer") + 2])] = number
                        dev = line[line.index("dev") + 1] if "dev" in line else None
                        if (b.netns, dev) in created:
                            assert number > created[(b.netns, dev)], (line, b.netns)

    def test_the_firewall_comes_last_on_the_host(self) -> None:
        stages = batch.stages(lower.lower(spec.load("specs/port-mapping.yaml")))
        last = stages[-1]
        assert not last.netns and last.host
        assert all(isinstance(i, batch.Single) for i in last.host)
        assert last.host[0].cmd.argv[0] == "iptables"  # type: ignore[union-attr]

    def test_brctl_commands_split_the_host_batch_in_order(self) -> None:
        (stage,) = batch.stages(lower.lower(spec.load("specs/walkthrough.yaml")), "brctl")
        kinds = ["batch" if isinstance(i, batch.Batch) else i.cmd.argv[0] for i in stage.host]
        assert kinds == ["brctl", "batch", "brctl", "batch"]

    def test_a_command_inside_a_namespace_that_is_no_batch_line_runs_in_its_job(self) -> None:
        """`ip netns exec NS sysctl ...` and a wait on `ip -n NS ...` run as written, in
        order among the namespace's batches; `-6` lines get an `ip -6 -batch` of their own."""
        built = lower.lower(spec.load("specs/dual-stack.yaml"))
        web = next(job for job in batch.stages(built)[0].netns if job.netns == "web")
        kinds = [
            i.cmd.argv[3:5] if isinstance(i, batch.Single) else ("batch", *i.opts)
            for i in web.items
        ]
        assert kinds[:5] == [
            ("batch",),
            ("web", "sysctl"),
            ("batch", "-6"),
            ("batch",),
            ("batch", "-6"),
        ]
        wait = ops.WaitDad("eth0", IPv6Interface("fd00::2/64"), "web")
        stages = batch.stages(
            [ops.AddNetns("web", "s"), ops.AddAddress("eth0", wait.address, "web"), wait]
        )
        (job,) = stages[0].netns
        assert isinstance(job.items[-1], batch.Single)
        assert job.items[-1].cmd == dialects.commands(wait)[0]

    def test_nothing_to_do(self) -> None:
        s = loads({"version": 1, "name": "empty"})
        assert batch.stages(lower.lower(s)) == []
        assert "# nothing to do" in batch_script(s)
        assert "# nothing to do" in batch_script(s, kind="teardown")


# -- stages in parts ----------------------------------------------------------------------


def many(n: int, name: str = "many") -> m.Spec:
    """n containers on one bridge: the benchmark's shape."""
    return loads(
        {
            "version": 1,
            "name": name,
            "bridges": {"br0": {"subnet": "10.44.0.0/16"}},
            "containers": {f"c{i}": {} for i in range(n)},
        }
    )


def shares(a: set[batch.Resource], b: set[batch.Resource]) -> bool:
    """Whether two commands' resources overlap (as batch._Clock reads them)."""
    return any(
        ns == other and batch.ANY in (dev, dev2) or (ns, dev) == (other, dev2)
        for ns, dev in a
        for other, dev2 in b
    )


def resources(
    items: list[batch.Batch | batch.Single], built: list[ops.Op], dialect: str
) -> set[batch.Resource]:
    """What a list of batches and commands touches, each command read as stages() reads it
    (a command that is no batch line: as every op that writes it)."""
    ops_of: dict[tuple[str, ...], list[ops.Op]] = {}
    for op in built:
        for c in dialects.commands(op, dialect):
            ops_of.setdefault(c.argv, []).append(op)
    out: set[batch.Resource] = set()
    for item in items:
        if isinstance(item, batch.Single):
            netns = batch.split(item.cmd.argv)[0]
            for op in ops_of[item.cmd.argv]:
                out |= batch.touches(netns, None, op, item.cmd.argv)
        else:
            for line in lines_of(item):
                out |= batch.touches(item.netns, line, built[0])
    return out


def check_parts(built: list[ops.Op], dialect: str) -> None:
    """A part's jobs touch nothing that a later part's host commands touch (they may
    run alongside), and every command is planned once, each context in plain order."""
    stages = batch.stages(built, dialect)
    for stage in stages:
        for k, part in enumerate(stage.parts):
            jobs = resources([i for job in part.netns for i in job.items], built, dialect)
            for later in stage.parts[k + 1 :]:
                assert not shares(jobs, resources(later.host, built, dialect))
    plain = [c.argv for op in built for c in dialects.commands(op, dialect)]
    ours = planned(stages, dialect)
    assert Counter(ours) == Counter(plain)
    for netns in {batch.split(argv)[0] for argv in plain}:
        assert [a for a in ours if batch.split(a)[0] == netns] == [
            a for a in plain if batch.split(a)[0] == netns
        ]


class TestParts:
    def test_many_namespaces_go_in_parts_of_32(self) -> None:
        built = lower.lower(many(70))
        (stage,) = batch.stages(built)
        assert [len(part.netns) for part in stage.parts] == [32, 32, 6]
        made = set()
        for part in stage.parts:
            made |= {
                line[2] for b in part.host for line in lines_of(b) if line[:2] == ("netns", "add")
            }
            assert {job.netns for job in part.netns} <= made  # made in this part or before
        check_parts(built, "iproute2")

    def test_a_spec_lines_host_commands_stay_in_one_part(self) -> None:
        (stage,) = batch.stages(lower.lower(many(70)))
        seen: dict[str, int] = {}
        for k, part in enumerate(stage.parts):
            for b in part.host:
                assert isinstance(b, batch.Batch)
                for g in b.groups:
                    assert seen.setdefault(g.comment, k) == k, g.comment

    def test_up_to_32_namespaces_are_one_part(self) -> None:
        (stage,) = batch.stages(lower.lower(many(32)))
        assert len(stage.parts) == 1
        assert "part" not in batch_script(many(32)).split("set -euo pipefail")[1]

    @pytest.mark.parametrize("dialect", DIALECTS)
    @pytest.mark.parametrize("stem", STEMS)
    def test_every_example_in_parts_of_one_namespace(
        self, stem: str, dialect: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(batch, "PART", 1)
        check_parts(lower.lower(spec.load(f"specs/{stem}.yaml")), dialect)

    @pytest.mark.parametrize("dialect", DIALECTS)
    def test_scripts_in_parts_pass_bash_n_and_shellcheck(
        self, dialect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(batch, "PART", 1)
        scripts = {stem: script_for(stem, dialect, "setup") for stem in STEMS}
        scripts["many"] = batch_script(many(70), dialect)
        assert all("netgen_host_wait" in text for text in scripts.values() if "part 2" in text)
        paths = write_scripts(tmp_path, scripts)
        bash_n(paths)
        shellcheck(paths)

    def test_a_stage_in_parts_matches_snapshot(
        self, monkeypatch: pytest.MonkeyPatch, snapshot: SnapshotAssertion
    ) -> None:
        monkeypatch.setattr(batch, "PART", 2)
        assert batch_script(many(5, "parts")) == snapshot


# -- teardown -----------------------------------------------------------------------------


class TestTeardown:
    def test_namespaces_go_in_one_batch_with_the_host_ends_of_their_veths(self) -> None:
        built = lower.lower(spec.load("specs/multihomed.yaml"))
        plan = batch.teardown(built)
        app = next(d for d in plan.drops if d.netns == "app")
        assert app.line == ("netns", "delete", "app")
        assert app.guard == ("netgen_marked_in", "app", "lo", "netgen:multihomed")
        hosts = {op.name for op in built if isinstance(op, ops.AddVeth) and op.peer_netns == "app"}
        assert set(app.host_links) == hosts and "app-back" in hosts

    def test_guards_are_the_dialects_checks_without_a_process(self) -> None:
        host = Cmd(
            ("ip", "link", "delete", "dev", "A"),
            guard=("grep", "-qsxF", "netgen:s", "/sys/class/net/A/ifalias"),
        )
        assert batch.fast_guard(host).guard == (
            "netgen_marked",
            "/sys/class/net/A/ifalias",
            "netgen:s",
        )
        inside = Cmd(
            ("ip", "netns", "delete", "web"),
            guard=(
                "ip",
                "netns",
                "exec",
                "web",
                "grep",
                "-qsxF",
                "netgen:s",
                "/sys/class/net/lo/ifalias",
            ),
        )
        assert batch.fast_guard(inside).guard == ("netgen_marked_in", "web", "lo", "netgen:s")
        other = Cmd(("rmdir", "d"), guard=("test", "-d", "d"))
        assert batch.fast_guard(other) == other

    def test_the_rest_is_the_plain_teardown_minus_namespaces_and_links_in_them(self) -> None:
        for stem in STEMS:
            built = lower.lower(spec.load(f"specs/{stem}.yaml"))
            plan = batch.teardown(built)
            dropped = {d.netns for d in plan.drops}
            plain = [
                c.argv
                for op in ops.teardown(built)
                if not isinstance(op, ops.DelNetns)
                and not (isinstance(op, ops.DelVeth) and op.netns in dropped)
                for c in dialects.commands(op)
            ]
            assert [c.argv for _, cmds in plan.rest for c in cmds] == plain, stem

    def test_a_link_inside_a_kept_namespace_is_deleted_before_the_batch(self) -> None:
        script = script_for("point-to-point", "iproute2", "teardown")
        kept = script.index("if netgen_kept c1 c2 && netgen_marked_in c1 A netgen:point-to-point")
        assert script.index("netgen_drop c1 ") < kept < script.index("\nnetgen_drop_all\n")

    def test_without_a_namespace_to_delete_links_go_in_teardown_order(self) -> None:
        s = loads(
            {
                "version": 1,
                "name": "adopted",
                "containers": {
                    "a": {"network": "none", "pid": 1, "netns": "pa"},
                    "b": {"network": "none", "pid": 1, "netns": "pb"},
                },
                "links": [{"endpoints": ["a:x", "b:y"]}],
            }
        )
        plan = batch.teardown(lower.lower(s))
        assert plan.drops == [] and plan.kept == []
        argvs = [c.argv for _, cmds in plan.rest for c in cmds]
        assert argvs[0] == ("ip", "-n", "pa", "link", "delete", "dev", "x")
        assert "netgen_drop_all" not in batch_script(s, kind="teardown")


# -- against the kernel -------------------------------------------------------------------


def run(
    sb: Sandbox, script: str, tmp_path: Path, name: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run a script as a user would (`bash FILE`), with extra environment variables."""
    path = tmp_path / f"{name}.sh"
    path.write_text(script)
    return sb.run(["bash", str(path)], check=False, timeout=300, env={**os.environ, **env})


def ok(res: subprocess.CompletedProcess[str]) -> None:
    assert (res.returncode, res.stderr) == (0, ""), res.stderr


@kernel
@pytest.mark.parametrize("part", [batch.PART, 1], ids=["parts", "parts-of-1"])
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("spec_file", SPEC_FILES, ids=STEMS)
def test_batch_reaches_the_plain_scripts_state_and_tears_down(
    sandbox: Sandbox,
    tmp_path: Path,
    spec_file: Path,
    dialect: str,
    part: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Also with one namespace a part: every example's stages then run in parts."""
    monkeypatch.setattr(batch, "PART", part)
    s = spec.load(spec_file.relative_to(ROOT))
    built = lower.lower(s)
    with Sandbox.start() as plain_sb:
        prepare_host(plain_sb, s)
        ok(run(plain_sb, render.render(s, built, dialect=dialect), tmp_path, "plain"))
        plain = plain_sb.state()

    prepare_host(sandbox, s)
    before = sandbox.state()
    ok(run(sandbox, batch_script(s, dialect), tmp_path, "setup"))
    assert sandbox.state() == plain
    assert plain != before, "the spec builds something"

    teardown = batch_script(s, dialect, "teardown")
    ok(run(sandbox, teardown, tmp_path, "teardown"))
    assert sandbox.state() == before
    ok(run(sandbox, teardown, tmp_path, "again"))  # nothing left: still succeeds
    assert sandbox.state() == before


@kernel
def test_a_failing_namespace_batch_fails_the_script_once_the_running_jobs_end(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    s = loads(
        {
            "version": 1,
            "name": "fails",
            "bridges": {"br0": {"subnet": "10.50.0.0/24"}},
            "containers": {
                "a": {},
                "b": {"routes": [{"to": "10.60.0.0/16", "via": "10.70.0.1"}]},  # unreachable
                **{f"c{i}": {} for i in range(6)},
            },
        }
    )
    res = run(sandbox, batch_script(s), tmp_path, "setup", NETGEN_JOBS="3")
    assert res.returncode != 0
    assert "netgen: the batch in netns b failed (exit 1)" in res.stderr
    state = sandbox.state()

    def wired(ns: str) -> bool:
        return any(a["local"].startswith("10.50.0.") for a in state["namespaces"][ns]["addresses"])

    # 3 at a time: a, b and c0 start; a ends, c1 starts; b has failed, so c0 and c1 are
    # waited for (they ran to the end) and nothing more starts.
    assert [wired(ns) for ns in ("a", "c0", "c1", "c2", "c5")] == [True, True, True, False, False]


def host_end(s: m.Spec, netns: str) -> str:
    """The host end of the veth into `netns`."""
    (name,) = (
        op.name
        for op in lower.lower(s)
        if isinstance(op, ops.AddVeth) and op.netns is None and op.peer_netns == netns
    )
    return name


@kernel
def test_a_failing_host_part_in_the_background_fails_the_script_once_all_ends(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch, "PART", 1)
    s = many(4, "hostfails")
    taken = host_end(s, "c1")  # part 2 on the host creates it: "File exists"
    sandbox.run(["ip", "link", "add", "name", taken, "type", "veth", "peer", "name", "x"])
    res = run(sandbox, batch_script(s), tmp_path, "setup")
    assert res.returncode != 0
    assert "netgen: the host's batch in the background failed (exit 1)" in res.stderr
    state = sandbox.state()
    assert sorted(state["namespaces"]) == ["c0", "c1"]  # part 3 never started
    assert any(a["local"] == "10.44.0.2" for a in state["namespaces"]["c0"]["addresses"])


@kernel
def test_a_failing_job_waits_for_the_host_part_in_the_background(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """c0's job fails while part 2's host commands run: they still run to the end."""
    monkeypatch.setattr(batch, "PART", 1)
    s = loads(
        {
            "version": 1,
            "name": "jobfails",
            "bridges": {"br0": {"subnet": "10.44.0.0/24"}},
            "containers": {
                "c0": {"routes": [{"to": "10.60.0.0/16", "via": "10.70.0.1"}]},  # unreachable
                "c1": {},
                "c2": {},
            },
        }
    )
    res = run(sandbox, batch_script(s), tmp_path, "setup", NETGEN_JOBS="1")
    assert res.returncode != 0
    assert "netgen: the batch in netns c0 failed (exit 1)" in res.stderr
    (link,) = json.loads(sandbox.run(["ip", "-j", "link", "show", "dev", host_end(s, "c1")]).stdout)
    assert link["master"] == "br0" and "UP" in link["flags"]  # the last command of part 2
    assert "c2" not in sandbox.state()["namespaces"]


@kernel
def test_nonsense_in_netgen_jobs_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    script = batch_script(spec.load("specs/walkthrough.yaml"))
    before = sandbox.state()
    for jobs in ("0", "two", "1;reboot", "a[$(id)]"):
        res = run(sandbox, script, tmp_path, "setup", NETGEN_JOBS=jobs)
        assert res.returncode == 2 and "NETGEN_JOBS must be a positive number" in res.stderr
    assert sandbox.state() == before
    ok(run(sandbox, script, tmp_path, "setup", NETGEN_JOBS="1"))
    assert sandbox.ping("web", "172.17.42.1")


@kernel
def test_teardown_deletes_the_links_of_a_namespace_a_process_still_holds(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """`ip netns delete` only unnames it: the settle loop gives up, the guards delete."""
    s = spec.load("specs/walkthrough.yaml")
    before = sandbox.state()
    ok(run(sandbox, batch_script(s), tmp_path, "setup"))
    holder = sandbox.spawn(["sleep", "600"], netns="web")
    ok(run(sandbox, batch_script(s, kind="teardown"), tmp_path, "teardown"))
    assert sandbox.state() == before
    assert holder.poll() is None


@kernel
def test_teardown_spares_a_namespace_without_the_mark(sandbox: Sandbox, tmp_path: Path) -> None:
    s = spec.load("specs/walkthrough.yaml")
    sandbox.run(["ip", "netns", "add", "web"])
    sandbox.run(["ip", "link", "add", "name", "A", "type", "veth", "peer", "name", "B"])
    before = sandbox.state()
    ok(run(sandbox, batch_script(s, kind="teardown"), tmp_path, "teardown"))
    assert sandbox.state() == before


@kernel
def test_ip_reads_quoted_tokens_as_the_port_says(sandbox: Sandbox) -> None:
    """The port of ip's batch reader above matches the real one on the tricky cases."""
    tokens = ["a b", 'say "hi"', "it's", "back\\", "", "plain:x.y-z"]
    script = "".join(
        f"# alias {i}\nlink add name t{i} type bridge\nlink set dev t{i} alias "
        f"{batch.batch_token(t)}\n"
        for i, t in enumerate(tokens)
    )
    sandbox.run(["ip", "-batch", "-"], input=script)
    for i, token in enumerate(tokens):
        (link,) = json.loads(sandbox.run(["ip", "-j", "link", "show", "dev", f"t{i}"]).stdout)
        assert link.get("ifalias", "") == token
        assert ip_reads(batch.batch_line(["alias", token])) == ["alias", token]


def resolved(st: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """`st` without the veth peers that state() could not name in either state.

    state() names a peer by matching interface indexes; when indexes in two namespaces
    happen to coincide it reports {"netns": "?"}, which says nothing about the build.
    """
    st = json.loads(json.dumps(st))
    for ns, ns_state in st["namespaces"].items():
        theirs = {link["ifname"]: link for link in other["namespaces"][ns]["links"]}
        for link in ns_state["links"]:
            peer = theirs.get(link["ifname"], {}).get("link")
            if "?" in ((link["link"] or {}).get("netns"), (peer or {}).get("netns")):
                link["link"] = "?"
    return st


@kernel
def test_a_mix_of_legs_links_files_and_an_adopted_namespace(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Plain and batch scripts, one after the other in one sandbox (same PID to adopt).

    The link from `web` (deleted with its namespace) to `held` (adopted: only unnamed)
    must be deleted explicitly, before `web` goes, or its end in `held` would linger.
    """
    proc, pid = start_container(sandbox)
    s = loads(
        {
            "version": 1,
            "name": "mixed",
            "bridges": {"br0": {"subnet": "10.77.0.0/24", "mtu": 1400}},
            "containers": {
                "web": {"hostname": "web", "dns": {"nameservers": ["10.77.0.1"]}},
                "adopted": {"network": "br0", "pid": int(pid), "netns": "held"},
                "solo": {"network": "none"},
            },
            "links": [
                {
                    "endpoints": ["web:p0", "adopted:p0"],
                    "addresses": ["10.66.0.1/32", "10.66.0.2/32"],
                },
                {"endpoints": ["solo:p1", "web:p1"]},
            ],
        }
    )
    built = lower.lower(s)
    before = sandbox.state()
    ok(run(sandbox, render.render(s, built), tmp_path, "plain"))
    plain = sandbox.state()
    ok(run(sandbox, render.render(s, ops.teardown(built), teardown=True), tmp_path, "plain-down"))
    assert sandbox.state() == before

    ok(run(sandbox, batch_script(s), tmp_path, "setup"))
    assert resolved(sandbox.state(), plain) == resolved(plain, sandbox.state())
    assert sandbox.ping("held", "10.66.0.1") and sandbox.ping("web", "10.77.0.3")
    ok(run(sandbox, batch_script(s, kind="teardown"), tmp_path, "teardown"))
    assert sandbox.state() == before
    inside = sandbox.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-j", "link", "show"])
    assert [link["ifname"] for link in json.loads(inside.stdout)] == ["lo"]
    assert proc.poll() is None
