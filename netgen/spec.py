"""Load a spec file and validate the whole contract (SPEC.md) into a `model.Spec`.

Reading happens in two passes over the YAML node tree: the first checks shapes
and types of every key (collecting every error), the second checks what spans
the spec (references, overlaps, duplicates) and hands out addresses. Any error
stops the pipeline here: nothing is lowered, rendered or run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from ipaddress import (
    AddressValueError,
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    NetmaskValueError,
    ip_address,
)
from pathlib import Path
from typing import Any, cast

import yaml

from . import model as m
from .errors import UsageError
from .fields import (  # the key lists and patterns, shared with the JSON Schema
    BRIDGE_KEYS,
    CHECK_KEYS,
    CONTAINER_KEYS,
    DNS_KEYS,
    DNS_OPTION_RE,
    EXPOSE_RE,
    HOST_KEYS,
    HOSTNAME_RE,
    IFNAME_RE,
    INTERFACE_KEYS,
    LINK_KEYS,
    MAC_RE,
    NAME_RE,
    PORT_RE,
    ROUTE_KEYS,
    SHORT_IF_KEYS,
    TOP_KEYS,
    VAR_RE,
)
from .ipam import Pool, usable
from .yamlsrc import Node, Source, describe, join

VNI_MAX = 16777215  # 24 bits, 0 reserved
_INVALID = object()  # a YAML value that failed to read (its error is recorded)
BR_MAX_PORTS = 1023  # the kernel's limit of ports on one bridge ("Exchange full")
FIRST_EPHEMERAL_PORT = 49153  # where Docker's -P allocation starts

# keys meaningless without a namespace of the container's own
NETNS_ONLY_KEYS = (*SHORT_IF_KEYS, "interfaces", "routes", "ports", "dns", "hosts", "hostname")


def load(path: str | Path) -> m.Spec:
    """Read and validate a spec file; raises SpecError listing every problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read spec {str(path)!r}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"spec {str(path)!r} is not UTF-8 text: {exc.reason}") from exc
    return loads(text, str(path), sha256=hashlib.sha256(raw).hexdigest())


def loads(text: str, file: str = "<spec>", sha256: str | None = None) -> m.Spec:
    """Validate spec text; `file` is only used for messages and the default name."""
    src = Source(file, text)
    digest = sha256 or hashlib.sha256(text.encode()).hexdigest()
    root = src.compose()
    spec = None
    if isinstance(root, yaml.ScalarNode) and root.tag.endswith(":null") and not root.value:
        root = None  # a bare `---`: an empty document
    if root is None and not src.diagnostics:
        src.error_at(1, 1, "", "spec is empty; it needs at least 'version: 1'")
    elif root is not None:
        draft = _Reader(src).read(root)
        if draft is not None:
            spec = _Resolver(src, draft, file, digest).resolve()
    src.fail_if_errors()
    assert spec is not None
    return spec


# -- pass 1: shapes and types --------------------------------------------------


@dataclass
class _Iface:
    bridge: str | None
    ifname: str
    address: IPv4Address | None
    host_ifname: str | None
    mac: str | None
    loc: m.Loc
    node: Node  # for errors in pass 2
    address_node: Node | None = None
    prefix: int | None = None  # the prefix the user wrote, checked against the bridge
    address6: IPv6Address | None = None
    address6_node: Node | None = None
    prefix6: int | None = None
    ifname_node: Node | None = None
    host_ifname_node: Node | None = None


@dataclass
class _Container:
    name: str
    network: str | None
    network_node: Node | None
    netns: str | None
    pid: int | None
    ifaces: list[_Iface]
    routes: list[tuple[m.Route, Node]]
    default_route: bool
    ports: list[tuple[str, IPv4Address | None, int | None, int, Node, str]]  # ..., node, path
    expose: list[m.Exposed]
    links: list[tuple[m.LinkRef, Node]]
    dns: m.Dns | None
    hosts: list[tuple[str, m.IPAddress]]
    hostname: str | None
    present: dict[str, Node]  # the keys given, to point errors at them
    loc: m.Loc
    node: Node
    host: str | None = None
    host_node: Node | None = None


@dataclass
class _Link:
    endpoints: list[tuple[str, str, Node]]
    addresses: list[tuple[m.IPInterface, Node]]
    loc: m.Loc
    node: Node
    vni: int | None = None
    vni_node: Node | None = None


@dataclass
class _Check:
    src: str
    src_node: Node
    dst: str
    dst_node: Node
    port: m.Exposed | None
    expect: m.Expect
    loc: m.Loc


@dataclass
class _Draft:
    name: str | None
    name_node: Node | None
    bridges: list[tuple[m.Bridge, Node, bool]] = field(default_factory=list)
    declared_bridges: set[str] = field(default_factory=set)  # valid or not: no cascades
    containers: list[_Container] = field(default_factory=list)
    declared_containers: set[str] = field(default_factory=set)
    links: list[_Link] = field(default_factory=list)
    outside: m.IPAddress | None = None
    outside_node: Node | None = None
    checks: list[_Check] = field(default_factory=list)
    # bridge name -> its keys' value nodes ("": the bridge's own key), for pass-2 errors
    bridge_nodes: dict[str, dict[str, Node]] = field(default_factory=dict)
    hosts: list[m.Host] = field(default_factory=list)
    declared_hosts: list[str] = field(default_factory=list)  # valid or not, in order
    host_nodes: dict[str, dict[str, Node]] = field(default_factory=dict)  # as bridge_nodes


class _Reader:
    """Pass 1: every key's type and pattern, collecting all errors."""

    def __init__(self, src: Source) -> None:
        self.src = src

    def loc(self, node: Node, path: str) -> m.Loc:
        mark = node.start_mark
        return m.Loc(self.src.file, mark.line + 1, mark.column + 1, path)

    def read(self, root: Node) -> _Draft | None:
        top = self.src.mapping(root, "", TOP_KEYS)
        if top is None:
            return None
        if "version" not in top:
            self.src.error(root, "version", "missing required key 'version' (use 'version: 1')")
        else:
            vnode = top["version"][1]
            version = self.src.scalar(vnode, "version")
            if isinstance(version, bool) or not isinstance(version, int):
                if version is not None or isinstance(vnode, yaml.ScalarNode):
                    self.src.error(vnode, "version", f"expected 1, got {describe(version)}")
            elif version != 1:
                self.src.error(vnode, "version", f"unsupported version {version}; expected 1")
        draft = _Draft(None, None)
        if "name" in top:
            draft.name_node = top["name"][1]
            draft.name = self.name(draft.name_node, "name", NAME_RE, "spec name")
        if "hosts" in top:
            for key, (knode, vnode) in (self.src.mapping(top["hosts"][1], "hosts") or {}).items():
                draft.declared_hosts.append(key)
                nodes = {"": knode}
                if isinstance(vnode, yaml.MappingNode):
                    nodes.update((str(k.value), v) for k, v in vnode.value)
                draft.host_nodes[key] = nodes
                host = self.host(key, knode, vnode)
                if host is not None:
                    draft.hosts.append(host)
        if "bridges" in top:
            for key, (knode, vnode) in (
                self.src.mapping(top["bridges"][1], "bridges") or {}
            ).items():
                draft.declared_bridges.add(key)
                nodes = {"": knode}
                if isinstance(vnode, yaml.MappingNode):
                    nodes.update((str(k.value), v) for k, v in vnode.value)
                draft.bridge_nodes[key] = nodes
                bridge = self.bridge(key, knode, vnode)
                if bridge is not None:
                    draft.bridges.append(bridge)
        if "containers" in top:
            containers = self.src.mapping(top["containers"][1], "containers") or {}
            for key, (knode, vnode) in containers.items():
                draft.declared_containers.add(key)
                container = self.container(key, knode, vnode)
                if container is not None:
                    draft.containers.append(container)
        if "links" in top:
            for i, lnode in enumerate(self.src.sequence(top["links"][1], "links") or ()):
                link = self.link(lnode, f"links[{i}]")
                if link is not None:
                    draft.links.append(link)
        if "outside" in top:
            draft.outside_node = top["outside"][1]
            draft.outside = self.ip(draft.outside_node, "outside")
        if "checks" in top:
            for i, cnode in enumerate(self.src.sequence(top["checks"][1], "checks") or ()):
                check = self.check(cnode, f"checks[{i}]")
                if check is not None:
                    draft.checks.append(check)
        return draft

    # -- scalars with patterns -------------------------------------------------

    def name(self, node: Node, path: str, pattern: re.Pattern[str], what: str) -> str | None:
        value = self.src.string(node, path)
        if value is None:
            return None
        if not pattern.fullmatch(value):
            self.src.error(node, path, _bad_name(value, what, pattern))
            return None
        return value

    def key_name(
        self, key: str, knode: Node, path: str, pattern: re.Pattern[str], what: str
    ) -> bool:
        if pattern.fullmatch(key) and key not in (".", ".."):
            return True
        self.src.error(knode, path, _bad_name(key, what, pattern))
        return False

    def ifname(self, node: Node, path: str) -> str | None:
        value = self.src.string(node, path)
        if value is None:
            return None
        if not IFNAME_RE.fullmatch(value) or value in (".", ".."):
            self.src.error(node, path, _bad_name(value, "interface name", IFNAME_RE))
            return None
        return value

    def ipv4(self, node: Node, path: str) -> IPv4Address | None:
        value = self.src.string(node, path)
        if value is None:
            return None
        try:
            return IPv4Address(value)
        except AddressValueError:
            self.src.error(node, path, f"{value!r} is not an IPv4 address")
            return None

    def ipv6(self, node: Node, path: str) -> IPv6Address | None:
        value = self.src.string(node, path)
        if value is None:
            return None
        try:
            return IPv6Address(value)
        except AddressValueError:
            self.src.error(node, path, f"{value!r} is not an IPv6 address")
            return None

    def cidr6(self, node: Node, path: str) -> IPv6Network | None:
        value = self.src.string(node, path)
        if value is None:
            return None
        if "/" not in value:
            self.src.error(node, path, f"{value!r} is not an IPv6 CIDR (like fd00:20::/64)")
            return None
        try:
            return IPv6Network(value)
        except ValueError as exc:
            if isinstance(exc, (AddressValueError, NetmaskValueError)):
                self.src.error(node, path, f"{value!r} is not an IPv6 CIDR (like fd00:20::/64)")
            else:
                net = IPv6Network(value, strict=False)
                self.src.error(node, path, f"{value!r} has host bits set; did you mean {net}?")
            return None

    def ip(self, node: Node, path: str) -> m.IPAddress | None:
        value = self.src.string(node, path)
        if value is None:
            return None
        try:
            parsed: m.IPAddress = ip_address(value)
            return parsed
        except ValueError:
            self.src.error(node, path, f"{value!r} is not an IP address")
            return None

    def cidr(self, node: Node, path: str) -> IPv4Network | None:
        value = self.src.string(node, path)
        if value is None:
            return None
        if "/" not in value:
            self.src.error(node, path, f"{value!r} is not an IPv4 CIDR (like 10.0.0.0/24)")
            return None
        try:
            return IPv4Network(value)
        except ValueError as exc:
            if isinstance(exc, (AddressValueError, NetmaskValueError)):
                self.src.error(node, path, f"{value!r} is not an IPv4 CIDR (like 10.0.0.0/24)")
            else:
                net = IPv4Network(value, strict=False)
                self.src.error(node, path, f"{value!r} has host bits set; did you mean {net}?")
            return None

    def iface_address(self, node: Node, path: str) -> IPv4Interface | None:
        """An IPv4 address, or address/prefix (the prefix is checked in pass 2)."""
        value = self.src.string(node, path)
        if value is None:
            return None
        try:
            return IPv4Interface(value)
        except ValueError:
            self.src.error(node, path, f"{value!r} is not an IPv4 address or address/prefix")
            return None

    def mac(self, node: Node, path: str) -> str | None:
        value = self.src.string(node, path)
        if value is None:
            return None
        if not MAC_RE.fullmatch(value):
            self.src.error(node, path, f"{value!r} is not a MAC address (like 02:42:ac:11:00:02)")
            return None
        if int(value[:2], 16) & 1:
            self.src.error(node, path, f"{value} is a multicast MAC; an interface needs unicast")
            return None
        return value.lower()

    def hostname(self, node: Node, path: str) -> str | None:
        value = self.src.string(node, path)
        if value is None:
            return None
        if not HOSTNAME_RE.fullmatch(value):
            self.src.error(node, path, f"{value!r} is not a valid host name")
            return None
        return value

    # -- bridges ------------------------------------------------------------

    def bridge(self, name: str, knode: Node, node: Node) -> tuple[m.Bridge, Node, bool] | None:
        path = f"bridges.{name}"
        ok = self.key_name(name, knode, path, IFNAME_RE, "bridge name")
        keys = self.src.mapping(node, path, BRIDGE_KEYS)
        if keys is None:
            return None
        subnet = None
        if "subnet" not in keys:
            self.src.error(node, join(path, "subnet"), "missing required key 'subnet'")
        else:
            subnet = self.cidr(keys["subnet"][1], join(path, "subnet"))
        address = None
        if "address" in keys:
            address = self.ipv4(keys["address"][1], join(path, "address"))
            if address is None:
                ok = False
        values: dict[str, Any] = {}
        if "subnet6" in keys:
            values["subnet6"] = self.cidr6(keys["subnet6"][1], join(path, "subnet6"))
            ok = ok and values["subnet6"] is not None
        if "address6" in keys:
            values["address6"] = self.ipv6(keys["address6"][1], join(path, "address6"))
            ok = ok and values["address6"] is not None
            if "subnet6" not in keys:
                self.src.error(
                    keys["address6"][0], join(path, "address6"), "'address6' needs 'subnet6'"
                )
                ok = False
        for key in ("external", "masquerade", "masquerade6", "dad", "icc", "mcast_snooping"):
            if key in keys:
                values[key] = self.src.boolean(keys[key][1], join(path, key))
                ok = ok and values[key] is not None
        if "mtu" in keys:
            values["mtu"] = self.src.integer(keys["mtu"][1], join(path, "mtu"), 68, 65535)
            ok = ok and values["mtu"] is not None
        if "vni" in keys:
            values["vni"] = self.src.integer(keys["vni"][1], join(path, "vni"), 1, VNI_MAX)
            ok = ok and values["vni"] is not None
        if "vxlan_port" in keys:
            port = self.src.integer(keys["vxlan_port"][1], join(path, "vxlan_port"), 1, 65535)
            ok = ok and port is not None
            values["vxlan_port"] = port or m.VXLAN_PORT
        if "uplinks" in keys:
            uplinks = [
                v for _, v in self.src.each(keys["uplinks"][1], join(path, "uplinks"), self.ifname)
            ]
            values["uplinks"] = tuple(uplinks)
            values["uplinks_loc"] = self.loc(keys["uplinks"][0], join(path, "uplinks"))
        if subnet is None or not ok:
            return None
        explicit = address is not None
        if address is None:
            address = IPv4Address(int(subnet.network_address) + (1 if subnet.prefixlen < 31 else 0))
        subnet6 = values.get("subnet6")
        if subnet6 is not None and "address6" not in values:
            first = int(subnet6.network_address) + (1 if subnet6.prefixlen < 127 else 0)
            values["address6"] = IPv6Address(first)
        bridge = m.Bridge(name, subnet, address, loc=self.loc(knode, path), **values)
        return bridge, keys["address"][1] if explicit else keys["subnet"][1], explicit

    # -- hosts ----------------------------------------------------------------

    def host(self, name: str, knode: Node, node: Node) -> m.Host | None:
        path = f"hosts.{name}"
        ok = self.key_name(name, knode, path, NAME_RE, "host name")
        keys = self.src.mapping(node, path, HOST_KEYS)
        if keys is None:
            return None
        address = None
        if "address" not in keys:
            self.src.error(node, join(path, "address"), "missing required key 'address'")
        else:
            address = self.ip(keys["address"][1], join(path, "address"))
        dev = mtu = None
        if "dev" in keys:
            dev = self.ifname(keys["dev"][1], join(path, "dev"))
            ok = ok and dev is not None
        if "mtu" in keys:
            mtu = self.src.integer(keys["mtu"][1], join(path, "mtu"), 68, 65535)
            ok = ok and mtu is not None
        variables: list[tuple[str, Any]] = []
        if "vars" in keys:
            vpath = join(path, "vars")
            for var, (vk, vv) in (self.src.mapping(keys["vars"][1], vpath) or {}).items():
                if not VAR_RE.fullmatch(var):
                    ok = False
                    self.src.error(
                        vk,
                        join(vpath, var),
                        f"invalid variable name {var!r}: use A-Z a-z 0-9 _, not starting with "
                        "a digit (Ansible's rule)",
                    )
                    continue
                value = self.data(vv, join(vpath, var))
                if value is _INVALID:
                    ok = False
                else:
                    variables.append((var, value))
            if not isinstance(keys["vars"][1], yaml.MappingNode):
                ok = False
        if address is None or not ok:
            return None
        return m.Host(name, address, dev, mtu or 1500, tuple(variables), loc=self.loc(knode, path))

    def data(self, node: Node, path: str) -> Any:
        """Any YAML value as plain Python (mapping keys as strings); _INVALID on errors."""
        if isinstance(node, yaml.SequenceNode):
            items = [self.data(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
            return _INVALID if any(v is _INVALID for v in items) else items
        if isinstance(node, yaml.MappingNode):
            found = self.src.mapping(node, path)
            if found is None:
                return _INVALID
            out = {k: self.data(v, join(path, k)) for k, (_, v) in found.items()}
            return _INVALID if any(v is _INVALID for v in out.values()) else out
        if not isinstance(node, yaml.ScalarNode):
            return _INVALID
        value = self.src.scalar(node, path)
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            value = str(node.value)  # a date or the like: as written
        return value

    # -- containers ---------------------------------------------------------

    def container(self, name: str, knode: Node, node: Node) -> _Container | None:
        path = f"containers.{name}"
        ok = self.key_name(name, knode, path, NAME_RE, "container name")
        keys = self.src.mapping(node, path, CONTAINER_KEYS)
        if keys is None or not ok:
            return None
        loc = self.loc(knode, path)
        c = _Container(
            name,
            None,
            None,
            None,
            None,
            [],
            [],
            True,
            [],
            [],
            [],
            None,
            [],
            None,
            {key: knode for key, (knode, _) in keys.items()},
            loc,
            node,
        )

        def val(key: str) -> Node:
            return keys[key][1]

        if "network" in keys:
            c.network_node = val("network")
            c.network = self.src.string(c.network_node, join(path, "network"))
        if "netns" in keys:
            c.netns = self.name(val("netns"), join(path, "netns"), NAME_RE, "netns name")
        if "host" in keys:
            c.host_node = val("host")
            c.host = self.name(c.host_node, join(path, "host"), NAME_RE, "host name")
        if "pid" in keys:
            c.pid = self.src.integer(val("pid"), join(path, "pid"), 1, 2**22)
        short = [k for k in SHORT_IF_KEYS if k in keys]
        if "interfaces" in keys:
            if short:
                k = short[0]
                self.src.error(
                    keys[k][0],
                    join(path, k),
                    f"'{k}' cannot be used together with 'interfaces'; "
                    "give it inside the interface instead",
                )
            ipath = join(path, "interfaces")
            for i, inode in enumerate(self.src.sequence(val("interfaces"), ipath) or ()):
                iface = self.interface(inode, f"{ipath}[{i}]", i)
                if iface is not None:
                    c.ifaces.append(iface)
        else:
            iface = self.short_interface(keys, path, node, loc)
            if iface is not None:
                c.ifaces.append(iface)
        if "routes" in keys:
            for rnode, route in self.src.each(val("routes"), join(path, "routes"), self.route):
                c.routes.append((route, rnode))
        if "default_route" in keys:
            c.default_route = (
                self.src.boolean(val("default_route"), join(path, "default_route")) is not False
            )
        if "ports" in keys:
            ppath = join(path, "ports")
            for i, pnode in enumerate(self.src.sequence(val("ports"), ppath) or ()):
                port = self.port(pnode, f"{ppath}[{i}]")
                if port is not None:
                    c.ports.append((*port, pnode, f"{ppath}[{i}]"))
        if "expose" in keys:
            for _, exposed in self.src.each(val("expose"), join(path, "expose"), self.expose):
                c.expose.append(exposed)
        if "link" in keys:
            for lnode, ref in self.src.each(val("link"), join(path, "link"), self.link_ref):
                c.links.append((ref, lnode))
        if "dns" in keys:
            c.dns = self.dns(val("dns"), join(path, "dns"))
        if "hosts" in keys:
            hpath = join(path, "hosts")
            for host, (hk, hv) in (self.src.mapping(val("hosts"), hpath) or {}).items():
                if not HOSTNAME_RE.fullmatch(host):
                    self.src.error(hk, join(hpath, host), f"{host!r} is not a valid host name")
                    continue
                address = self.ip(hv, join(hpath, host))
                if address is not None:
                    c.hosts.append((host, address))
        if "hostname" in keys:
            c.hostname = self.hostname(val("hostname"), join(path, "hostname"))
        return c

    def short_interface(
        self, keys: dict[str, tuple[Node, Node]], path: str, node: Node, loc: m.Loc
    ) -> _Iface | None:
        iface = _Iface(None, "eth0", None, None, None, loc, node)
        if "address" in keys:
            iface.address_node = keys["address"][1]
        if "address6" in keys:
            iface.address6_node = keys["address6"][1]
        return self.interface_fields(iface, keys, path)

    def interface(self, node: Node, path: str, index: int) -> _Iface | None:
        keys = self.src.mapping(node, path, INTERFACE_KEYS)
        if keys is None:
            return None
        iface = _Iface(None, f"eth{index}", None, None, None, self.loc(node, path), node)
        if "bridge" not in keys:
            self.src.error(node, join(path, "bridge"), "missing required key 'bridge'")
            return None
        iface.bridge = self.src.string(keys["bridge"][1], join(path, "bridge"))
        if "address" in keys:
            iface.address_node = keys["address"][1]
        if "address6" in keys:
            iface.address6_node = keys["address6"][1]
        return self.interface_fields(iface, keys, path)

    def interface_fields(
        self, iface: _Iface, keys: dict[str, tuple[Node, Node]], path: str
    ) -> _Iface | None:
        ok = True
        if "ifname" in keys:
            iface.ifname_node = keys["ifname"][1]
            name = self.ifname(keys["ifname"][1], join(path, "ifname"))
            ok = name is not None
            iface.ifname = name or iface.ifname
        if "host_ifname" in keys:
            iface.host_ifname_node = keys["host_ifname"][1]
            iface.host_ifname = self.ifname(keys["host_ifname"][1], join(path, "host_ifname"))
            ok = ok and iface.host_ifname is not None
        if "mac" in keys:
            iface.mac = self.mac(keys["mac"][1], join(path, "mac"))
            ok = ok and iface.mac is not None
        if iface.address_node is not None:
            parsed = self.iface_address(iface.address_node, join(path, "address"))
            if parsed is None:
                return None
            iface.address = parsed.ip
            if "/" in str(iface.address_node.value):
                iface.prefix = parsed.network.prefixlen
        if iface.address6_node is not None:
            apath = join(path, "address6")
            value = self.src.string(iface.address6_node, apath)
            if value is None:
                return None
            try:
                parsed6 = IPv6Interface(value)
            except ValueError:
                self.src.error(
                    iface.address6_node,
                    apath,
                    f"{value!r} is not an IPv6 address or address/prefix",
                )
                return None
            iface.address6 = parsed6.ip
            if "/" in value:
                iface.prefix6 = parsed6.network.prefixlen
        return iface if ok else None

    def route(self, node: Node, path: str) -> m.Route | None:
        keys = self.src.mapping(node, path, ROUTE_KEYS)
        if keys is None:
            return None
        to: m.IPNetwork | None = None
        if "to" not in keys:
            self.src.error(node, join(path, "to"), "missing required key 'to'")
            return None
        tnode = keys["to"][1]
        written = self.src.scalar(tnode, join(path, "to"))
        if written != "default":
            ipv6 = isinstance(written, str) and ":" in written
            to = (self.cidr6 if ipv6 else self.cidr)(tnode, join(path, "to"))
            if to is None:
                return None
        via: m.IPAddress | None = None
        if "via" in keys:
            vnode = keys["via"][1]
            vtext = self.src.scalar(vnode, join(path, "via"))
            v6 = isinstance(vtext, str) and ":" in vtext
            via = (self.ipv6 if v6 else self.ipv4)(vnode, join(path, "via"))
            if via is not None and to is not None and via.version != to.version:
                self.src.error(
                    vnode,
                    join(path, "via"),
                    f"gateway {via} is IPv{via.version} but 'to' {to} is IPv{to.version}",
                )
                return None
        dev = self.ifname(keys["dev"][1], join(path, "dev")) if "dev" in keys else None
        if "via" not in keys and "dev" not in keys:
            self.src.error(node, path, "a route needs 'via' or 'dev' (or both)")
            return None
        if ("via" in keys and via is None) or ("dev" in keys and dev is None):
            return None
        return m.Route(to, via, dev, loc=self.loc(node, path))

    def port(self, node: Node, path: str) -> tuple[str, IPv4Address | None, int | None, int] | None:
        value = self.src.scalar(node, path)
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 22:22 as the base-60 number 1342: keep the text
            value = str(node.value) if ":" in str(node.value) else str(value)
        if not isinstance(value, str):
            if value is not None or isinstance(node, yaml.ScalarNode):
                self.src.error(
                    node, path, f"expected a port like '8080:80/tcp', got {describe(value)}"
                )
            return None
        match = PORT_RE.fullmatch(value)
        if match is None:
            self.src.error(
                node,
                path,
                f"{value!r} is not a port mapping; use CONTAINER_PORT, HOST_PORT:CONTAINER_PORT, "
                "HOST_IP:HOST_PORT:CONTAINER_PORT or HOST_IP::CONTAINER_PORT, "
                "optionally with /tcp or /udp",
            )
            return None
        proto = self.proto(match["proto"], node, path)
        host_ip = None
        if match["ip"] is not None:
            try:
                host_ip = IPv4Address(match["ip"])
            except AddressValueError:
                self.src.error(node, path, f"{match['ip']!r} in {value!r} is not an IPv4 address")
                return None
            if host_ip.is_unspecified:
                host_ip = None  # 0.0.0.0 is Docker's "every host address", as if omitted
        hp = match["hp"] or match["hp2"]
        host_port = self.port_number(hp, node, path) if hp else None
        container_port = self.port_number(match["cp"], node, path)
        if proto is None or container_port is None or (hp and host_port is None):
            return None
        return proto, host_ip, host_port, container_port

    def expose(self, node: Node, path: str) -> m.Exposed | None:
        value = self.src.scalar(node, path)
        text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
        match = EXPOSE_RE.fullmatch(text)
        if match is None:
            if value is not None or isinstance(node, yaml.ScalarNode):
                self.src.error(node, path, f"expected PORT or PORT/tcp|udp, got {describe(value)}")
            return None
        proto = self.proto(match["proto"], node, path)
        port = self.port_number(match["cp"], node, path)
        if proto is None or port is None:
            return None
        return m.Exposed(port, cast(m.Proto, proto))

    def proto(self, proto: str | None, node: Node, path: str) -> str | None:
        if proto is None:
            return "tcp"
        if proto.lower() not in ("tcp", "udp"):
            self.src.error(node, path, f"unknown protocol {proto!r}; use tcp or udp")
            return None
        return proto.lower()

    def port_number(self, text: str, node: Node, path: str) -> int | None:
        number = int(text)
        if not 1 <= number <= 65535:
            self.src.error(node, path, f"port {number} is out of range 1..65535")
            return None
        return number

    def link_ref(self, node: Node, path: str) -> m.LinkRef | None:
        value = self.src.string(node, path)
        if value is None:
            return None
        name, _, alias = value.partition(":")
        if not NAME_RE.fullmatch(name):
            self.src.error(node, path, _bad_name(name, "container name", NAME_RE))
            return None
        if alias and not HOSTNAME_RE.fullmatch(alias):
            self.src.error(node, path, f"alias {alias!r} is not a valid host name")
            return None
        return m.LinkRef(name, alias or None, loc=self.loc(node, path))

    def dns(self, node: Node, path: str) -> m.Dns | None:
        keys = self.src.mapping(node, path, DNS_KEYS)
        if keys is None:
            return None
        servers: tuple[m.IPAddress, ...] = ()
        search: tuple[str, ...] = ()
        options: tuple[str, ...] = ()
        if "nameservers" in keys:
            found = self.src.each(keys["nameservers"][1], join(path, "nameservers"), self.ip)
            servers = tuple(cast(m.IPAddress, v) for _, v in found)
        if "search" in keys:
            search = tuple(
                v for _, v in self.src.each(keys["search"][1], join(path, "search"), self.hostname)
            )
        if "options" in keys:
            options = tuple(
                v
                for _, v in self.src.each(
                    keys["options"][1], join(path, "options"), self.dns_option
                )
            )
        return m.Dns(servers, search, options)

    def dns_option(self, node: Node, path: str) -> str | None:
        value = self.src.string(node, path)
        if value is not None and not DNS_OPTION_RE.fullmatch(value):
            self.src.error(node, path, f"{value!r} is not a resolv.conf option (like ndots:2)")
            return None
        return value

    # -- links --------------------------------------------------------------

    def link(self, node: Node, path: str) -> _Link | None:
        keys = self.src.mapping(node, path, LINK_KEYS)
        if keys is None:
            return None
        link = _Link([], [], self.loc(node, path), node)
        if "endpoints" not in keys:
            self.src.error(node, join(path, "endpoints"), "missing required key 'endpoints'")
            return None
        epath = join(path, "endpoints")
        enodes = self.src.sequence(keys["endpoints"][1], epath)
        if enodes is None:
            return None
        if len(enodes) != 2:
            self.src.error(
                keys["endpoints"][1], epath, f"a link has 2 endpoints, got {len(enodes)}"
            )
            return None
        for i, enode in enumerate(enodes):
            value = self.src.string(enode, f"{epath}[{i}]")
            if value is None:
                return None
            container, sep, ifname = value.partition(":")
            bad_ifname = not IFNAME_RE.fullmatch(ifname) or ifname in (".", "..")
            if not sep or not NAME_RE.fullmatch(container) or bad_ifname:
                self.src.error(
                    enode, f"{epath}[{i}]", f"{value!r} is not CONTAINER:IFNAME (like a:eth1)"
                )
                return None
            link.endpoints.append((container, ifname, enode))
        if "addresses" in keys:
            apath = join(path, "addresses")
            anodes = self.src.sequence(keys["addresses"][1], apath)
            if anodes is None:
                return None
            if len(anodes) != 2:
                self.src.error(
                    keys["addresses"][1],
                    apath,
                    f"give one address per endpoint (2), got {len(anodes)}",
                )
                return None
            for i, anode in enumerate(anodes):
                value = self.src.string(anode, f"{apath}[{i}]")
                if value is None:
                    return None
                try:
                    if "/" not in value:
                        raise ValueError
                    parsed: m.IPInterface = (
                        IPv6Interface(value) if ":" in value else IPv4Interface(value)
                    )
                    link.addresses.append((parsed, anode))
                except ValueError:
                    family, example = (
                        ("IPv6", "fd00:1::1/128") if ":" in value else ("IPv4", "10.1.1.1/32")
                    )
                    self.src.error(
                        anode,
                        f"{apath}[{i}]",
                        f"{value!r} is not an {family} address/prefix (like {example})",
                    )
                    return None
            (first, _), (second, snode) = link.addresses
            if first.version != second.version:
                self.src.error(
                    snode,
                    f"{apath}[1]",
                    f"{second} is IPv{second.version} but {first} is IPv{first.version}; "
                    "give both ends the same family",
                )
                return None
        if "vni" in keys:
            link.vni_node = keys["vni"][1]
            link.vni = self.src.integer(link.vni_node, join(path, "vni"), 1, VNI_MAX)
            if link.vni is None:
                return None
        return link

    # -- checks -------------------------------------------------------------

    def check(self, node: Node, path: str) -> _Check | None:
        keys = self.src.mapping(node, path, CHECK_KEYS)
        if keys is None:
            return None
        for key in ("from", "to"):
            if key not in keys:
                self.src.error(node, join(path, key), f"missing required key '{key}'")
        src = dst = None
        if "from" in keys:
            src = self.name(keys["from"][1], join(path, "from"), NAME_RE, "container name")
        if "to" in keys:
            dst = self.src.string(keys["to"][1], join(path, "to"))
        port = None
        if "port" in keys:
            port = self.expose(keys["port"][1], join(path, "port"))
        expect: str | None = "open"
        if "expect" in keys:
            enode = keys["expect"][1]
            expect = self.src.string(enode, join(path, "expect"))
            if expect is not None and expect not in ("open", "blocked"):
                self.src.error(
                    enode, join(path, "expect"), f"expected open or blocked, got {expect!r}"
                )
                expect = None
        if src is None or dst is None or expect is None or ("port" in keys and port is None):
            return None
        return _Check(
            src,
            keys["from"][1],
            dst,
            keys["to"][1],
            port,
            cast(m.Expect, expect),
            self.loc(node, path),
        )


def _iface_path(container: str, i: int, iface: _Iface) -> str:
    """The key path of a container's interface: in `interfaces`, or the short form."""
    return (
        f"containers.{container}.interfaces[{i}]"
        if iface.bridge is not None
        else f"containers.{container}"
    )


def _at(node: Node, key: str) -> Node:
    """The value of `key` in a mapping node, to point an error at it; else the node."""
    if isinstance(node, yaml.MappingNode):
        for knode, vnode in node.value:
            if isinstance(knode, yaml.ScalarNode) and knode.value == key:
                return cast(Node, vnode)
    return node


def _bad_name(value: str, what: str, pattern: re.Pattern[str]) -> str:
    if pattern is IFNAME_RE and value in (".", ".."):
        return f"invalid {what} {value!r}: . and .. are not interface names"
    if pattern is IFNAME_RE:
        rule = "1 to 15 characters of A-Z a-z 0-9 _ . -"
    else:
        rule = "up to 64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit"
    return f"invalid {what} {value!r}: use {rule}"


# -- pass 2: what spans the spec ---------------------------------------------------


class _Resolver:
    """Pass 2: references, uniqueness, overlaps, and address allocation."""

    def __init__(self, src: Source, draft: _Draft, file: str, sha256: str) -> None:
        self.src = src
        self.draft = draft
        self.file = file
        self.sha256 = sha256
        self.used: dict[m.IPAddress, str] = {}  # every static or allocated address, and its user
        self.declared = {c.name for c in draft.containers}
        # for errors at the right line: the source of each resolved interface and link
        self.iface_src: dict[tuple[str, int], _Iface] = {}
        self.link_src: list[_Link] = []
        # multi-host: each container's host, each bridge's hosts (in `hosts:` order; [None]
        # without hosts), the extra gateways of each bridge by host
        self.hosts: dict[str, m.Host] = {}
        self.placed: dict[str, str | None] = {}
        self.spans: dict[str, list[str | None]] = {}
        self.gateways: dict[str, dict[str, IPv4Address]] = {}
        self.gateways6: dict[str, dict[str, IPv6Address]] = {}

    def resolve(self) -> m.Spec | None:
        d = self.draft
        name = d.name or Path(self.file).stem
        if d.name is None and not NAME_RE.fullmatch(name):
            self.src.error_at(
                1, 1, "name", f"the file name {name!r} is not a valid spec name; set 'name:'"
            )
        bridges = {b.name: b for b, _, _ in d.bridges}
        self.check_hosts()
        self.check_overlaps(d.bridges)
        self.check_overlaps6(d.bridges)
        pools = self.bridge_pools(d.bridges)
        pools6 = self.bridge_pools6(d.bridges)
        modes = self.modes(bridges)
        self.placement()
        self.bridge_spans(modes, bridges)
        mtus = self.check_overlay_bridges(bridges)
        netns_of = self.netns_names(modes)
        ifaces = self.interfaces(modes, bridges, pools, name)
        self.interfaces6(modes, bridges, pools6, ifaces)
        links = self.links(modes, netns_of)
        bridge_vnis, link_vnis = self.vnis(name, links)
        self.namespace_ifnames(ifaces, links)
        self.check_host_ifnames(d.bridges, ifaces, bridge_vnis)
        ports = self.ports()
        ends: dict[str, list[str]] = {}  # each container's link interfaces, for its routes
        for link in links:
            for ep in (link.a, link.b):
                ends.setdefault(ep.container, []).append(ep.ifname)
        containers = []
        for c in d.containers:
            mode, share = modes.get(c.name, ("bridge", None))
            routes = self.routes(c, ifaces.get(c.name, ()), ends.get(c.name, []))
            refs = self.link_refs(c)
            containers.append(
                m.Container(
                    name=c.name,
                    mode=cast(m.Mode, mode),
                    netns=netns_of.get(c.name),
                    share=share if mode == "container" else None,
                    pid=c.pid,
                    interfaces=tuple(ifaces.get(c.name, ())),
                    routes=routes,
                    default_route=c.default_route,
                    ports=tuple(ports.get(c.name, ())),
                    expose=tuple(c.expose),
                    links=refs,
                    dns=c.dns,
                    hosts=tuple(c.hosts),
                    hostname=c.hostname,
                    loc=c.loc,
                    host=self.placed.get(c.name),
                )
            )
        self.bridge_ports(d.bridges, ifaces)
        self.check_outside(bridges, links)
        checks = self.checks(containers, links)
        if self.src.diagnostics:
            return None
        if self.hosts:
            for bname, bridge in bridges.items():
                span = [h for h in self.spans[bname] if h is not None]
                gateways = [(span[0], bridge.address, bridge.address6)] + [
                    (h, self.gateways[bname][h], self.gateways6.get(bname, {}).get(h))
                    for h in span[1:]
                ]
                bridges[bname] = replace(
                    bridge, gateways=tuple(gateways), vni=bridge_vnis[bname], mtu=mtus[bname]
                )
            links = [
                replace(
                    link,
                    vni=vni,
                    hosts=(
                        self.placed[link.a.container] or "",
                        self.placed[link.b.container] or "",
                    ),
                )
                for link, vni in zip(links, link_vnis, strict=True)
            ]
        return m.Spec(
            name,
            self.file,
            self.sha256,
            tuple(bridges.values()),
            tuple(containers),
            tuple(links),
            tuple(checks),
            d.outside,
            tuple(self.hosts.values()),
        )

    # -- hosts ------------------------------------------------------------------------

    def _host_value(self, host: str, key: str) -> Node:
        nodes = self.draft.host_nodes[host]
        return nodes.get(key, nodes[""])

    def check_hosts(self) -> None:
        """Underlay addresses: unique, unicast, one family (a VXLAN tunnel joins two
        addresses of one family); an underlay MTU that leaves room for the overlay."""
        owner: dict[m.IPAddress, str] = {}
        first: m.Host | None = None
        for h in self.draft.hosts:
            path = f"hosts.{h.name}.address"
            node = self._host_value(h.name, "address")
            self.hosts[h.name] = h
            if h.address.is_unspecified or h.address.is_multicast or h.address.is_loopback:
                self.src.error(
                    node, path, f"{h.address} is not a unicast address another host can reach"
                )
            elif h.address in owner:
                self.src.error(
                    node, path, f"{h.address} is already the address of host {owner[h.address]}"
                )
            elif first is not None and h.address.version != first.address.version:
                self.src.error(
                    node,
                    path,
                    f"{h.address} is IPv{h.address.version} but host {first.name}'s address "
                    f"{first.address} is IPv{first.address.version}; the VXLAN tunnels between "
                    "hosts need one address family",
                )
            owner.setdefault(h.address, h.name)
            first = first or h
            if h.overlay_mtu < 68:
                self.src.error(
                    self._host_value(h.name, "mtu"),
                    f"hosts.{h.name}.mtu",
                    f"mtu {h.mtu} leaves {h.overlay_mtu} for the VXLAN overlay ({h.overhead} bytes "
                    f"of headers over IPv{h.address.version}); an interface needs at least 68",
                )

    def placement(self) -> None:
        """Each container's host: given, the only one, or (network: container:NAME) NAME's."""
        declared = self.draft.declared_hosts
        by_name = {c.name: c for c in self.draft.containers}

        def target(c: _Container) -> str | None:
            net = c.network or ""
            return net.partition(":")[2] if net.startswith("container:") else None

        for c in self.draft.containers:
            path = f"containers.{c.name}.host"
            if c.host_node is not None:
                if c.host is None:
                    continue  # reported
                if not declared:
                    self.src.error(
                        c.host_node,
                        path,
                        "'host' needs the top-level 'hosts:' (the machines the spec spans)",
                    )
                elif c.host not in declared:
                    self.src.error(
                        c.host_node, path, f"no host named {c.host!r}{_hint(c.host, declared)}"
                    )
                elif c.host in self.hosts:
                    self.placed[c.name] = c.host
                continue
            if target(c) is not None:
                continue
            if len(declared) == 1 and declared[0] in self.hosts:
                self.placed[c.name] = declared[0]
            elif len(declared) >= 2:
                self.src.error(
                    c.node,
                    path,
                    f"missing 'host': the spec has {len(declared)} hosts "
                    f"({', '.join(declared)}); say which one {c.name} runs on",
                )
            elif not declared:
                self.placed[c.name] = None
        for c in self.draft.containers:
            hop = target(c)
            if hop is None:
                continue
            seen = {c.name}
            while hop in by_name and hop not in seen and target(by_name[hop]) is not None:
                seen.add(hop)
                hop = target(by_name[hop])
            if hop not in by_name or hop in seen:
                continue  # an unknown container or a cycle: reported
            if hop not in self.placed:
                if c.name in self.placed:
                    del self.placed[c.name]
                continue  # the namespace's owner has no valid host: reported
            theirs = self.placed[hop]
            mine = self.placed.get(c.name, theirs)
            if mine != theirs and c.host_node is not None:
                via = target(c)
                self.src.error(
                    c.host_node,
                    f"containers.{c.name}.host",
                    f"{c.name} shares the network namespace of {via} (network: container:{via}), "
                    f"which runs on host {theirs}; leave out 'host' or say {theirs}",
                )
                continue
            self.placed[c.name] = theirs

    def bridge_spans(
        self, modes: dict[str, tuple[str, str | None]], bridges: dict[str, m.Bridge]
    ) -> None:
        """The hosts each bridge spans: those of its containers (no containers: every host)."""
        if not self.hosts:
            self.spans = {b: [None] for b in bridges}
            return
        on: dict[str, set[str]] = {b: set() for b in bridges}
        for c in self.draft.containers:
            mode, arg = modes.get(c.name, ("", None))
            host = self.placed.get(c.name)
            if mode != "bridge" or host is None:
                continue
            for iface in c.ifaces:
                bname = iface.bridge if iface.bridge is not None else arg
                if bname in on:
                    on[bname].add(host)
        order = list(self.hosts)
        self.spans = {b: [h for h in order if h in on[b] or not on[b]] for b in bridges}

    def check_overlay_bridges(self, bridges: dict[str, m.Bridge]) -> dict[str, int | None]:
        """A bridge spanning 2+ hosts is built by netgen on each: no uplinks, not external;
        its MTU fits the overlay. Returns each bridge's MTU (the overlay's by default)."""
        out: dict[str, int | None] = {}
        for name, bridge in bridges.items():
            out[name] = bridge.mtu
            span = [self.hosts[h] for h in self.spans.get(name, []) if h is not None]
            if len(span) < 2:
                continue
            where = f"spans hosts {', '.join(h.name for h in span)} (its containers run there)"
            if bridge.uplinks:
                self.src.error(
                    self._bridge_value(name, "uplinks"),
                    f"bridges.{name}.uplinks",
                    f"bridge {name} {where}: an uplink is one host's interface; put it on a "
                    "bridge whose containers all run on one host",
                )
            if bridge.external:
                self.src.error(
                    self._bridge_value(name, "external"),
                    f"bridges.{name}.external",
                    f"bridge {name} {where}, so netgen builds it on each of them with a VXLAN "
                    "device; an external bridge exists on one host only",
                )
            worst = min(span, key=lambda h: h.overlay_mtu)
            if bridge.mtu is not None and bridge.mtu > worst.overlay_mtu:
                self.src.error(
                    self._bridge_value(name, "mtu"),
                    f"bridges.{name}.mtu",
                    f"mtu {bridge.mtu} does not fit the VXLAN overlay: at most "
                    f"{worst.overlay_mtu} (host {worst.name}'s mtu {worst.mtu} less "
                    f"{worst.overhead} bytes of VXLAN over IPv{worst.address.version})",
                )
            out[name] = bridge.mtu or worst.overlay_mtu
        return out

    def reserve_gateways(self, pools: dict[str, Pool], version: int) -> None:
        """The gateways of a bridge's 2nd, 3rd, ... host: the next free addresses, taken
        before any container's automatic address (the first host has the bridge's own)."""
        key = "subnet" if version == 4 else "subnet6"
        for bname, span in self.spans.items():
            pool = pools.get(bname)
            if pool is None:
                continue
            for host in span[1:]:
                assert host is not None
                address = pool.allocate()
                if address is None:
                    self.src.error(
                        self._bridge_value(bname, key),
                        f"bridges.{bname}.{key}",
                        f"no address left in {pool.subnet} for the gateway of bridge {bname} on "
                        f"host {host}",
                    )
                    continue
                self.used[address] = f"the gateway of bridge {bname} on host {host}"
                if isinstance(address, IPv4Address):
                    self.gateways.setdefault(bname, {})[host] = address
                else:
                    self.gateways6.setdefault(bname, {})[host] = address

    def vnis(self, spec_name: str, links: list[m.Link]) -> tuple[dict[str, int], list[int]]:
        """VNIs of every bridge and link (with hosts): given ones first, then derived ones in
        declaration order, each moved past any VNI already taken."""
        if not self.hosts:
            return {}, []
        taken: dict[int, str] = {}

        def claim(vni: int, node: Node, path: str) -> None:
            if vni in taken:
                self.src.error(node, path, f"VNI {vni} is already used by {taken[vni]}")
            taken.setdefault(vni, path.rpartition(".")[0])

        for b, _, _ in self.draft.bridges:
            if b.vni is not None:
                claim(b.vni, self._bridge_value(b.name, "vni"), f"bridges.{b.name}.vni")
        for src in self.link_src:
            if src.vni is not None and src.vni_node is not None:
                claim(src.vni, src.vni_node, f"{src.loc.path}.vni")

        def derive(seed: str) -> int:
            vni = int(hashlib.sha256(seed.encode()).hexdigest()[:6], 16) % VNI_MAX + 1
            while vni in taken:
                vni = vni % VNI_MAX + 1
            taken[vni] = seed
            return vni

        bridge_vnis = {
            b.name: b.vni if b.vni is not None else derive(f"{spec_name}/bridge/{b.name}")
            for b, _, _ in self.draft.bridges
        }
        link_vnis = []
        for link, src in zip(links, self.link_src, strict=True):
            ea, eb = (f"{ep.container}:{ep.ifname}" for ep in (link.a, link.b))
            link_vnis.append(
                src.vni if src.vni is not None else derive(f"{spec_name}/link/{ea}/{eb}")
            )
        return bridge_vnis, link_vnis

    # -- bridges --------------------------------------------------------------

    def check_overlaps(self, bridges: list[tuple[m.Bridge, Node, bool]]) -> None:
        # sorted by start, any overlap shows up between neighbours: O(n log n)
        ordered = sorted(
            bridges, key=lambda t: (int(t[0].subnet.network_address), t[0].subnet.prefixlen)
        )
        for (a, _, _), (b, bnode, _) in zip(ordered, ordered[1:], strict=False):
            if int(b.subnet.network_address) <= int(a.subnet.broadcast_address):
                first, second = sorted((a, b), key=lambda x: (x.loc.line, x.loc.col))
                node = bnode if second is b else next(n for br, n, _ in bridges if br is a)
                self.src.error(
                    node,
                    f"bridges.{second.name}.subnet",
                    f"subnet {second.subnet} overlaps {first.subnet} of bridge {first.name}",
                )

    def check_overlaps6(self, bridges: list[tuple[m.Bridge, Node, bool]]) -> None:
        """The IPv6 twin of check_overlaps, on subnet6."""
        dual = [(b, b.subnet6) for b, _, _ in bridges if b.subnet6 is not None]
        ordered = sorted(dual, key=lambda t: (int(t[1].network_address), t[1].prefixlen))
        for (a, asub), (b, bsub) in zip(ordered, ordered[1:], strict=False):
            if int(bsub.network_address) <= int(asub.broadcast_address):
                (first, fsub), (second, ssub) = sorted(
                    ((a, asub), (b, bsub)), key=lambda x: (x[0].loc.line, x[0].loc.col)
                )
                node = self._bridge_value(second.name, "subnet6")
                self.src.error(
                    node,
                    f"bridges.{second.name}.subnet6",
                    f"subnet6 {ssub} overlaps {fsub} of bridge {first.name}",
                )

    def _bridge_value(self, bridge: str, key: str) -> Node:
        """The node of `bridges.BRIDGE.KEY` (or of the bridge, without the key)."""
        for b, _, _ in self.draft.bridges:
            if b.name == bridge:
                nodes = self.draft.bridge_nodes[bridge]
                return nodes.get(key, nodes[""])
        raise KeyError(bridge)

    def bridge_pools6(self, bridges: list[tuple[m.Bridge, Node, bool]]) -> dict[str, Pool]:
        pools = {}
        for bridge, _, _ in bridges:
            if bridge.subnet6 is None or bridge.address6 is None:
                continue
            pool = Pool(bridge.subnet6)
            why = pool.why_unusable(bridge.address6)
            if why:
                node = self._bridge_value(bridge.name, "address6")
                self.src.error(node, f"bridges.{bridge.name}.address6", why)
                continue
            pool.reserve(bridge.address6)
            self.used.setdefault(bridge.address6, f"the address6 of bridge {bridge.name}")
            pools[bridge.name] = pool
        return pools

    def bridge_pools(self, bridges: list[tuple[m.Bridge, Node, bool]]) -> dict[str, Pool]:
        pools = {}
        for bridge, node, explicit in bridges:
            pool = Pool(bridge.subnet)
            why = pool.why_unusable(bridge.address)
            if why:
                self.src.error(node, f"bridges.{bridge.name}.address", why)
            else:
                pool.reserve(bridge.address)
            if not explicit and why:
                continue
            pools[bridge.name] = pool
        return pools

    def bridge_ports(
        self, bridges: list[tuple[m.Bridge, Node, bool]], ifaces: dict[str, list[m.Interface]]
    ) -> None:
        counts: dict[str, int] = {b.name: len(b.uplinks) for b, _, _ in bridges}
        for legs in ifaces.values():
            for iface in legs:
                counts[iface.bridge] = counts.get(iface.bridge, 0) + 1
        for bridge, _, _ in bridges:
            if counts[bridge.name] > BR_MAX_PORTS:
                self.src.error_at(
                    bridge.loc.line,
                    bridge.loc.col,
                    bridge.loc.path,
                    f"{counts[bridge.name]} interfaces on one bridge; Linux allows at most "
                    f"{BR_MAX_PORTS}: split the containers over several bridges",
                )

    # -- containers ---------------------------------------------------------------

    def modes(self, bridges: dict[str, m.Bridge]) -> dict[str, tuple[str, str | None]]:
        """Each container's network mode, with container: chains followed to the end."""
        declared = {c.name: c for c in self.draft.containers}
        raw: dict[str, tuple[str, str | None]] = {}
        for c in self.draft.containers:
            path = f"containers.{c.name}.network"
            net = c.network
            node = c.network_node or c.node
            if c.network is None and c.network_node is not None:
                continue  # already reported
            if net is None:
                if any(i.bridge is not None for i in c.ifaces):
                    raw[c.name] = ("bridge", None)
                elif len(bridges) == 1 and len(self.draft.declared_bridges) == 1:
                    raw[c.name] = ("bridge", next(iter(bridges)))
                elif len(self.draft.declared_bridges) != 1:  # one invalid one: reported
                    n = len(self.draft.declared_bridges)
                    why = "there are no bridges" if n == 0 else f"there are {n} bridges"
                    self.src.error(
                        c.node,
                        path,
                        f"missing 'network': {why}; say none, host, container:NAME or a bridge",
                    )
                continue
            if net in ("none", "host"):
                raw[c.name] = (net, None)
            elif net.startswith("container:"):
                target = net.partition(":")[2]
                if target not in declared:
                    if target not in self.draft.declared_containers:  # else: reported
                        self.src.error(
                            node, path, f"no container named {target!r}{_hint(target, declared)}"
                        )
                    continue
                raw[c.name] = ("container", target)
            elif net in bridges:
                raw[c.name] = ("bridge", net)
            elif net not in self.draft.declared_bridges:  # an invalid bridge is reported
                hint = _hint(net, [*self.draft.declared_bridges, "none", "host"])
                hint = hint or "; say a bridge name, none, host or container:NAME"
                self.src.error(node, path, f"no bridge named {net!r}{hint}")
            if c.ifaces and c.ifaces[0].bridge is not None and net is not None:
                self.src.error(node, path, "give either 'network' or 'interfaces', not both")
        resolved: dict[str, tuple[str, str | None]] = {}
        for c in self.draft.containers:
            if c.name not in raw:
                continue
            mode, arg = raw[c.name]
            if mode != "container":
                resolved[c.name] = raw[c.name]
                self.mode_keys(c, mode)
                continue
            seen = [c.name]
            hop: str | None = arg
            while hop is not None and raw.get(hop, ("", None))[0] == "container":
                if hop in seen:
                    cycle = " -> ".join([*seen[seen.index(hop) :], hop])
                    self.src.error(
                        c.network_node or c.node,
                        f"containers.{c.name}.network",
                        f"container: cycle {cycle}",
                    )
                    hop = None
                    break
                seen.append(hop)
                hop = raw[hop][1]
            if hop is None or hop not in raw:
                continue
            final_mode = raw[hop][0]
            resolved[c.name] = ("host", None) if final_mode == "host" else ("container", hop)
            self.mode_keys(c, "container")
        return resolved

    def mode_keys(self, c: _Container, mode: str) -> None:
        """Keys that need a namespace of the container's own are errors in other modes."""
        if mode in ("host", "container"):
            target = (c.network or "").partition(":")[2]
            whose = "the host's" if mode == "host" and not target else f"{target}'s"
            for key in (*NETNS_ONLY_KEYS, "netns", "pid", "expose"):
                if key in c.present:
                    self.src.error(
                        c.present[key],
                        f"containers.{c.name}.{key}",
                        f"'{key}' cannot be used with 'network: {c.network}': the container "
                        f"uses {whose} network namespace",
                    )
        if mode == "none":
            for key in (*SHORT_IF_KEYS, "interfaces", "ports"):
                if key in c.present and (key != "interfaces"):
                    self.src.error(
                        c.present[key],
                        f"containers.{c.name}.{key}",
                        f"'{key}' needs a bridge; network: none has only lo",
                    )

    def netns_names(self, modes: dict[str, tuple[str, str | None]]) -> dict[str, str]:
        out: dict[str, str] = {}
        owner: dict[str, str] = {}
        for c in self.draft.containers:
            mode = modes.get(c.name, ("", None))[0]
            if mode not in ("bridge", "none"):
                continue
            netns = c.netns or c.name
            if netns in owner:
                self.src.error(
                    c.present.get("netns", c.node),
                    f"containers.{c.name}.netns",
                    f"netns {netns!r} is already used by container {owner[netns]}; "
                    f"to share it, use network: container:{owner[netns]}",
                )
                continue
            owner[netns] = c.name
            out[c.name] = netns
        for c in self.draft.containers:
            mode, target = modes.get(c.name, ("", None))
            if mode == "container" and target in out:
                out[c.name] = out[target]
        return out

    def interfaces(
        self,
        modes: dict[str, tuple[str, str | None]],
        bridges: dict[str, m.Bridge],
        pools: dict[str, Pool],
        spec_name: str,
    ) -> dict[str, list[m.Interface]]:
        statics: list[tuple[_Container, _Iface, str]] = []
        legs: list[tuple[_Container, _Iface, str]] = []
        for c in self.draft.containers:
            mode, arg = modes.get(c.name, ("", None))
            if mode != "bridge":
                continue
            for i, iface in enumerate(c.ifaces):
                bname = iface.bridge if iface.bridge is not None else arg
                if bname in bridges:
                    legs.append((c, iface, bname))
                    if iface.address is not None:
                        statics.append((c, iface, _iface_path(c.name, i, iface)))
                elif iface.bridge is not None and bname not in self.draft.declared_bridges:
                    self.src.error(
                        _at(iface.node, "bridge"),
                        join(_iface_path(c.name, i, iface), "bridge"),
                        f"no bridge named {bname!r}{_hint(bname or '', bridges)}",
                    )
        # statics first, so automatic addresses never take one a later container asked for
        used = self.used
        for bridge in bridges.values():
            used.setdefault(bridge.address, f"the address of bridge {bridge.name}")
        for c, iface, path in statics:
            bname = iface.bridge if iface.bridge is not None else modes[c.name][1]
            assert (
                bname is not None and iface.address is not None and iface.address_node is not None
            )
            bridge = bridges[bname]
            apath = join(path, "address")
            prefix = iface.prefix
            if prefix is not None and prefix != bridge.subnet.prefixlen:
                self.src.error(
                    iface.address_node,
                    apath,
                    f"prefix /{prefix} differs from bridge {bname}'s subnet {bridge.subnet}; "
                    f"write {iface.address}/{bridge.subnet.prefixlen} or just {iface.address}",
                )
                continue
            pool = pools.get(bname)
            why = _misfit(iface.address, bridge)
            if why:
                self.src.error(iface.address_node, apath, why)
                continue
            if iface.address in used:
                self.src.error(
                    iface.address_node, apath, f"{iface.address} is already {used[iface.address]}"
                )
                continue
            used[iface.address] = f"used by {path}"
            if pool is not None:
                pool.reserve(iface.address)
        self.reserve_gateways(pools, 4)
        chosen: dict[str, list[tuple[_Iface, str, m.IPAddress]]] = {}
        for c, iface, bname in legs:
            pool = pools.get(bname)
            address: m.IPAddress | None = iface.address
            if address is None:
                if pool is None:
                    continue
                address = pool.allocate()
                if address is None:
                    bridge = bridges[bname]
                    self.src.error(
                        iface.node,
                        f"containers.{c.name}",
                        f"no address left in bridge {bname}'s subnet {bridge.subnet}: "
                        f"all {pool.capacity()} usable addresses are taken",
                    )
                    continue
                used[address] = f"given to containers.{c.name}"
            rows = chosen.setdefault(c.name, [])
            self.iface_src[(c.name, len(rows))] = iface
            rows.append((iface, bname, address))
        names = self._host_ifnames(chosen, spec_name)
        return {
            cname: [
                m.Interface(
                    bridge=bname,
                    ifname=iface.ifname,
                    # from the integer: no parsing
                    address=IPv4Interface((int(address), bridges[bname].subnet.prefixlen)),
                    host_ifname=name,
                    mac=iface.mac,
                    loc=iface.loc,
                )
                for (iface, bname, address), name in zip(rows, names[cname], strict=True)
            ]
            for cname, rows in chosen.items()
        }

    def interfaces6(
        self,
        modes: dict[str, tuple[str, str | None]],
        bridges: dict[str, m.Bridge],
        pools: dict[str, Pool],
        ifaces: dict[str, list[m.Interface]],
    ) -> None:
        """IPv6 addresses of the legs on dual-stack bridges: the twin of `interfaces`,
        statics first, then the rest in declaration order."""
        if all(b.subnet6 is None for b in bridges.values()) and all(
            src.address6 is None for src in self.iface_src.values()
        ):
            return  # IPv4 only: no address to give, none to check
        legs: list[tuple[str, int, _Iface, m.Bridge]] = []
        for c in self.draft.containers:
            for k, leg in enumerate(ifaces.get(c.name, ())):
                legs.append((c.name, k, self.iface_src[(c.name, k)], bridges[leg.bridge]))
        for cname, k, src, bridge in legs:
            if src.address6 is None or src.address6_node is None:
                continue
            path = ifaces[cname][k].loc.path
            apath = join(path, "address6")
            node = src.address6_node
            if bridge.subnet6 is None or bridge.address6 is None:
                self.src.error(
                    node, apath, f"bridge {bridge.name} has no subnet6; give it one for IPv6"
                )
                continue
            if src.prefix6 is not None and src.prefix6 != bridge.subnet6.prefixlen:
                self.src.error(
                    node,
                    apath,
                    f"prefix /{src.prefix6} differs from bridge {bridge.name}'s subnet6 "
                    f"{bridge.subnet6}; write {src.address6}/{bridge.subnet6.prefixlen} "
                    f"or just {src.address6}",
                )
                continue
            why = _misfit6(src.address6, bridge)
            if why:
                self.src.error(node, apath, why)
                continue
            if src.address6 in self.used:
                self.src.error(node, apath, f"{src.address6} is already {self.used[src.address6]}")
                continue
            self.used[src.address6] = f"used by {path}"
            pool = pools.get(bridge.name)
            if pool is not None:
                pool.reserve(src.address6)
        self.reserve_gateways(pools, 6)
        for cname, k, src, bridge in legs:
            pool = pools.get(bridge.name)
            if pool is None or bridge.subnet6 is None:
                continue
            address = src.address6
            if address is None:
                allocated = pool.allocate()
                if allocated is None:
                    self.src.error(
                        src.node,
                        f"containers.{cname}",
                        f"no address left in bridge {bridge.name}'s subnet6 {bridge.subnet6}: "
                        f"all {pool.capacity()} usable addresses are taken",
                    )
                    continue
                address = IPv6Address(int(allocated))
                self.used[address] = f"given to containers.{cname}"
            elif _misfit6(address, bridge):
                continue
            leg = ifaces[cname][k]
            ifaces[cname][k] = replace(
                leg, address6=IPv6Interface((int(address), bridge.subnet6.prefixlen))
            )

    def _host_ifnames(
        self, chosen: dict[str, list[tuple[_Iface, str, m.IPAddress]]], spec_name: str
    ) -> dict[str, list[str]]:
        """Each leg's host-side name: its own, or one derived from the spec, the container
        and the leg, taken by nothing else. Known before the legs are built, so each is
        built once."""
        taken = {i.host_ifname for rows in chosen.values() for i, _, _ in rows if i.host_ifname}
        taken.update(b.name for b, _, _ in self.draft.bridges)
        names: dict[str, list[str]] = {}
        for cname, rows in chosen.items():
            names[cname] = out = []
            for iface, _, _ in rows:
                if iface.host_ifname:
                    out.append(iface.host_ifname)
                    continue
                salt = 0
                while True:
                    seed = f"{spec_name}\0{cname}\0{iface.ifname}\0{salt}"
                    h = hashlib.sha256(seed.encode()).hexdigest()[:6]
                    candidate = f"v{h}-{cname}"[:15].rstrip("-.")
                    if candidate not in taken:
                        break
                    salt += 1
                taken.add(candidate)
                out.append(candidate)
        return names

    def check_host_ifnames(
        self,
        bridges: list[tuple[m.Bridge, Node, bool]],
        ifaces: dict[str, list[m.Interface]],
        vnis: dict[str, int],
    ) -> None:
        """Interface names on each host (the host namespace): unique there."""
        seen: dict[tuple[str | None, str], str] = {}
        for bridge, _, _ in bridges:
            span = self.spans.get(bridge.name, [None])
            for host in span:
                seen[(host, bridge.name)] = f"bridge {bridge.name}"
            if len(span) >= 2 and bridge.name in vnis:
                for host in span:
                    seen[(host, f"vx{vnis[bridge.name]}")] = f"bridge {bridge.name}'s VXLAN device"
        for bridge, _, _ in bridges:
            host = self.spans.get(bridge.name, [None])[0]
            for up in bridge.uplinks:
                if (host, up) in seen:
                    self.src.error_at(
                        bridge.loc.line,
                        bridge.loc.col,
                        f"bridges.{bridge.name}.uplinks",
                        f"uplink {up} is already {seen[(host, up)]}",
                    )
                seen[(host, up)] = f"an uplink of bridge {bridge.name}"
        for c in self.draft.containers:
            host = self.placed.get(c.name)
            for k, iface in enumerate(ifaces.get(c.name, ())):
                name = iface.host_ifname
                if name == "lo" or (host, name) in seen:
                    what = "the loopback device" if name == "lo" else seen[(host, name)]
                    if host is not None and name != "lo":
                        what += f" on host {host}"
                    src = self.iface_src[(c.name, k)]
                    self.src.error(
                        src.host_ifname_node or src.node,
                        f"{iface.loc.path}.host_ifname",
                        f"host interface name {name!r} is already {what}",
                    )
                seen[(host, name)] = f"the host end of {c.name}'s {iface.ifname}"

    def namespace_ifnames(self, ifaces: dict[str, list[m.Interface]], links: list[m.Link]) -> None:
        names: dict[str, dict[str, str]] = {}
        for c in self.draft.containers:
            for k, iface in enumerate(ifaces.get(c.name, ())):
                per = names.setdefault(c.name, {"lo": "the loopback device"})
                if iface.ifname in per:
                    src = self.iface_src[(c.name, k)]
                    self.src.error(
                        src.ifname_node or src.node,
                        f"{iface.loc.path}.ifname",
                        f"{c.name} already has an interface {iface.ifname!r} ({per[iface.ifname]})",
                    )
                per[iface.ifname] = f"its leg on bridge {iface.bridge}"
        for link, src_link in zip(links, self.link_src, strict=True):
            lpath = src_link.loc.path
            for j, ep in enumerate((link.a, link.b)):
                per = names.setdefault(ep.container, {"lo": "the loopback device"})
                if ep.ifname in per:
                    self.src.error(
                        src_link.endpoints[j][2],
                        f"{lpath}.endpoints[{j}]",
                        f"{ep.container} already has an interface {ep.ifname!r} ({per[ep.ifname]})",
                    )
                per[ep.ifname] = f"an end of {lpath}"
        self._ns_ifnames = names

    def links(
        self, modes: dict[str, tuple[str, str | None]], netns_of: dict[str, str]
    ) -> list[m.Link]:
        out = []
        declared = {c.name for c in self.draft.containers}
        for link in self.draft.links:
            lpath = link.loc.path  # links[i], counting the links pass 1 rejected
            eps = []
            for j, (cname, ifname, enode) in enumerate(link.endpoints):
                path = f"{lpath}.endpoints[{j}]"
                if cname not in declared:
                    if cname not in self.draft.declared_containers:  # else: reported
                        self.src.error(
                            enode, path, f"no container named {cname!r}{_hint(cname, declared)}"
                        )
                    continue
                mode = modes.get(cname, ("", None))[0]
                if mode not in ("bridge", "none"):
                    if mode:
                        self.src.error(
                            enode,
                            path,
                            f"container {cname} has network: {mode}; "
                            "a link needs a namespace of its own",
                        )
                    continue
                if cname not in netns_of:
                    continue  # its netns clashes with another's: reported
                address = link.addresses[j][0] if link.addresses else None
                eps.append(m.Endpoint(cname, netns_of[cname], ifname, address))
            if len(eps) != 2:
                continue
            if eps[0].container == eps[1].container and eps[0].ifname == eps[1].ifname:
                self.src.error(
                    link.endpoints[1][2],
                    f"{lpath}.endpoints[1]",
                    "both endpoints are the same interface",
                )
                continue
            for j, (address, anode) in enumerate(link.addresses):
                if address.ip in self.used:
                    self.src.error(
                        anode,
                        f"{lpath}.addresses[{j}]",
                        f"{address.ip} is already {self.used[address.ip]}",
                    )
                self.used[address.ip] = f"used by {lpath}"
            self.link_src.append(link)
            out.append(m.Link(eps[0], eps[1], loc=link.loc))
        return out

    def routes(
        self,
        c: _Container,
        legs: list[m.Interface] | tuple[m.Interface, ...],
        link_ifnames: list[str],
    ) -> tuple[m.Route, ...]:
        out = []
        devs = {"lo"} | {i.ifname for i in legs} | set(link_ifnames)
        for route, node in c.routes:
            path = route.loc.path  # the index among all items, invalid ones included
            if route.dev is not None and route.dev not in devs:
                self.src.error(
                    _at(node, "dev"),
                    join(path, "dev"),
                    f"no interface {route.dev!r} in {c.name} (has: {', '.join(sorted(devs))})",
                )
                continue
            if route.to is None and c.default_route and legs and route.ipv6:
                if legs[0].address6 is not None:
                    self.src.error(
                        _at(node, "to"),
                        join(path, "to"),
                        f"{c.name} already gets an IPv6 'default via "
                        f"{self.draft_gateway(legs[0], 6)}'; "
                        "set default_route: false to route default elsewhere",
                    )
                    continue
            elif route.to is None and c.default_route and legs:
                self.src.error(
                    _at(node, "to"),
                    join(path, "to"),
                    f"{c.name} already gets 'default via {self.draft_gateway(legs[0])}'; "
                    "set default_route: false to route default elsewhere",
                )
                continue
            out.append(route)
        return tuple(out)

    def draft_gateway(self, iface: m.Interface, version: int = 4) -> str:
        for b, _, _ in self.draft.bridges:
            if b.name == iface.bridge:
                return str(b.address if version == 4 else b.address6)
        return "?"

    def ports(self) -> dict[str, list[m.Port]]:
        """Host ports: explicit ones checked for clashes, missing ones allocated from 49153."""
        # per host: the same host port on two hosts is two different sockets
        taken: dict[tuple[str | None, str, int], list[tuple[IPv4Address | None, str]]] = {}
        out: dict[str, list[m.Port]] = {}
        pending: list[tuple[_Container, str, str, IPv4Address | None, int, Node]] = []
        for c in self.draft.containers:
            seen_cp: set[tuple[str, int, IPv4Address | None, int | None]] = set()
            for proto, host_ip, host_port, cport, node, path in c.ports:
                if (proto, cport, host_ip, host_port) in seen_cp:
                    self.src.error(node, path, "the same port mapping is given twice")
                    continue
                seen_cp.add((proto, cport, host_ip, host_port))
                if host_port is None:
                    pending.append((c, path, proto, host_ip, cport, node))
                    continue
                host = self.placed.get(c.name)
                clash = next(
                    (
                        who
                        for ip, who in taken.get((host, proto, host_port), ())
                        if ip is None or host_ip is None or ip == host_ip
                    ),
                    None,
                )
                if clash:
                    on = f" on host {host}" if host is not None else ""
                    self.src.error(
                        node,
                        path,
                        f"host port {host_port}/{proto} is already published{on} by {clash}",
                    )
                    continue
                taken.setdefault((host, proto, host_port), []).append((host_ip, path))
                out.setdefault(c.name, []).append(
                    m.Port(
                        cast(m.Proto, proto), cport, host_port, host_ip, loc=self._loc(node, path)
                    )
                )
        next_port: dict[tuple[str | None, str], int] = {}
        for c, path, proto, host_ip, cport, node in pending:
            host = self.placed.get(c.name)
            port = next_port.get((host, proto), FIRST_EPHEMERAL_PORT)
            while port <= 65535 and (host, proto, port) in taken:
                port += 1
            if port > 65535:
                self.src.error(
                    node, path, f"no free host port left for {proto} above {FIRST_EPHEMERAL_PORT}"
                )
                continue
            next_port[(host, proto)] = port + 1
            taken.setdefault((host, proto, port), []).append((host_ip, path))
            out.setdefault(c.name, []).append(
                m.Port(cast(m.Proto, proto), cport, port, host_ip, loc=self._loc(node, path))
            )
        for c in self.draft.containers:  # keep declaration order within a container
            if c.name in out:
                out[c.name].sort(key=lambda p: (p.loc.line, p.loc.col))
        return out

    def _loc(self, node: Node, path: str) -> m.Loc:
        mark = node.start_mark
        return m.Loc(self.file, mark.line + 1, mark.column + 1, path)

    def link_refs(self, c: _Container) -> tuple[m.LinkRef, ...]:
        declared = self.declared
        out = []
        for ref, node in c.links:
            path = ref.loc.path  # the index among all items, invalid ones included
            if ref.name not in declared:
                if ref.name not in self.draft.declared_containers:  # else: reported
                    self.src.error(
                        node, path, f"no container named {ref.name!r}{_hint(ref.name, declared)}"
                    )
            elif ref.name == c.name:
                self.src.error(node, path, "a container cannot link to itself")
            else:
                out.append(ref)
        return tuple(out)

    # -- checks -------------------------------------------------------------------

    def check_outside(self, bridges: dict[str, m.Bridge], links: list[m.Link]) -> None:
        """`outside` stands for a host beyond this one: never the spec's own addresses."""
        address, node = self.draft.outside, self.draft.outside_node
        if address is None or node is None:
            return
        why = None
        if address.is_loopback or address.is_unspecified or address.is_multicast:
            why = f"{address} is not the address of another host"
        for bridge in bridges.values():
            if address in bridge.subnet:
                why = f"{address} is inside bridge {bridge.name}'s subnet {bridge.subnet}"
        for link in links:
            for ep in (link.a, link.b):
                if ep.address is not None and address == ep.address.ip:
                    why = f"{address} is the address of {ep.container}'s {ep.ifname}"
        if why is not None:
            self.src.error(node, "outside", f"{why}; outside must be beyond every bridge")

    def checks(self, containers: list[m.Container], links: list[m.Link]) -> list[m.Check]:
        """References of `checks:`; a container probed must have an address to probe."""
        by_name = {c.name: c for c in containers}
        linked = {ep.container for link in links for ep in (link.a, link.b) if ep.address}
        out = []
        for ch in self.draft.checks:
            path = ch.loc.path
            ok = True
            if ch.src not in by_name:
                ok = False
                if ch.src not in self.draft.declared_containers:  # else: reported
                    self.src.error(
                        ch.src_node,
                        f"{path}.from",
                        f"no container named {ch.src!r}{_hint(ch.src, by_name)}",
                    )
            kind: m.Target = "container"
            address: m.IPAddress | None = None
            if ch.dst in by_name:
                target = by_name[ch.dst]
                owner = by_name.get(target.share or "", target)
                if owner.address is None and owner.name not in linked:
                    ok = False
                    why = (
                        "uses the host's network: it has no address of its own to probe; "
                        "give a host address instead"
                        if target.mode == "host"
                        else "has no address on a bridge or link to probe"
                    )
                    self.src.error(ch.dst_node, f"{path}.to", f"container {ch.dst} {why}")
            elif ch.dst in self.draft.declared_containers:
                ok = False  # invalid, and reported
            elif ch.dst == "outside":
                kind, address = "outside", self.draft.outside
                if address is None:
                    ok = False
                    if self.draft.outside_node is None:  # else: its error is reported
                        self.src.error(
                            ch.dst_node,
                            f"{path}.to",
                            "'to: outside' needs the top-level key 'outside: ADDRESS', a host "
                            "beyond every bridge (netgen never guesses one: the probe sends "
                            "real traffic there)",
                        )
            else:
                try:
                    kind, address = "address", ip_address(ch.dst)
                except ValueError:
                    ok = False
                    self.src.error(
                        ch.dst_node,
                        f"{path}.to",
                        f"no container named {ch.dst!r}{_hint(ch.dst, by_name)}; "
                        "'to' takes a container, outside or an IP address",
                    )
            if not ok:
                continue
            port = ch.port
            out.append(
                m.Check(
                    ch.src,
                    ch.dst,
                    kind,
                    address,
                    port.port if port is not None else None,
                    port.proto if port is not None else "tcp",
                    ch.expect,
                    ch.loc,
                )
            )
        return out


def _misfit(address: IPv4Address, bridge: m.Bridge) -> str | None:
    """Why a container cannot have `address` on `bridge`, or None."""
    where = f"bridge {bridge.name}'s subnet {bridge.subnet}"
    if address not in bridge.subnet:
        return f"{address} is outside {where}"
    first, last = usable(bridge.subnet)
    if int(address) < first:
        return f"{address} is the network address of {where}"
    if int(address) > last:
        return f"{address} is the broadcast address of {where}"
    if address == bridge.address:
        return f"{address} is the address of bridge {bridge.name} itself (its containers' gateway)"
    return None


def _misfit6(address: IPv6Address, bridge: m.Bridge) -> str | None:
    """Why a container cannot have IPv6 `address` on `bridge`, or None."""
    assert bridge.subnet6 is not None
    where = f"bridge {bridge.name}'s subnet6 {bridge.subnet6}"
    if address not in bridge.subnet6:
        return f"{address} is outside {where}"
    if int(address) < usable(bridge.subnet6)[0]:
        return f"{address} is the subnet-router anycast address of {where}"
    if address == bridge.address6:
        return f"{address} is the address6 of bridge {bridge.name} itself (its containers' gateway)"
    return None


def _hint(word: str, choices: Any) -> str:
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
