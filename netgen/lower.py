"""Lower a validated spec to the ops that build it, in an order the kernel accepts.

Order: bridges, then each container's namespace, legs and files, then the
point-to-point links, then the containers' extra routes (which may use a
link's interface), then the firewall (ports, masquerade, icc, links) and the
sysctls it needs, once every address is wired, then the waits for duplicate
address detection on IPv6 addresses added without `nodad`. Teardown is the reverse of this list.

A spec with `hosts:` lowers once per host: that host's part of each bridge it spans
(with its own gateway and, across hosts, a VXLAN device and one flood entry per peer
host), its containers, its end of each link (a VXLAN tunnel when the other end runs
elsewhere) and its firewall.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from ipaddress import IPv6Interface, ip_interface

from . import firewall
from . import model as m
from . import ops as o
from .errors import UsageError

NETNS_DIR = "/var/run/netns"
ETC_NETNS = "/etc/netns"


def pick_host(spec: m.Spec, host: str | None) -> str | None:
    """The host to lower for: `host` checked against the spec, or the only one there is.

    None for a spec without `hosts:` (the local host). A spec of 2+ hosts has no
    default: each host's part is a different script.
    """
    names = [h.name for h in spec.hosts]
    if host is None:
        if len(names) >= 2:
            raise UsageError(
                f"spec {spec.name!r} spans {len(names)} hosts ({', '.join(names)}): "
                "say which one's part with --host NAME"
            )
        return names[0] if names else None
    if host not in names:
        if not names:
            raise UsageError(
                f"spec {spec.name!r} has no 'hosts:', it runs on the local host: leave out --host"
            )
        close = difflib.get_close_matches(host, names, n=1, cutoff=0.5)  # h4 -> h1
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(
            f"spec {spec.name!r} has no host named {host!r}{hint} (hosts: {', '.join(names)})"
        )
    return host


def lower(spec: m.Spec, host: str | None = None) -> list[o.Op]:
    """The ops that build `host`'s part of the spec (see `pick_host` for None)."""
    here = pick_host(spec, host)
    out: list[o.Op] = []
    for bridge in spec.bridges:
        if here is None or here in bridge.hosts:
            out += _bridge(spec, bridge.on(here), here)
    bridges = {b.name: b.on(here) for b in spec.bridges}
    containers = {c.name: c for c in spec.containers}
    mine = [c for c in spec.containers if c.host == here]
    for c in mine:
        if c.owns_netns:
            out += _container(spec, c, bridges, containers)
    for link in spec.links:
        if link.hosts is None or here in link.hosts:
            out += _link(spec, link, here)
    for c in mine:
        if c.owns_netns:
            for route in c.routes:
                out.append(o.AddRoute(c.netns, route.destination, route.via, route.dev, route.loc))
    out += firewall.lower(spec, here)
    # last, so that detection runs on every address at once while the others are built
    out += [
        o.WaitDad(op.dev, op.address, op.netns, op.loc)
        for op in out
        if isinstance(op, o.AddAddress) and isinstance(op.address, IPv6Interface) and not op.nodad
    ]
    return out


def _bridge(spec: m.Spec, b: m.Bridge, here: str | None) -> list[o.Op]:
    out: list[o.Op] = []
    if not b.external:
        out += [
            o.AddBridge(b.name, spec.name, b.mtu, b.mcast_snooping, b.loc),
            o.AddAddress(b.name, b.gateway, None, b.loc),
        ]
        if b.gateway6 is not None:
            out.append(o.AddAddress(b.name, b.gateway6, None, b.loc, nodad=not b.dad))
        out.append(o.LinkUp(b.name, None, b.loc))
    if b.overlay and here is not None and b.vni is not None:
        me = spec.host(here)
        vx = b.vxlan_dev
        out += [
            o.AddVxlan(
                vx,
                None,
                b.vni,
                me.address,
                None,
                b.vxlan_port,
                me.dev,
                spec.name,
                b.mtu,
                autoconf=False,  # a bridge port, like the host end of a leg: no address
                loc=b.loc,
            ),
            o.SetMaster(vx, b.name, b.loc),
            o.LinkUp(vx, None, b.loc),
        ]
        out += [
            o.AddFdb(vx, spec.host(peer).address, spec.name, b.loc)
            for peer in b.hosts
            if peer != here
        ]
    loc = b.uplinks_loc if b.uplinks_loc.line else replace(b.loc, path=f"{b.loc.path}.uplinks")
    for up in b.uplinks:
        out += [o.AttachUplink(up, b.name, loc), o.LinkUp(up, None, loc)]
    return out


def _container(
    spec: m.Spec, c: m.Container, bridges: dict[str, m.Bridge], containers: dict[str, m.Container]
) -> list[o.Op]:
    assert c.netns is not None
    ns = c.netns
    out: list[o.Op] = []
    if c.pid is not None:
        out.append(o.AdoptNetns(ns, c.pid, spec.name, c.loc))
    else:
        out.append(o.AddNetns(ns, spec.name, c.loc))
    out.append(o.LinkUp("lo", ns, c.loc))
    for i, leg in enumerate(c.interfaces):
        bridge = bridges[leg.bridge]
        out += [
            o.AddVeth(
                leg.host_ifname,
                None,
                leg.ifname,
                ns,
                spec.name,
                mtu=bridge.mtu,
                peer_mac=leg.mac,
                # dual-stack: the container keeps its link-local address (neighbour
                # discovery, router advertisements); IPv4-only skips it, which is faster
                peer_autoconf=leg.address6 is not None,
                # the host end is a bridge port: no link-local address, DAD, RS or MLD
                # (each port's IPv6 routes made every port change O(ports) in the kernel)
                autoconf=False,
                loc=leg.loc,
            ),
            o.SetMaster(leg.host_ifname, bridge.name, leg.loc),
            o.LinkUp(leg.host_ifname, None, leg.loc),
            o.AddAddress(leg.ifname, leg.address, ns, leg.loc),
        ]
        if leg.address6 is not None:
            out.append(o.AddAddress(leg.ifname, leg.address6, ns, leg.loc, nodad=not bridge.dad))
        out.append(o.LinkUp(leg.ifname, ns, leg.loc))
        if i == 0 and c.default_route:
            out.append(o.AddRoute(ns, "default", bridge.address, leg.ifname, leg.loc))
            if leg.address6 is not None and bridge.address6 is not None:
                out.append(o.AddRoute(ns, "default", bridge.address6, leg.ifname, leg.loc))
    out += _files(spec, c, containers)
    return out


def _link(spec: m.Spec, link: m.Link, here: str | None) -> list[o.Op]:
    a, b = link.a, link.b
    ipv6 = a.address is not None and a.address.version == 6
    if link.crosses and link.hosts is not None and link.vni is not None:
        # a VXLAN tunnel between the two hosts: this host builds its own end only
        ends = ((a, b), (b, a)) if link.hosts[0] == here else ((b, a), (a, b))
        me, peer = spec.host(here or ""), spec.host(link.hosts[1 if link.hosts[0] == here else 0])
        mine = ends[0][0]
        mtu = min(me.overlay_mtu, peer.overlay_mtu)
        out: list[o.Op] = [
            o.AddVxlan(
                mine.ifname,
                mine.netns,
                link.vni,
                me.address,
                peer.address,
                m.VXLAN_PORT,
                me.dev,
                spec.name,
                mtu,
                loc=link.loc,
            )
        ]
        return out + _link_end(*ends[0], link)
    out = [
        o.AddVeth(a.ifname, a.netns, b.ifname, b.netns, spec.name, peer_autoconf=ipv6, loc=link.loc)
    ]
    return out + _link_end(a, b, link) + _link_end(b, a, link)


def _link_end(end: m.Endpoint, other: m.Endpoint, link: m.Link) -> list[o.Op]:
    """One end of a link: its address, up, and (a /32 or /128 address) the route to the other."""
    out: list[o.Op] = []
    if end.address is not None:
        nodad = end.address.version == 6  # a /128 peer: nothing to detect a duplicate on
        out.append(o.AddAddress(end.ifname, end.address, end.netns, link.loc, nodad=nodad))
    out.append(o.LinkUp(end.ifname, end.netns, link.loc))
    if (
        end.address is not None
        and other.address is not None
        and end.address.network.prefixlen == end.address.max_prefixlen
    ):
        peer = ip_interface(other.address.ip)
        out.append(o.AddRoute(end.netns, str(peer.network), None, end.ifname, link.loc))
    return out


def _files(spec: m.Spec, c: m.Container, containers: dict[str, m.Container]) -> list[o.Op]:
    """resolv.conf, hosts and hostname under /etc/netns/<netns>/, as `ip netns exec` shows them."""
    assert c.netns is not None
    files: list[tuple[str, str]] = []
    header = f"# written by netgen for container {c.name} of spec {spec.name}\n"
    if c.dns is not None:
        lines = [f"nameserver {ip}" for ip in c.dns.nameservers]
        if c.dns.search:
            lines.append("search " + " ".join(c.dns.search))
        if c.dns.options:
            lines.append("options " + " ".join(c.dns.options))
        files.append(("resolv.conf", header + "".join(f"{line}\n" for line in lines)))
    entries = _hosts_entries(spec, c, containers)
    if entries or c.hosts or c.hostname:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{ip}\t{' '.join(names)}" for ip, names in entries]
        files.append(("hosts", header + "".join(f"{line}\n" for line in lines)))
    if c.hostname is not None:
        files.append(("hostname", f"{c.hostname}\n"))
    if not files:
        return []
    directory = f"{ETC_NETNS}/{c.netns}"
    out: list[o.Op] = [o.MakeDir(directory, c.loc)]
    out += [o.WriteFile(f"{directory}/{name}", content, c.loc) for name, content in files]
    return out


def _hosts_entries(
    spec: m.Spec, c: m.Container, containers: dict[str, m.Container]
) -> list[tuple[str, list[str]]]:
    """Own name (with hostname), --link targets (NAME and ALIAS), then the spec's hosts."""
    entries: list[tuple[str, list[str]]] = []
    if c.hostname is not None and c.address is not None:
        entries.append((str(c.address), [c.hostname]))
    for ref in c.links:
        target = containers[ref.name]  # spec.container() would scan: quadratic
        address = target.address
        if address is None:
            continue
        names = [ref.name] + ([ref.alias] if ref.alias and ref.alias != ref.name else [])
        entries.append((str(address), names))
    entries += [(str(ip), [host]) for host, ip in c.hosts]
    return entries
