"""Draw a spec: Mermaid or Graphviz DOT text, or SVG/PNG through Graphviz's `dot`.

A picture of what netgen will build is the quickest review of a spec: which
container sits on which bridge through which veth, who shares a namespace, what
is published. This reads only the validated `model.Spec`. Node ids are derived
(`b0`, `c0`, ...), so no user name ever has to be an identifier in Mermaid or
DOT; names only appear inside quoted, escaped labels. Every walk follows
declaration order, so the same spec always gives the same bytes.

A spec with `hosts:` is drawn one group per host (a Mermaid `subgraph`, a DOT
`cluster_`): each host holds its containers and its own part of every bridge it
spans; the VXLAN tunnels that join those parts, and point-to-point links across
hosts, are the edges between groups.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Literal

from . import model as m
from .errors import NetgenError, UsageError

TEXT_FORMATS = ("mermaid", "dot")
IMAGE_FORMATS = ("svg", "png")
FORMATS = TEXT_FORMATS + IMAGE_FORMATS
GRAPHVIZ_PACKAGE = "graphviz"  # the Debian (and Ubuntu) package that ships `dot`

NodeKind = Literal["host", "nic", "bridge", "container"]
EdgeKind = Literal["veth", "link", "uplink", "port", "share", "hostnet", "vxlan"]


@dataclass(frozen=True)
class Node:
    id: str
    kind: NodeKind
    lines: tuple[str, ...]  # the label, one item per line; the first is the name


@dataclass(frozen=True)
class Edge:
    a: str
    b: str
    kind: EdgeKind
    label: str


@dataclass(frozen=True)
class Group:
    """A host of a multi-host spec: the nodes that live on it."""

    id: str
    lines: tuple[str, ...]
    members: tuple[str, ...]  # node ids, in the order of Graph.nodes


@dataclass(frozen=True)
class Graph:
    """What both text formats draw, so Mermaid and DOT always show the same things."""

    title: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    groups: tuple[Group, ...] = ()  # empty: one host, nothing grouped


def build(spec: m.Spec) -> Graph:
    """The nodes and edges of a spec, in declaration order."""
    if spec.hosts:
        return _build_hosts(spec)
    bridge_id = {b.name: f"b{i}" for i, b in enumerate(spec.bridges)}
    container_id = {c.name: f"c{i}" for i, c in enumerate(spec.containers)}
    link_ends: dict[str, list[str]] = {}
    for link in spec.links:
        for ep in (link.a, link.b):
            link_ends.setdefault(ep.container, []).append(_end(ep))

    nodes: list[Node] = []
    edges: list[Edge] = []
    needs_host = any(c.mode == "host" or c.ports for c in spec.containers)
    if needs_host:
        nodes.append(Node("host", "host", ("host",)))
    nic = 0
    for b in spec.bridges:
        for uplink in b.uplinks:
            nodes.append(Node(f"n{nic}", "nic", (uplink, "host NIC")))
            edges.append(Edge(f"n{nic}", bridge_id[b.name], "uplink", "uplink"))
            nic += 1
    for b in spec.bridges:
        nodes.append(Node(bridge_id[b.name], "bridge", _bridge_lines(b)))
    for c in spec.containers:
        nodes.append(Node(container_id[c.name], "container", _container_lines(c, link_ends)))
    for c in spec.containers:
        for iface in c.interfaces:
            edges.append(
                Edge(
                    bridge_id[iface.bridge],
                    container_id[c.name],
                    "veth",
                    f"{iface.host_ifname} ↔ {iface.ifname}",
                )
            )
    for link in spec.links:
        label = f"{_end(link.a)} ↔ {_end(link.b)}"
        edges.append(
            Edge(container_id[link.a.container], container_id[link.b.container], "link", label)
        )
    for c in spec.containers:
        if c.mode == "container" and c.share is not None:
            edges.append(Edge(container_id[c.name], container_id[c.share], "share", "shares netns"))
        elif c.mode == "host":
            edges.append(Edge("host", container_id[c.name], "hostnet", "network: host"))
    for c in spec.containers:
        for p in c.ports:
            host = "host" if p.host_ip is None else str(p.host_ip)
            label = f"{host}:{p.host_port}/{p.proto} → {c.name}:{p.container_port}"
            edges.append(Edge("host", container_id[c.name], "port", label))
    return Graph(spec.name, tuple(nodes), tuple(edges))


def _build_hosts(spec: m.Spec) -> Graph:
    """One group per host, in `hosts:` order: a host node (if ports or host-mode
    containers need one), uplink NICs, its part of each bridge it spans, its containers."""
    container_id = {c.name: f"c{i}" for i, c in enumerate(spec.containers)}
    part_id = {
        (b.name, h): f"b{i}_{spec.hosts.index(spec.host(h))}"
        for i, b in enumerate(spec.bridges)
        for h in b.hosts
    }
    link_ends: dict[str, list[str]] = {}
    for link in spec.links:
        for ep in (link.a, link.b):
            link_ends.setdefault(ep.container, []).append(_end(ep))

    nodes: list[Node] = []
    edges: list[Edge] = []
    groups: list[Group] = []
    nic = 0
    for hi, h in enumerate(spec.hosts):
        members: list[Node] = []
        here = [c for c in spec.containers if c.host == h.name]
        if any(c.mode == "host" or c.ports for c in here):
            members.append(Node(f"hn{hi}", "host", (f"host {h.name}",)))
        for b in spec.bridges:
            if h.name in b.hosts:
                for uplink in b.uplinks:
                    members.append(Node(f"n{nic}", "nic", (uplink, "host NIC")))
                    edges.append(Edge(f"n{nic}", part_id[b.name, h.name], "uplink", "uplink"))
                    nic += 1
        for b in spec.bridges:
            if h.name in b.hosts:
                lines = _bridge_lines(b.on(h.name))
                if b.overlay:
                    lines += (f"{b.vxlan_dev} vni {b.vni}",)
                members.append(Node(part_id[b.name, h.name], "bridge", lines))
        for c in here:
            members.append(Node(container_id[c.name], "container", _container_lines(c, link_ends)))
        nodes += members
        where = f"{h.address}" + ("" if h.dev is None else f" dev {h.dev}")
        groups.append(Group(f"g{hi}", (h.name, where), tuple(n.id for n in members)))
    for b in spec.bridges:
        if b.overlay:
            for x, first in enumerate(b.hosts):
                for second in b.hosts[x + 1 :]:
                    label = f"VXLAN {b.vni} udp/{b.vxlan_port}"
                    edges.append(
                        Edge(part_id[b.name, first], part_id[b.name, second], "vxlan", label)
                    )
    for c in spec.containers:
        for iface in c.interfaces:
            edges.append(
                Edge(
                    part_id[iface.bridge, str(c.host)],
                    container_id[c.name],
                    "veth",
                    f"{iface.host_ifname} ↔ {iface.ifname}",
                )
            )
    for link in spec.links:
        label = f"{_end(link.a)} ↔ {_end(link.b)}"
        if link.crosses:
            label += f" (VXLAN {link.vni})"
        edges.append(
            Edge(container_id[link.a.container], container_id[link.b.container], "link", label)
        )
    host_id = {h.name: f"hn{hi}" for hi, h in enumerate(spec.hosts)}
    for c in spec.containers:
        if c.mode == "container" and c.share is not None:
            edges.append(Edge(container_id[c.name], container_id[c.share], "share", "shares netns"))
        elif c.mode == "host":
            edges.append(
                Edge(host_id[str(c.host)], container_id[c.name], "hostnet", "network: host")
            )
    for c in spec.containers:
        for p in c.ports:
            where = "host" if p.host_ip is None else str(p.host_ip)
            label = f"{where}:{p.host_port}/{p.proto} → {c.name}:{p.container_port}"
            edges.append(Edge(host_id[str(c.host)], container_id[c.name], "port", label))
    return Graph(spec.name, tuple(nodes), tuple(edges), tuple(groups))


def _end(ep: m.Endpoint) -> str:
    return ep.ifname if ep.address is None else f"{ep.ifname} {ep.address}"


def _bridge_lines(b: m.Bridge) -> tuple[str, ...]:
    lines = [b.name, f"subnet {b.subnet}", f"gateway {b.address}"]
    if b.subnet6 is not None:
        lines += [f"subnet6 {b.subnet6}", f"gateway6 {b.address6}"]
    flags = []
    if b.external:
        flags.append("external")
    if b.masquerade:
        flags.append("masquerade")
    if b.masquerade6:
        flags.append("masquerade6")
    if not b.icc:
        flags.append("icc off")
    if b.mtu is not None:
        flags.append(f"mtu {b.mtu}")
    if flags:
        lines.append(", ".join(flags))
    return tuple(lines)


def _container_lines(c: m.Container, link_ends: dict[str, list[str]]) -> tuple[str, ...]:
    lines = [c.name]
    if c.mode == "bridge":
        bridges = list(dict.fromkeys(i.bridge for i in c.interfaces))  # ordered, no repeats
        lines += [f"netns {c.netns}", f"network: {', '.join(bridges)}"]
    elif c.mode == "none":
        lines += [f"netns {c.netns}", "network: none"]
    elif c.mode == "host":
        lines.append("network: host")
    else:
        lines.append(f"in {c.share}'s netns {c.netns}")
    if c.pid is not None:
        lines.append(f"pid {c.pid}")
    for i in c.interfaces:
        lines.append(f"{i.ifname} {i.address}")
        if i.address6 is not None:
            lines.append(f"{i.ifname} {i.address6}")
    lines += link_ends.get(c.name, [])
    return tuple(lines)


# -- Mermaid --------------------------------------------------------------------

_MERMAID_SHAPE = {
    "host": ('(["', '"])'),
    "nic": ('[/"', '"/]'),
    "bridge": ('{{"', '"}}'),
    "container": ('["', '"]'),
}
_MERMAID_EDGE = {
    "veth": "---",
    "link": "---",
    "uplink": "---",
    "port": "-->",
    "share": "-.->",
    "hostnet": "-.-",
    "vxlan": "===",
}


def mermaid(spec: m.Spec) -> str:
    """A Mermaid flowchart (renders on GitHub, GitLab and in most Markdown tools)."""
    g = build(spec)
    out = [f"%% netgen graph of spec {_mermaid_text(g.title)}", "flowchart TB"]
    by_id = {node.id: node for node in g.nodes}
    for group in g.groups:
        label = "<br/>".join(_mermaid_text(line) for line in group.lines)
        out.append(f'  subgraph {group.id}["{label}"]')
        out += [_mermaid_node(by_id[member], "    ") for member in group.members]
        out.append("  end")
    grouped = {member for group in g.groups for member in group.members}
    out += [_mermaid_node(node, "  ") for node in g.nodes if node.id not in grouped]
    for edge in g.edges:
        arrow = _MERMAID_EDGE[edge.kind]
        out.append(f'  {edge.a} {arrow}|"{_mermaid_text(edge.label)}"| {edge.b}')
    return "\n".join(out) + "\n"


def _mermaid_node(node: Node, indent: str) -> str:
    start, end = _MERMAID_SHAPE[node.kind]
    label = "<br/>".join(_mermaid_text(line) for line in node.lines)
    return f"{indent}{node.id}{start}{label}{end}"


def _mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label: no quote, no HTML, no stray entity."""
    for char, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return text.replace("&", "#amp;").replace("\n", " ")


# -- Graphviz DOT -----------------------------------------------------------------

_DOT_NODE = {
    "host": 'shape=box3d, label="{}"',
    "nic": 'shape=cds, label="{}"',
    "bridge": 'shape=hexagon, style=filled, fillcolor="#e8eef7", label="{}"',
    "container": 'shape=box, style=rounded, label="{}"',
}
_DOT_EDGE = {
    "veth": "dir=none",
    "link": "dir=none, penwidth=2",
    "uplink": "dir=none, style=bold",
    "port": "color=darkgreen, fontcolor=darkgreen",
    "share": "style=dashed",
    "hostnet": "dir=none, style=dashed",
    "vxlan": "dir=none, style=bold, color=steelblue, fontcolor=steelblue",
}


def dot(spec: m.Spec) -> str:
    """A Graphviz digraph; `dot -Tsvg` (or `netgen graph --format svg`) draws it."""
    g = build(spec)
    out = [
        f"// netgen graph of spec {g.title}",
        "digraph netgen {",
        f'  graph [label="{_dot_text(g.title)}", labelloc=t, fontname="Helvetica"];',
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    by_id = {node.id: node for node in g.nodes}
    for group in g.groups:
        label = "\\n".join(_dot_text(line) for line in group.lines)
        out.append(f'  subgraph "cluster_{group.id}" {{')
        out.append(f'    graph [label="{label}", style=rounded, color=gray50];')
        out += [_dot_node(by_id[member], "    ") for member in group.members]
        out.append("  }")
    grouped = {member for group in g.groups for member in group.members}
    out += [_dot_node(node, "  ") for node in g.nodes if node.id not in grouped]
    for edge in g.edges:
        attrs = f'{_DOT_EDGE[edge.kind]}, label="{_dot_text(edge.label)}"'
        out.append(f'  "{edge.a}" -> "{edge.b}" [{attrs}];')
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_node(node: Node, indent: str) -> str:
    label = "\\n".join(_dot_text(line) for line in node.lines)
    return f'{indent}"{node.id}" [{_DOT_NODE[node.kind].format(label)}];'


def _dot_text(text: str) -> str:
    """Text safe inside a DOT double-quoted string: backslashes and quotes escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# -- images -------------------------------------------------------------------


def image(dot_source: str, fmt: str) -> bytes:
    """SVG or PNG bytes from DOT, through Graphviz's `dot` (argv, no shell)."""
    if fmt not in IMAGE_FORMATS:
        raise UsageError(f"unknown image format {fmt!r}; use one of {', '.join(IMAGE_FORMATS)}")
    exe = shutil.which("dot")
    if exe is None:
        raise UsageError(
            f"--format {fmt} needs Graphviz's 'dot', which is not on PATH: install the "
            f"{GRAPHVIZ_PACKAGE} package (apt-get install {GRAPHVIZ_PACKAGE}), or use "
            "--format dot or --format mermaid"
        )
    try:
        done = subprocess.run(
            [exe, f"-T{fmt}"], input=dot_source.encode(), capture_output=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetgenError(f"{exe} -T{fmt} failed: {exc}") from exc
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip()
        raise NetgenError(f"{exe} -T{fmt} failed (exit {done.returncode}): {why}")
    return done.stdout


def draw(spec: m.Spec, fmt: str) -> bytes:
    """The graph in `fmt` as bytes (text formats in UTF-8), ready to write out."""
    if fmt == "mermaid":
        return mermaid(spec).encode()
    if fmt == "dot":
        return dot(spec).encode()
    return image(dot(spec), fmt)
