"""`netgen render --from OLD NEW`: the script that turns a host built from OLD into NEW.

The migration is planned offline (a model of the host OLD built) by apply's own
planner, so the pure tests pin its shape: from nothing it is the setup, to nothing
the teardown, from a spec to itself nothing; removals come first. The kernel tests
prove it in the sandbox: apply OLD, run the migration, and the sandbox is in the
state a fresh apply of NEW leaves in another sandbox.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from scriptcheck import bash_n, shellcheck, single_host_specs, write_scripts
from syrupy.assertion import SnapshotAssertion

from netgen import lower, migrate, ops, render, spec
from netgen import model as m
from netgen import ops as o
from netgen.errors import UsageError
from netgen.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILES = single_host_specs(ROOT / "specs")
NETGEN = [sys.executable, "-m", "netgen"]

# (old, new) pairs, paths relative to the repo root: what the kernel tests migrate.
PAIRS = [
    ("tests/migrate/a.yaml", "tests/migrate/b.yaml"),
    ("tests/migrate/b.yaml", "tests/migrate/a.yaml"),
    ("specs/multihomed.yaml", "tests/migrate/multihomed.yaml"),
    ("specs/custom-bridge.yaml", "tests/migrate/custom-bridge.yaml"),
    ("specs/walkthrough.yaml", "tests/migrate/walkthrough.yaml"),
    ("tests/migrate/walkthrough.yaml", "specs/walkthrough.yaml"),
    ("specs/port-mapping.yaml", "tests/migrate/port-mapping.yaml"),
    ("tests/migrate/port-mapping.yaml", "specs/port-mapping.yaml"),
    ("specs/point-to-point.yaml", "tests/migrate/point-to-point.yaml"),
    ("specs/access-control.yaml", "specs/access-control.yaml"),
]

kernel = pytest.mark.kernel


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec paths in scripts are as given: render from the repo root, as a user would."""
    monkeypatch.chdir(ROOT)


def steps(old: str, new: str) -> list[o.Op]:
    return migrate.ops(migrate.migrate(spec.load(old), spec.load(new)))


def script(old: str, new: str, dialect: str = "iproute2") -> str:
    a, b = spec.load(old), spec.load(new)
    return render.render_migration(a, b, migrate.ops(migrate.migrate(a, b)), dialect=dialect)


def empty(name: str) -> m.Spec:
    return spec.loads(f"version: 1\nname: {name}\n", "empty.yaml")


def pair_id(pair: tuple[str, str]) -> str:
    return "-to-".join(Path(p).parent.name + "." + Path(p).stem for p in pair)


# -- offline ------------------------------------------------------------------------


class TestShape:
    @pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
    def test_from_nothing_is_the_setup(self, path: Path) -> None:
        s = spec.load(path)
        assert migrate.ops(migrate.migrate(empty(s.name), s)) == lower.lower(s)

    @pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
    def test_to_nothing_is_the_teardown(self, path: Path) -> None:
        s = spec.load(path)
        assert migrate.ops(migrate.migrate(s, empty(s.name))) == ops.teardown(lower.lower(s))

    @pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
    def test_to_itself_is_nothing(self, path: Path) -> None:
        s = spec.load(path)
        assert migrate.migrate(s, s).steps == []
        text = render.render_migration(s, s, [])
        assert text.endswith("\n# nothing to do\n")

    def test_removals_come_first(self) -> None:
        todo = steps("tests/migrate/a.yaml", "tests/migrate/b.yaml")
        kinds = ["-" if type(op).__name__.startswith(("Del", "Remove")) else "+" for op in todo]
        assert kinds == sorted(kinds, key="-+".index)
        removed = [op for op in todo if kinds[todo.index(op)] == "-"]
        assert [type(op).__name__ for op in removed] == ["DelFirewall", "DelVeth", "DelVeth"]
        # the link between a and b, then web's veth (its address changed)
        assert [getattr(op, "name", None) for op in removed[1:]] == ["p0", "v2703c2-web"]

    def test_an_address_change_replaces_the_smallest_unit(self) -> None:
        """web's veth, with what configures it, not web's namespace."""
        todo = steps("tests/migrate/a.yaml", "tests/migrate/b.yaml")
        assert not any(isinstance(op, (o.AddNetns, o.DelNetns)) and op.name == "web" for op in todo)
        assert o.DelVeth("v2703c2-web", None, "migrate") in todo
        assert o.AddAddress("eth0", m.IPv4Interface("10.90.0.20/24"), "web") in todo

    def test_a_route_via_a_replaced_veth_comes_back(self) -> None:
        """The kernel drops a route with the link it goes through, `dev` given or not."""
        todo = steps("specs/multihomed.yaml", "tests/migrate/multihomed.yaml")
        route = o.AddRoute("db", "10.10.0.0/24", m.IPv4Address("10.20.0.10"))
        assert o.DelVeth("vbf1a1b-db", None, "multihomed") in todo
        assert todo[-1] == route

    def test_a_namespace_that_goes_takes_its_veths(self) -> None:
        """A route without dev belongs to the namespace: removing one rebuilds the
        namespace, and the veth into it comes back though the veth itself is unchanged."""
        old = spec.load("specs/multihomed.yaml")
        new = spec.loads(
            (ROOT / "specs/multihomed.yaml").read_text().split("    routes:\n      - to: 10.10")[0],
            "new.yaml",
        )
        todo = migrate.ops(migrate.migrate(old, new))
        assert o.DelNetns("db", "multihomed") in todo
        assert not any(isinstance(op, o.DelVeth) for op in todo)  # it goes with db
        added = [op for op in todo if isinstance(op, o.AddVeth)]
        assert [(op.name, op.peer_netns) for op in added] == [
            (c.interfaces[0].host_ifname, "db") for c in new.containers if c.name == "db"
        ]

    def test_a_bridge_built_again_gets_its_ports_back(self) -> None:
        todo = steps("specs/walkthrough.yaml", "tests/migrate/walkthrough.yaml")
        assert todo[0] == o.DelBridge("docker0", "walkthrough")
        assert o.SetMaster("A", "docker0") in todo  # web's veth stays, unenslaved by the delete
        assert not any(isinstance(op, o.AddVeth) and op.name == "A" for op in todo)

    def test_adopting_a_process_is_not_looked_up_offline(self) -> None:
        """A migration may be rendered on another machine: its pids mean nothing here."""
        base = "version: 1\nname: adopt\nbridges: {br0: {subnet: 10.0.0.0/24}}\n"
        old = spec.loads(base + "containers: {web: {}}\n", "old.yaml")
        new = spec.loads(base + "containers: {web: {pid: 4194304}}\n", "new.yaml")
        todo = migrate.ops(migrate.migrate(old, new))
        assert o.AdoptNetns("web", 4194304, "adopt") in todo

    def test_the_names_must_match(self) -> None:
        with pytest.raises(UsageError, match="netgen marks what it builds with the spec's name"):
            migrate.migrate(spec.load("specs/walkthrough.yaml"), empty("other"))

    def test_a_bridge_that_becomes_external_is_refused(self) -> None:
        """Built by netgen in OLD, so removed; NEW attaches to it, so it must exist."""
        old = spec.loads("version: 1\nname: x\nbridges: {br0: {subnet: 10.0.0.0/24}}\n", "o.yaml")
        new = spec.loads(
            "version: 1\nname: x\nbridges: {br0: {subnet: 10.0.0.0/24, external: true}}\n"
            "containers: {web: {}}\n",
            "n.yaml",
        )
        with pytest.raises(UsageError, match="bridge br0 does not exist on this host"):
            migrate.migrate(old, new)


class TestScript:
    @pytest.mark.parametrize("dialect", ["iproute2", "brctl"])
    def test_snapshot(self, dialect: str, snapshot: SnapshotAssertion) -> None:
        """Add a container, change an address, remove a link (and the firewall follows)."""
        text = script("tests/migrate/a.yaml", "tests/migrate/b.yaml", dialect)
        assert text == script("tests/migrate/a.yaml", "tests/migrate/b.yaml", dialect)
        assert text == snapshot

    def test_header_names_both_specs(self) -> None:
        a, b = spec.load("tests/migrate/a.yaml"), spec.load("tests/migrate/b.yaml")
        head = script("tests/migrate/a.yaml", "tests/migrate/b.yaml").splitlines()[:13]
        assert head[1] == "# netgen migration script for spec 'migrate'"
        assert (
            f"# Migration from tests/migrate/a.yaml (sha256 {a.sha256[:12]}) "
            f"to tests/migrate/b.yaml (sha256 {b.sha256[:12]}):"
        ) in head
        assert f"# Old spec sha256: {a.sha256}" in head
        assert f"# sha256:  {b.sha256}" in head

    def test_every_removal_is_guarded(self) -> None:
        text = script("tests/migrate/a.yaml", "tests/migrate/b.yaml")
        deletes = [line for line in text.splitlines() if re.search(r"\b(delete|del)\b", line)]
        assert deletes and all(line.startswith("if ") for line in deletes)

    def test_shellcheck(self, tmp_path: Path) -> None:
        scripts = {
            f"{pair_id(pair)}-{dialect}": script(*pair, dialect)
            for pair in PAIRS
            for dialect in ("iproute2", "brctl")
            if "mcast_snooping" not in Path(pair[0]).read_text() + Path(pair[1]).read_text()
            or dialect == "iproute2"
        }
        for path in SPEC_FILES:
            s = spec.load(path)
            for name, (a, b) in {"up": (empty(s.name), s), "down": (s, empty(s.name))}.items():
                todo = migrate.ops(migrate.migrate(a, b))
                scripts[f"{path.stem}-{name}"] = render.render_migration(a, b, todo)
        paths = write_scripts(tmp_path, scripts)
        bash_n(paths)
        shellcheck(paths)


class TestCli:
    @pytest.fixture
    def run(self, netgen: Any) -> Any:
        return netgen

    def test_renders_the_migration(self, run: Any) -> None:
        code, out, err = run("render", "--from", "tests/migrate/a.yaml", "tests/migrate/b.yaml")
        assert (code, out, err) == (0, script("tests/migrate/a.yaml", "tests/migrate/b.yaml"), "")

    def test_nothing_to_do(self, run: Any) -> None:
        code, out, err = run("render", "--from", "specs/walkthrough.yaml", "specs/walkthrough.yaml")
        assert code == 0 and out.endswith("# nothing to do\n")
        assert err == (
            "netgen: nothing to do: specs/walkthrough.yaml and specs/walkthrough.yaml "
            "build the same\n"
        )

    def test_to_a_file(self, run: Any, tmp_path: Path) -> None:
        out_file = tmp_path / "migrate.sh"
        code, out, _ = run(
            "render", "--from", "tests/migrate/a.yaml", "tests/migrate/b.yaml", "-o", str(out_file)
        )
        assert (code, out) == (0, "")
        assert out_file.read_text() == script("tests/migrate/a.yaml", "tests/migrate/b.yaml")

    @pytest.mark.parametrize("flag", ["--teardown", "--batch"])
    def test_not_with(self, run: Any, flag: str) -> None:
        code, out, err = run(
            "render", "--from", "tests/migrate/a.yaml", "tests/migrate/b.yaml", flag
        )
        assert (code, out) == (2, "")
        assert err.startswith(f"netgen: error: --from and {flag} cannot be combined")

    def test_different_names(self, run: Any) -> None:
        code, out, err = run("render", "--from", "specs/walkthrough.yaml", "specs/dns.yaml")
        assert (code, out) == (2, "")
        assert err.startswith(
            "netgen: error: cannot migrate from spec 'walkthrough' (specs/walkthrough.yaml) "
            "to spec 'dns' (specs/dns.yaml): netgen marks what it builds with the spec's name"
        )

    def test_a_bad_old_spec(self, run: Any, tmp_path: Path) -> None:
        bad = tmp_path / "old.yaml"
        bad.write_text("version: 2\n")
        code, out, err = run("render", "--from", str(bad), "specs/walkthrough.yaml")
        assert (code, out) == (2, "")
        assert "old.yaml:1:10: version: unsupported version 2" in err


# -- against a real kernel, in the sandbox --------------------------------------------


def canonical(state: dict[str, Any]) -> dict[str, Any]:
    """The sandbox state with nftables text compared as sets of chains.

    A chain created again (a firewall replaced) is listed after the chains that stayed,
    and iptables-nft leaves an emptied built-in chain behind (see firewall.py): neither
    changes what the firewall does.
    """
    out = dict(state)
    for where in ("root", "namespaces"):
        if where == "root":
            out["root"] = _nft_sets(state["root"])
        else:
            out["namespaces"] = {k: _nft_sets(v) for k, v in state["namespaces"].items()}
    return out


def _nft_sets(ns: dict[str, Any]) -> dict[str, Any]:
    text = ns.get("nftables")
    if not text:
        return ns
    tables: dict[str, set[str]] = {}
    for block in re.split(r"\n(?=table )", text):
        head, _, body = block.partition("\n")
        chains = set()
        for chain in re.split(r"\n\n", body):
            lines = [line.strip() for line in chain.splitlines() if line.strip() not in ("", "}")]
            if len(lines) > 2 or (lines and not lines[0].startswith("chain ")):
                chains.add("\n".join(lines))
        tables[head] = chains
    return {**ns, "nftables": tables}


def migrated_state(sb: Sandbox, old: str, new: str, tmp_path: Path, dialect: str) -> Any:
    sb.run([*NETGEN, "apply", old, "--dialect", dialect])
    path = tmp_path / "migrate.sh"
    path.write_text(script(old, new, dialect))
    done = sb.run(["bash", str(path)], check=False)
    assert done.returncode == 0, done.stderr
    return canonical(sb.state())


@kernel
@pytest.mark.parametrize("pair", PAIRS, ids=[pair_id(p) for p in PAIRS])
def test_migration_reaches_a_fresh_apply(
    sandbox: Sandbox, pair: tuple[str, str], tmp_path: Path
) -> None:
    old, new = pair
    got = migrated_state(sandbox, old, new, tmp_path, "iproute2")
    with Sandbox.start() as fresh:
        fresh.run([*NETGEN, "apply", new])
        want = canonical(fresh.state())
    assert got == want
    # netgen's record still names OLD (the script did not touch it): apply and destroy
    # of NEW still do the right thing
    sandbox.run([*NETGEN, "apply", new])
    assert canonical(sandbox.state()) == want
    sandbox.run([*NETGEN, "destroy", new])
    state = sandbox.state()
    assert (state["netns"], state["namespaces"], state["etc_netns"]) == ([], {}, {})
    assert [link["ifname"] for link in state["root"]["links"]] == ["lo"]


@kernel
def test_brctl_migration(sandbox: Sandbox, tmp_path: Path) -> None:
    old, new = "tests/migrate/a.yaml", "tests/migrate/b.yaml"
    got = migrated_state(sandbox, old, new, tmp_path, "brctl")
    with Sandbox.start() as fresh:
        fresh.run([*NETGEN, "apply", new])
        assert got == canonical(fresh.state())


@kernel
def test_nothing_to_do_changes_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.run([*NETGEN, "apply", "tests/migrate/a.yaml"])
    before = sandbox.state()
    path = tmp_path / "same.sh"
    path.write_text(script("tests/migrate/a.yaml", "tests/migrate/a.yaml"))
    sandbox.run(["bash", str(path)])
    assert sandbox.state() == before
