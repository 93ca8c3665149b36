"""`netgen graph`: Mermaid and DOT for every spec, Graphviz images, and their failures.

Snapshots pin the exact text (a snapshot change is a behaviour change: read the diff
before `--snapshot-update`); the other tests check what must hold for any spec:
same bytes every run, DOT that Graphviz accepts, the facts a reader looks for.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from scriptcheck import require
from syrupy.assertion import SnapshotAssertion

from netgen import cli, graph, spec

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILES = sorted((ROOT / "specs").glob("*.yaml"))
STEMS = [p.stem for p in SPEC_FILES]

Run = Callable[..., tuple[int, bytes, str]]


@pytest.fixture
def netgen(monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]) -> Run:
    """Run `netgen ARGS...` through the real entry point: (exit code, stdout bytes, stderr)."""
    monkeypatch.chdir(ROOT)

    def run(*args: str) -> tuple[int, bytes, str]:
        monkeypatch.setattr(sys, "argv", ["netgen", *args])
        with pytest.raises(SystemExit) as info:
            cli.main()
        out, err = capsysbinary.readouterr()
        code = info.value.code
        return (code if isinstance(code, int) else 1), out, err.decode()

    return run


def mermaid_of(stem: str) -> str:
    return graph.mermaid(spec.load(ROOT / "specs" / f"{stem}.yaml"))


def dot_of(stem: str) -> str:
    return graph.dot(spec.load(ROOT / "specs" / f"{stem}.yaml"))


def mermaid_nodes(text: str) -> dict[str, str]:
    """Node id -> label text (lines joined by newlines) of a Mermaid flowchart."""
    out = {}
    for m in re.finditer(r'^ {2,4}(\w+)[\[({/]+"(.*)"[\])}/]+$', text, re.M):
        out[m[1]] = m[2].replace("<br/>", "\n")
    return out


def mermaid_edges(text: str) -> list[tuple[str, str, str, str]]:
    """(from id, arrow, label, to id) of every edge of a Mermaid flowchart."""
    return re.findall(r'^  (\w+) ([-.>=]+)\|"(.*)"\| (\w+)$', text, re.M)


def mermaid_groups(text: str) -> dict[str, tuple[str, list[str]]]:
    """Subgraph id -> (title, ids of the nodes declared in it) of a Mermaid flowchart."""
    out = {}
    for m in re.finditer(r'^  subgraph (\w+)\["(.*)"\]\n((?:    .*\n)*)  end$', text, re.M):
        out[m[1]] = (m[2].replace("<br/>", "\n"), list(mermaid_nodes(m[3])))
    return out


class TestMermaid:
    @pytest.mark.parametrize("stem", STEMS)
    def test_snapshot(self, stem: str, snapshot: SnapshotAssertion) -> None:
        assert mermaid_of(stem) == snapshot

    @pytest.mark.parametrize("stem", STEMS)
    def test_every_line_is_a_node_an_edge_or_the_header(self, stem: str) -> None:
        lines = mermaid_of(stem).splitlines()
        assert lines[:2] == [f"%% netgen graph of spec {stem}", "flowchart TB"]
        text = "\n".join(lines) + "\n"
        groups = 2 * len(mermaid_groups(text))  # a subgraph line and its end
        assert len(mermaid_nodes(text)) + len(mermaid_edges(text)) + groups == len(lines) - 2

    def test_walkthrough(self) -> None:
        text = mermaid_of("walkthrough")
        nodes = mermaid_nodes(text)
        bridge = next(i for i, label in nodes.items() if label.startswith("docker0\n"))
        web = next(i for i, label in nodes.items() if label.startswith("web\n"))
        assert nodes[bridge] == "docker0\nsubnet 172.17.0.0/16\ngateway 172.17.42.1"
        assert "eth0 172.17.42.99/16" in nodes[web].splitlines()
        assert "netns web" in nodes[web].splitlines()
        assert mermaid_edges(text) == [(bridge, "---", "A ↔ eth0", web)]

    def test_network_modes_and_sharing(self) -> None:
        text = mermaid_of("net-modes")
        nodes = mermaid_nodes(text)
        ids = {label.split("\n")[0]: i for i, label in nodes.items()}
        assert nodes[ids["isolated"]] == "isolated\nnetns isolated\nnetwork: none"
        assert nodes[ids["tools"]] == "tools\nnetwork: host"
        # a container: chain ends in the namespace's owner, as the kernel sees it
        assert nodes[ids["logger"]] == "logger\nin web's netns web"
        edges = mermaid_edges(text)
        assert (ids["sidecar"], "-.->", "shares netns", ids["web"]) in edges
        assert (ids["logger"], "-.->", "shares netns", ids["web"]) in edges
        assert (ids["host"], "-.-", "network: host", ids["tools"]) in edges

    def test_point_to_point_link(self) -> None:
        text = mermaid_of("point-to-point")
        assert mermaid_edges(text) == [("c0", "---", "A 10.1.1.1/32 ↔ B 10.1.1.2/32", "c1")]
        assert mermaid_nodes(text)["c0"] == "c1\nnetns c1\nnetwork: none\nA 10.1.1.1/32"

    def test_uplink_is_a_nic_on_the_bridge(self) -> None:
        text = mermaid_of("uplink")
        assert mermaid_nodes(text)["n0"] == "em1\nhost NIC"
        assert ("n0", "---", "uplink", "b0") in mermaid_edges(text)

    def test_published_ports(self) -> None:
        text = mermaid_of("port-mapping")
        edges = [e for e in mermaid_edges(text) if e[0] == "host"]
        assert ("host", "-->", "host:3000/tcp → web:80", "c0") in edges
        assert ("host", "-->", "host:49153/tcp → web:80", "c0") in edges  # -P, allocated
        assert ("host", "-->", "198.51.100.1:8080/tcp → app:5000", "c1") in edges
        assert ("host", "-->", "host:5353/udp → dns:53", "c2") in edges

    def test_multihomed_container_has_a_leg_on_each_bridge(self) -> None:
        text = mermaid_of("multihomed")
        app = mermaid_nodes(text)["c0"].splitlines()
        assert app[2:] == ["network: front, back", "eth0 10.10.0.2/24", "eth1 10.20.0.10/24"]
        derived = spec.load(ROOT / "specs/multihomed.yaml").container("app").interfaces[0]
        assert [e for e in mermaid_edges(text) if e[3] == "c0"] == [
            ("b0", "---", f"{derived.host_ifname} ↔ eth0", "c0"),
            ("b1", "---", "app-back ↔ eth1", "c0"),
        ]

    def test_bridge_flags(self) -> None:
        assert "mtu 1400" in mermaid_nodes(mermaid_of("custom-bridge"))["b0"]
        assert "masquerade" in mermaid_nodes(mermaid_of("port-mapping"))["b0"]
        assert "icc off" in mermaid_nodes(mermaid_of("access-control"))["b0"]

    def test_escaping(self) -> None:
        assert graph._mermaid_text('a"b<c>#d&e') == "a#quot;b#lt;c#gt;#35;d#amp;e"


class TestHosts:
    """A multi-host spec: one group per host, each with its part of the bridges."""

    def test_one_group_per_host_in_hosts_order(self) -> None:
        text = mermaid_of("multihost")
        groups = mermaid_groups(text)
        nodes = mermaid_nodes(text)
        assert {gid: title for gid, (title, _) in groups.items()} == {
            "g0": "h1\n192.0.2.11",
            "g1": "h2\n192.0.2.12",
            "g2": "h3\n192.0.2.13",
        }
        names = {gid: [nodes[n].split("\n")[0] for n in ids] for gid, (_, ids) in groups.items()}
        assert names == {"g0": ["br0", "a", "d"], "g1": ["host h2", "br0", "b"], "g2": ["br0", "c"]}
        assert set(nodes) == {n for _, ids in groups.values() for n in ids}

    def test_each_host_has_its_own_gateway_and_the_tunnels_join_them(self) -> None:
        text = mermaid_of("multihost")
        nodes = mermaid_nodes(text)
        for part, gateway in (("b0_0", "10.10.0.1"), ("b0_1", "10.10.0.2"), ("b0_2", "10.10.0.3")):
            assert f"gateway {gateway}" in nodes[part].split("\n")
            assert nodes[part].endswith("vx100 vni 100")
        tunnels = [e for e in mermaid_edges(text) if e[1] == "==="]
        assert tunnels == [
            ("b0_0", "===", "VXLAN 100 udp/4789", "b0_1"),
            ("b0_0", "===", "VXLAN 100 udp/4789", "b0_2"),
            ("b0_1", "===", "VXLAN 100 udp/4789", "b0_2"),
        ]

    def test_veths_links_and_ports_stay_on_their_host(self) -> None:
        edges = mermaid_edges(mermaid_of("multihost"))
        veths = {(a, b) for a, arrow, label, b in edges if "↔ eth0" in label}
        assert veths == {("b0_0", "c0"), ("b0_1", "c1"), ("b0_2", "c2"), ("b0_0", "c3")}
        assert (
            "c0",
            "---",
            "eth1 10.20.0.1/32 ↔ eth1 10.20.0.2/32 (VXLAN 200)",
            "c2",
        ) in edges
        assert ("hn1", "-->", "host:8080/tcp → b:80", "c1") in edges

    def test_dot_clusters(self) -> None:
        text = dot_of("multihost")
        assert text.count('subgraph "cluster_') == 3
        assert '    graph [label="h2\\n192.0.2.12", style=rounded, color=gray50];' in text
        assert '    "hn1" [shape=box3d, label="host h2"];' in text

    def test_single_host_specs_have_no_groups(self) -> None:
        for stem in STEMS:
            if stem != "multihost":
                assert graph.build(spec.load(ROOT / "specs" / f"{stem}.yaml")).groups == ()


class TestDot:
    @pytest.mark.parametrize("stem", STEMS)
    def test_snapshot(self, stem: str, snapshot: SnapshotAssertion) -> None:
        assert dot_of(stem) == snapshot

    @pytest.mark.parametrize("stem", STEMS)
    def test_graphviz_accepts_it(self, stem: str) -> None:
        dot = require("dot")
        done = subprocess.run(
            [dot, "-Tsvg"], input=dot_of(stem), capture_output=True, text=True, timeout=60
        )
        assert (done.returncode, done.stderr) == (0, "")
        assert "<svg" in done.stdout

    def test_escaping(self) -> None:
        assert graph._dot_text('a"b\\c\nd') == 'a\\"b\\\\c\\nd'

    def test_same_facts_as_mermaid(self) -> None:
        text = dot_of("walkthrough")
        assert '"b0" [shape=hexagon' in text
        assert 'label="docker0\\nsubnet 172.17.0.0/16\\ngateway 172.17.42.1"' in text
        assert '"b0" -> "c0" [dir=none, label="A ↔ eth0"];' in text


class TestAwkwardNames:
    """Names that are Mermaid keywords or start with . - _ stay inside quoted labels."""

    SPEC = textwrap.dedent(
        """
        version: 1
        name: end
        bridges:
          -.x_:
            subnet: 10.9.0.0/24
          subgraph:
            subnet: 10.8.0.0/24
            uplinks: [--]
        containers:
          end:
            network: -.x_
            host_ifname: _.-
          o.x-1:
            network: subgraph
            ports: ["8080:80"]
          style:
            network: container:end
          click:
            network: host
        """
    )

    def test_ids_are_derived_and_names_quoted(self) -> None:
        text = graph.mermaid(spec.loads(self.SPEC, "awkward.yaml"))
        nodes = mermaid_nodes(text)
        assert set(nodes) == {"host", "n0", "b0", "b1", "c0", "c1", "c2", "c3"}
        assert nodes["b0"].startswith("-.x_\n") and nodes["c1"].startswith("o.x-1\n")
        assert ("b0", "---", "_.- ↔ eth0", "c0") in mermaid_edges(text)
        assert len(mermaid_nodes(text)) + len(mermaid_edges(text)) == len(text.splitlines()) - 2

    def test_graphviz_accepts_it(self) -> None:
        dot = require("dot")
        text = graph.dot(spec.loads(self.SPEC, "awkward.yaml"))
        done = subprocess.run([dot, "-Tsvg"], input=text, capture_output=True, text=True)
        assert (done.returncode, done.stderr) == (0, "")


class TestMermaidParser:
    """Mermaid's own parser, when node and the mermaid package are at hand (optional).

    Set NETGEN_MERMAID_MODULES to a node_modules holding `mermaid` and `jsdom`
    (`npm install mermaid jsdom`) to run it; CI does not install them.
    """

    def test_mermaid_parses_every_spec(self, tmp_path: Path) -> None:
        modules = os.environ.get("NETGEN_MERMAID_MODULES")
        node = shutil.which("node")
        if not modules or node is None:
            pytest.skip("set NETGEN_MERMAID_MODULES (with mermaid and jsdom) to run")
        script = tmp_path / "parse.mjs"
        script.write_text(
            textwrap.dedent(
                """
                import fs from "fs";
                import { JSDOM } from "jsdom";
                const dom = new JSDOM("<!doctype html><html><body></body></html>");
                globalThis.window = dom.window; globalThis.document = dom.window.document;
                const { default: mermaid } = await import("mermaid");
                const texts = JSON.parse(fs.readFileSync(0, "utf8"));
                const out = {};
                for (const [k, t] of Object.entries(texts)) {
                  try { await mermaid.parse(t); out[k] = "ok"; } catch (e) { out[k] = String(e); }
                }
                console.log(JSON.stringify(out));
                """
            )
        )
        (tmp_path / "node_modules").symlink_to(modules)
        texts = {stem: mermaid_of(stem) for stem in STEMS}
        texts["awkward"] = graph.mermaid(spec.loads(TestAwkwardNames.SPEC, "awkward.yaml"))
        done = subprocess.run(
            [node, str(script)], input=json.dumps(texts), capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {k: "ok" for k in texts}


class TestDeterminism:
    @pytest.mark.parametrize("stem", STEMS)
    def test_same_bytes_twice(self, stem: str) -> None:
        assert mermaid_of(stem) == mermaid_of(stem)
        assert dot_of(stem) == dot_of(stem)

    def test_same_bytes_whatever_the_hash_seed(self) -> None:
        outs = set()
        for seed in ("1", "2"):
            for fmt in ("mermaid", "dot"):
                done = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "netgen",
                        "graph",
                        "specs/net-modes.yaml",
                        "--format",
                        fmt,
                    ],
                    cwd=ROOT,
                    capture_output=True,
                    env={**os.environ, "PYTHONHASHSEED": seed},
                    timeout=60,
                )
                assert done.returncode == 0
                outs.add((fmt, done.stdout))
        assert len(outs) == 2


class TestCli:
    def test_default_is_mermaid_on_stdout(self, netgen: Run) -> None:
        assert netgen("graph", "specs/walkthrough.yaml") == (
            0,
            mermaid_of("walkthrough").encode(),
            "",
        )

    def test_dot_to_a_file(self, netgen: Run, tmp_path: Path) -> None:
        target = tmp_path / "net.dot"
        assert netgen("graph", "specs/uplink.yaml", "--format", "dot", "-o", str(target)) == (
            0,
            b"",
            "",
        )
        assert target.read_text() == dot_of("uplink")
        assert [p.name for p in tmp_path.iterdir()] == ["net.dot"]  # no temp file left

    def test_svg_to_a_file(self, netgen: Run, tmp_path: Path) -> None:
        require("dot")
        target = tmp_path / "net.svg"
        code, out, err = netgen(
            "graph", "specs/walkthrough.yaml", "--format", "svg", "-o", str(target)
        )
        assert (code, out, err) == (0, b"", "")
        assert "<svg" in target.read_text() and "172.17.42.99/16" in target.read_text()

    def test_png_to_a_pipe(self, netgen: Run) -> None:
        require("dot")
        code, out, err = netgen("graph", "specs/multihomed.yaml", "--format", "png")
        assert (code, err) == (0, "")
        assert out.startswith(b"\x89PNG\r\n\x1a\n")

    @pytest.mark.parametrize("fmt", graph.IMAGE_FORMATS)
    def test_no_image_on_a_terminal(
        self, netgen: Run, monkeypatch: pytest.MonkeyPatch, fmt: str
    ) -> None:
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
        code, out, err = netgen("graph", "specs/walkthrough.yaml", "--format", fmt)
        assert (code, out) == (2, b"")
        assert err == f"netgen: error: not writing {fmt} to a terminal: give -o FILE, or redirect\n"

    def test_text_on_a_terminal_is_fine(self, netgen: Run, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
        assert netgen("graph", "specs/walkthrough.yaml")[0] == 0

    def test_missing_dot_is_a_clear_usage_error(self, tmp_path: Path) -> None:
        """A PATH without Graphviz: exit 2, the package to install, nothing on stdout."""
        target = tmp_path / "net.svg"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "netgen",
                "graph",
                "specs/walkthrough.yaml",
                "--format",
                "svg",
                "-o",
                str(target),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PATH": str(tmp_path)},
            timeout=60,
        )
        assert (done.returncode, done.stdout) == (2, "")
        assert done.stderr == (
            "netgen: error: --format svg needs Graphviz's 'dot', which is not on PATH: "
            "install the graphviz package (apt-get install graphviz), "
            "or use --format dot or --format mermaid\n"
        )
        assert not target.exists()

    def test_text_formats_need_no_graphviz(
        self, netgen: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("PATH", str(tmp_path))
        assert netgen("graph", "specs/walkthrough.yaml", "--format", "dot")[0] == 0

    def test_a_failing_dot_exits_1_with_its_message(
        self, netgen: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        fake = tmp_path / "dot"
        fake.write_text("#!/bin/sh\necho 'Error: out of memory' >&2\nexit 3\n")
        fake.chmod(0o755)
        monkeypatch.setenv("PATH", str(tmp_path))
        code, out, err = netgen("graph", "specs/walkthrough.yaml", "--format", "png")
        assert (code, out) == (1, b"")
        assert err == f"netgen: error: {fake} -Tpng failed (exit 3): Error: out of memory\n"

    def test_bad_spec_exits_2_and_prints_nothing(self, netgen: Run, tmp_path: Path) -> None:
        bad = tmp_path / "bad.yaml"
        bad.write_text("version: 2\n")
        code, out, err = netgen("graph", str(bad))
        assert (code, out) == (2, b"")
        assert "unsupported version 2" in err

    def test_unknown_format_is_a_usage_error(self, netgen: Run) -> None:
        code, out, err = netgen("graph", "specs/walkthrough.yaml", "--format", "jpeg")
        assert (code, out) == (2, b"")
        assert "jpeg" in err
