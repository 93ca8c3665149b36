"""Diff the ops a spec needs against the live host: what to remove, what to add, what to refuse.

Ops are grouped into units: an object netgen creates (namespace, bridge, veth,
uplink attachment, directory, file) with the ops that configure it (its
addresses, routes, `up`, master). The previous apply's units (from the record)
that the new spec no longer has, or has changed in a way that cannot be done in
place, are removed first, then every wanted op is checked against the snapshot:
satisfied (skip), missing (run), ours-but-wrong (replace), or in the way of
someone else's object (refuse). Ownership is the mark: the ifalias `netgen:SPEC`
on links netgen creates and on `lo` of namespaces it creates or adopts.

Each decision is applied to the snapshot, so later ops see what earlier ones
will have built (or what a removal takes with it), and a plan computed with
nothing to do means a second apply runs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_interface
from typing import Any, Literal

from . import firewall as fw
from . import ops as o
from .dialects import commands, scratch_names
from .state import NETNS_DIR, Host, Link, Netns, Route, Vxlan

Key = tuple[Any, ...]
Status = Literal["absent", "ours", "unmarked", "foreign"]


@dataclass(frozen=True)
class Step:
    """One op to run. A "-" step removes (`op` is an inverse) the object `undoes` created."""

    action: Literal["+", "-"]
    op: o.Op
    guarded: bool = True  # "-": keep the ownership guards; False for a crashed run's junk
    undoes: o.Op | None = None
    restore: tuple[o.Op, ...] = ()  # "-": the ops that rebuild what it removes (rollback)
    change: bool = False  # part of replacing or rewriting an object: shown as "~"
    firewall: str | None = None  # "-": the firewall dialect that built it, if not today's


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # apply changes nothing if any
    notes: list[str] = field(default_factory=list)  # objects left alone


def plan(
    desired: list[o.Op],
    old: list[o.Op],
    host: Host,
    owner: str,
    *,
    crashed: bool = False,
    recorded: Iterable[o.Op] = (),
    firewall: str = "iptables",
    old_firewall: str | None = None,
    offline: bool = False,
) -> Plan:
    """Steps that take `host` from what it is to `desired`, removing the rest of `old`.

    `old`: the ops a previous apply built (or, for destroy, might have built).
    `crashed`: `old` comes from a run that did not finish, so unmarked objects it
    names are its half-built leftovers. `recorded`: ops netgen's record proves it
    applied (a file there is ours even if someone edited it). `host` must hold the
    outcome of `probes(desired, old, ...)` for the ops `ip` cannot see. `offline`:
    `host` is a model (see `simulated`), not this machine: nothing live is consulted.
    """
    planner = _Planner(host, owner, crashed, list(recorded), firewall, old_firewall or firewall)
    planner.offline = offline
    return planner.run(desired, old)


def simulated(ops: Iterable[o.Op], owner: str, host: Host, *, firewall: str = "iptables") -> Host:
    """`host` as the planner models it once `ops` have run on it (for an offline plan:
    a migration between two versions of a spec). The probes of opaque ops answer yes."""
    planner = _Planner(host, owner, False, [], firewall, firewall)
    for op in ops:
        planner.simulate(op)
        if _opaque(op):
            for argv in [*(_effect(op, firewall) or []), *_presence(op, firewall)]:
                host.probed[argv] = True
    return host


def probes(
    desired: Iterable[o.Op], old: Iterable[o.Op], firewall: str, old_firewall: str | None = None
) -> list[tuple[str, ...]]:
    """The read-only probes the planner needs answered for opaque ops (firewall, sysctl)."""
    out: list[tuple[str, ...]] = []
    for ops, dialect in ((desired, firewall), (old, old_firewall or firewall)):
        for op in ops:
            if _opaque(op):
                out += _effect(op, dialect) or []
                out += _presence(op, dialect)
    return list(dict.fromkeys(out))


def _opaque(op: o.Op) -> bool:
    """Ops whose state `ip` cannot show: their effect is probed with read-only commands."""
    return isinstance(op, (o.AddFirewall, o.SetSysctl))


def _effect(op: o.Op, firewall: str) -> list[tuple[str, ...]] | None:
    """Probes that all exit 0 iff `op` is in place (firewall.py knows how to tell)."""
    return fw.probes(op, firewall)


def _presence(op: o.Op, firewall: str) -> list[tuple[str, ...]]:
    """Probes of which any exits 0 iff something of `op`'s is there: its inverse's guards."""
    inverse = op.inverse()
    if inverse is None:
        return []
    return [c.guard for c in commands(inverse, "iproute2", firewall) if c.guard is not None]


# -- units --------------------------------------------------------------------------


def creates(op: o.Op) -> list[Key]:
    """The objects an op creates; the first names its unit."""
    match op:
        case o.AddNetns(name=name) | o.AdoptNetns(name=name):
            return [("netns", name)]
        case o.AddBridge(name=name):
            return [("link", None, name)]
        case o.AddVeth():
            return [("link", op.netns, op.name), ("link", op.peer_netns, op.peer)]
        case o.AddVxlan(name=name, netns=netns):
            return [("link", netns, name)]
        case o.AttachUplink(dev=dev):
            return [("uplink", dev)]
        case o.MakeDir(path=path):
            return [("dir", path)]
        case o.WriteFile(path=path):
            return [("file", path)]
        case o.AddFirewall(owner=owner):
            return [("firewall", owner)]
        case o.SetSysctl(key=key):
            return [("sysctl", key)]
    return []


def _parents(op: o.Op) -> list[Key]:
    """Objects whose removal takes this op's effect with it, nearest first."""
    match op:
        case o.SetMaster(dev=dev) | o.AddFdb(dev=dev):
            return [("link", None, dev)]
        case o.LinkUp(dev="lo", netns=str(ns)):
            return [("netns", ns)]
        case (
            o.LinkUp(dev=dev, netns=ns)
            | o.AddAddress(dev=dev, netns=ns)
            | o.WaitDad(dev=dev, netns=ns)
        ):
            return [("link", ns, dev), ("uplink", dev)] if ns is None else [("link", ns, dev)]
        case o.AddRoute(netns=ns, dev=dev):
            keys: list[Key] = [("link", ns, dev)] if dev is not None else []
            return keys + ([("netns", ns)] if ns is not None else [])
    return []


def units(ops: Iterable[o.Op]) -> dict[Key, list[o.Op]]:
    """Ops grouped by the object they create or configure, in first-seen order."""
    out: dict[Key, list[o.Op]] = {}
    unit_of: dict[Key, Key] = {}
    for op in ops:
        keys = creates(op)
        if keys:
            for key in keys:
                unit_of[key] = keys[0]
            out.setdefault(keys[0], []).append(op)
            continue
        unit = next((unit_of[k] for k in _parents(op) if k in unit_of), ("op", op))
        out.setdefault(unit, []).append(op)
    return out


def namespaces(ops: Iterable[o.Op]) -> set[str]:
    """Every namespace name the ops mention: what the snapshot must look into."""
    out: set[str] = set()
    for op in ops:
        if isinstance(op, (o.AddNetns, o.AdoptNetns, o.DelNetns, o.ReleaseNetns)):
            out.add(op.name)
        for attr in ("netns", "peer_netns"):
            value = getattr(op, attr, None)
            if isinstance(value, str):
                out.add(value)
    return out


def paths(ops: Iterable[o.Op]) -> set[str]:
    return {
        op.path for op in ops if isinstance(op, (o.MakeDir, o.WriteFile, o.RemoveDir, o.RemoveFile))
    }


# -- the planner --------------------------------------------------------------------


class _Planner:
    def __init__(
        self,
        host: Host,
        owner: str,
        crashed: bool,
        recorded: list[o.Op],
        firewall: str = "iptables",
        old_firewall: str = "iptables",
    ) -> None:
        self.host = host
        self.owner = owner
        self.firewall = firewall
        self.old_firewall = old_firewall
        self.built: set[o.Op] = set()  # opaque ops this plan runs
        self.added: set[tuple[str | None, str, str]] = set()  # addresses it adds: netns, dev
        self.gone: set[Key] = set()  # opaque objects this plan removes
        self.mark = o.mark(owner)
        self.crashed = crashed
        self.recorded_files = {op.path for op in recorded if isinstance(op, o.WriteFile)}
        self.recorded_targets = {
            (op.name, _proc_netns(op.pid)) for op in recorded if isinstance(op, o.AdoptNetns)
        }
        self.out = Plan()
        self.offline = False  # a modelled host: ask nothing of this machine

    def run(self, desired: list[o.Op], old: list[o.Op]) -> Plan:
        self.remove_stale(units(old), units(desired))
        for op in desired:
            self.want(op)
        return self.out

    # -- removals: the old version's objects that must go ---------------------------

    def remove_stale(self, old: dict[Key, list[o.Op]], new: dict[Key, list[o.Op]]) -> None:
        for key in reversed(list(old)):
            unit = old[key]
            root = unit[0]
            if not creates(root):
                inverse = root.inverse() if len(unit) == 1 else None
                if key not in new and inverse is not None:  # e.g. a firewall op: its guard decides
                    self.remove(inverse, root, guarded=True, restore=unit)
                continue
            if self.crashed and isinstance(root, o.AddVeth):
                self.remove_scratch(root)
            status = self.status(root, old=True)
            switched = _opaque(root) and self.old_firewall != self.firewall
            if status == "unmarked" and self.crashed:
                self.remove(_inverse(root), root, guarded=False, change=key in new)
            elif status == "ours" and (switched or _must_replace(key, unit, new.get(key))):
                self.remove(_inverse(root), root, True, unit, change=key in new, old=True)
            elif status in ("unmarked", "foreign") and key not in new:
                self.out.notes.append(f"left alone: {describe(root)}: it {self.whose(root)}")

    def remove_scratch(self, op: o.AddVeth) -> None:
        """The brctl dialect's temporary veth names a crashed run may have left behind."""
        for name in scratch_names(op):
            for ns in dict.fromkeys((None, op.netns, op.peer_netns)):
                if self.host.link(ns, name) is not None:
                    self.remove(o.DelVeth(name, ns, op.owner, op.loc), op, guarded=False)

    def remove(
        self,
        inverse: o.Op,
        root: o.Op,
        guarded: bool,
        restore: Iterable[o.Op] = (),
        *,
        change: bool = False,
        old: bool = False,
    ) -> None:
        firewall = self.old_firewall if old and self.old_firewall != self.firewall else None
        step = Step("-", inverse, guarded, root, tuple(restore), change, firewall)
        self.out.steps.append(step)
        self.simulate(inverse)
        if _opaque(root):
            self.gone.update(creates(root))
            self.built.discard(root)

    # -- additions: each wanted op, checked against the snapshot ----------------------

    def want(self, op: o.Op) -> None:
        verdict = self.check(op)
        if verdict == "ok":
            return
        if verdict == "refused":
            self.simulate(op)  # as if built, so its children don't repeat the refusal
            return
        if verdict == "replace":
            self.remove(_inverse(op), op, guarded=True, change=True)
        self.out.steps.append(Step("+", op, change=verdict in ("replace", "replaced", "rewrite")))
        self.simulate(op)
        if isinstance(op, o.AddAddress):
            self.added.add((op.netns, op.dev, str(op.address)))
        if _opaque(op):
            self.built.add(op)

    def refuse(self, op: o.Op, message: str) -> str:
        self.out.refusals.append(f"{op.loc}: {message}" if op.loc.line else message)
        return "refused"

    def check(self, op: o.Op) -> str:
        """ok (already there), run, replace (ours but different: remove it first),
        replaced (the removal is already planned), rewrite (a file of ours), or refused."""
        host = self.host
        if _opaque(op):
            if self.in_place(op):
                return "ok"
            return "replace" if self.present(op) else "run"
        match op:
            case o.AddNetns(name=name):
                ns = host.netns.get(name)
                if ns is None:
                    return "run"
                if ns.mark == self.mark and ns.reachable:
                    return "ok" if ns.kind == "bind" else "replace"
                return self.refuse(op, f"network namespace {name} {self.whose(op)}")
            case o.AdoptNetns(name=name, pid=pid):
                target = _proc_netns(pid)
                ns = host.netns.get(name)
                if ns is not None and ns.kind == "symlink" and ns.target == target:
                    if ns.reachable and ns.mark == self.mark:
                        return "ok"
                problem = None if self.offline else _adoptable(pid)
                if problem is not None:
                    return self.refuse(op, problem)
                if ns is None:
                    return "run"
                if self.status(op) == "ours":
                    return "replace"
                return self.refuse(op, f"network namespace {name} {self.whose(op)}")
            case o.AddBridge(name=name):
                link = host.links.get(name)
                if link is None:
                    return "run"
                if link.alias == self.mark:
                    return "ok" if link.kind == "bridge" else "replace"
                return self.refuse(
                    op,
                    f"bridge {name}: a link named {name} already exists on this host "
                    f"and {self.whose(op)}; netgen will not take it over (remove or rename it, "
                    "or set `external: true` on the bridge to attach to it as it is)",
                )
            case o.AddVeth():
                return self.check_veth(op)
            case o.AddVxlan(name=name, netns=ns):
                link = host.link(ns, name)
                if link is None:
                    return "run"
                if link.alias != self.mark:
                    return self.refuse(op, f"link {_where(ns, name)} {self.whose(op)}")
                return "ok" if link.kind == "vxlan" and _same_tunnel(op, link) else "replace"
            case o.AddFdb(dev=dev, dst=dst):
                link = host.links.get(dev)
                return "ok" if link is not None and str(dst) in link.fdb else "run"
            case o.SetMaster(dev=dev, bridge=bridge) | o.AttachUplink(dev=dev, bridge=bridge):
                problem = self.bridge_problem(bridge)
                if problem is not None:
                    return self.refuse(op, problem)
                link = host.links.get(dev)
                if isinstance(op, o.AttachUplink):
                    if link is None:
                        return self.refuse(
                            op, f"uplink {dev} does not exist on this host (it is never created)"
                        )
                    if link.master not in (None, bridge):
                        return self.refuse(
                            op, f"uplink {dev} is already a port of bridge {link.master}"
                        )
                return "ok" if link is not None and link.master == bridge else "run"
            case o.LinkUp(dev=dev, netns=ns):
                link = host.link(ns, dev)
                return "ok" if link is not None and link.up else "run"
            case o.AddAddress(dev=dev, address=address, netns=ns):
                link = host.link(ns, dev)
                return "ok" if link is not None and str(address) in link.addresses else "run"
            case o.AddRoute():
                routes = host.routes_in(op.netns) or []
                return "ok" if any(_route_matches(op, r) for r in routes) else "run"
            case o.WaitDad(dev=dev, address=address, netns=ns):
                # an address found in place has long finished detection (or failed it
                # with an apply that rolled back): wait only for those this plan adds
                return "run" if (ns, dev, str(address)) in self.added else "ok"
            case o.MakeDir(path=path):
                if path not in host.files:
                    return "run"
                if host.files[path] is None:
                    return "ok"
                return self.refuse(op, f"{path} exists and is not a directory")
            case o.WriteFile(path=path, content=content):
                if path not in host.files:
                    return "run"
                current = host.files[path]
                if current == content:
                    return "ok"
                if self.status(op) == "ours":
                    return "rewrite"
                return self.refuse(
                    op,
                    f"{path} exists and was not written by netgen for spec {self.owner}; "
                    "netgen will not overwrite it",
                )
        return "run"  # no predicate for this op: run it (its commands must be idempotent)

    def check_veth(self, op: o.AddVeth) -> str:
        host = self.host
        end = host.link(op.netns, op.name)
        peer = host.link(op.peer_netns, op.peer)
        verdict = "run"
        if end is not None:
            if end.alias != self.mark:
                return self.refuse(op, f"link {_where(op.netns, op.name)} {self.whose(op)}")
            paired = (
                end.kind == "veth"
                and end.peer == (op.peer_netns, op.peer)
                and peer is not None
                and peer.peer == (op.netns, op.name)
            )
            if paired:
                return "ok"
            self.remove(_inverse(op), op, guarded=True, change=True)
            verdict = "replaced"
            peer = host.link(op.peer_netns, op.peer)
        if peer is not None:
            if not self.whole_ns_ours(op.peer_netns):
                return self.refuse(
                    op,
                    f"link {_where(op.peer_netns, op.peer)} already exists "
                    f"and {self.whose_link(peer)}",
                )
            # junk in a namespace netgen made for this spec (a crashed run's leftover)
            self.remove(o.DelVeth(op.peer, op.peer_netns, op.owner, op.loc), op, guarded=False)
        return verdict

    def bridge_problem(self, bridge: str) -> str | None:
        link = self.host.links.get(bridge)
        if link is None:
            return (
                f"bridge {bridge} does not exist on this host; it is external "
                "(netgen attaches to it but never creates it)"
            )
        if link.kind != "bridge":
            return f"{bridge} exists on this host but is a {link.kind or 'device'}, not a bridge"
        return None

    # -- ownership ---------------------------------------------------------------

    def in_place(self, op: o.Op) -> bool:
        if op in self.built:
            return True
        effect = _effect(op, self.firewall)
        if effect is None or set(creates(op)) & self.gone:
            return False
        return all(self.host.probed.get(argv, False) for argv in effect)

    def present(self, op: o.Op, *, old: bool = False) -> bool:
        """Something of an opaque op's is there (named after the spec: so it is ours)."""
        if set(creates(op)) & {k for b in self.built for k in creates(b)}:
            return True
        if set(creates(op)) & self.gone:
            return False
        firewall = self.old_firewall if old else self.firewall
        return any(self.host.probed.get(argv, False) for argv in _presence(op, firewall))

    def status(self, op: o.Op, *, old: bool = False) -> Status:
        """Whether the object `op` creates exists, and whose it is."""
        host = self.host
        if _opaque(op):
            return "ours" if self.present(op, old=old) else "absent"
        match op:
            case o.AddNetns(name=name) | o.AdoptNetns(name=name):
                ns = host.netns.get(name)
                if ns is None:
                    return "absent"
                if ns.mark == self.mark:
                    return "ours"
                if not ns.reachable and (name, ns.target) in self.recorded_targets:
                    return "ours"  # our adopted process is gone; the dangling name is ours
                return "unmarked" if ns.mark is None else "foreign"
            case o.AddBridge(name=name) | o.AddVeth(name=name) | o.AddVxlan(name=name):
                link = host.link(getattr(op, "netns", None), name)
                if link is None:
                    return "absent"
                if link.alias == self.mark:
                    return "ours"
                return "unmarked" if link.alias is None else "foreign"
            case o.AttachUplink(dev=dev, bridge=bridge):
                link = host.links.get(dev)
                return "ours" if link is not None and link.master == bridge else "absent"
            case o.MakeDir(path=path):
                return "ours" if path in host.files and host.files[path] is None else "absent"
            case o.WriteFile(path=path):
                if path not in host.files:
                    return "absent"
                current = host.files[path]
                if current is None:
                    return "foreign"
                if path in self.recorded_files or current == op.content:
                    return "ours"
                first = current.split("\n", 1)[0]
                if first.startswith("# written by netgen ") and first.endswith(
                    f" of spec {self.owner}"
                ):
                    return "ours"
                return "foreign"
        return "absent"

    def whole_ns_ours(self, netns: str | None) -> bool:
        """A namespace netgen made for this spec: everything inside is ours."""
        ns = self.host.netns.get(netns) if netns is not None else None
        return ns is not None and ns.kind == "bind" and ns.mark == self.mark

    def whose(self, op: o.Op) -> str:
        host = self.host
        if isinstance(op, (o.AddNetns, o.AdoptNetns)):
            ns = host.netns.get(op.name)
            if ns is None:
                return "does not exist"
            if not ns.reachable:
                return f"is a {NETNS_DIR} entry netgen did not make (it cannot be entered)"
            return _owned_by(ns.mark, "its lo has")
        if isinstance(op, (o.AddBridge, o.AddVeth, o.AddVxlan)):
            link = host.link(getattr(op, "netns", None), op.name)
            return self.whose_link(link) if link is not None else "does not exist"
        if isinstance(op, o.WriteFile):
            return "was not written by netgen for this spec"
        return "is not netgen's"

    def whose_link(self, link: Link) -> str:
        return _owned_by(link.alias, "it has")

    # -- the snapshot follows the plan ---------------------------------------------

    def simulate(self, op: o.Op) -> None:
        host = self.host
        match op:
            case o.AddNetns(name=name):
                host.netns[name] = Netns(name, "bind", links={"lo": Link("lo", None, self.mark)})
            case o.AdoptNetns(name=name, pid=pid):
                lo = Link("lo", None, self.mark)
                host.netns[name] = Netns(name, "symlink", _proc_netns(pid), links={"lo": lo})
            case o.AddBridge(name=name):
                host.links[name] = Link(name, "bridge", self.mark)
            case o.AddVeth():
                end = Link(op.name, "veth", self.mark, peer=(op.peer_netns, op.peer))
                peer = Link(op.peer, "veth", None, peer=(op.netns, op.name))
                for ns, new in ((op.netns, end), (op.peer_netns, peer)):
                    links = host.links_in(ns)
                    if links is not None:
                        links[new.name] = new
            case o.AddVxlan(name=name, netns=ns):
                links = host.links_in(ns)
                if links is not None:
                    links[name] = Link(name, "vxlan", self.mark, vxlan=_tunnel(op))
            case o.AddFdb(dev=dev, dst=dst):
                if dev in host.links:
                    host.links[dev].fdb.add(str(dst))
            case o.DelVxlan(name=name, netns=ns):
                host.delete_link(ns, name)
            case o.DelFdb(dev=dev, dst=dst):
                if dev in host.links:
                    host.links[dev].fdb.discard(str(dst))
            case o.SetMaster(dev=dev, bridge=bridge) | o.AttachUplink(dev=dev, bridge=bridge):
                if dev in host.links:
                    host.links[dev].master = bridge
            case o.LinkUp(dev=dev, netns=ns):
                link = host.link(ns, dev)
                if link is not None:
                    link.up = True
            case o.AddAddress(dev=dev, address=address, netns=ns):
                link = host.link(ns, dev)
                if link is not None:
                    link.addresses.add(str(address))
            case o.AddRoute():
                routes = host.routes_in(op.netns)
                if routes is not None:
                    via = str(op.via) if op.via is not None else None
                    out = op.dev or _gateway_dev(host, op.netns, op.via)
                    routes.append(Route(_route_dst(op.to, op.ipv6), via, out))
            case o.MakeDir(path=path):
                host.files[path] = None
            case o.WriteFile(path=path, content=content):
                host.files[path] = content
            case o.DelNetns(name=name) | o.ReleaseNetns(name=name):
                host.delete_netns(name)
            case o.DelBridge(name=name):
                host.delete_link(None, name)
            case o.DelVeth(name=name, netns=ns):
                host.delete_link(ns, name)
            case o.DetachUplink(dev=dev):
                if dev in host.links:
                    host.links[dev].master = None
            case o.RemoveDir(path=path):
                if not any(p.startswith(path + "/") for p in host.files):
                    host.files.pop(path, None)
            case o.RemoveFile(path=path):
                host.files.pop(path, None)


def _must_replace(key: Key, old: list[o.Op], new: list[o.Op] | None) -> bool:
    """Old unit that cannot become the new one by adding ops: remove it first."""
    if new is None:
        return True
    if key[0] in ("file", "dir"):
        return False  # rewritten in place
    return new[0] != old[0] or not set(old[1:]) <= set(new[1:])


def _tunnel(op: o.AddVxlan) -> Vxlan:
    dev = op.dev if op.netns is None else None
    remote = str(op.remote) if op.remote is not None else None
    return Vxlan(op.vni, str(op.local), remote, op.port, dev)


def _same_tunnel(op: o.AddVxlan, link: Link) -> bool:
    """The device is the tunnel `op` asks for (an underlay dev only when `op` names one)."""
    want, have = _tunnel(op), link.vxlan
    if have is None:
        return False
    return (want.vni, want.local, want.remote, want.port) == (
        have.vni,
        have.local,
        have.remote,
        have.port,
    ) and (want.dev is None or want.dev == have.dev)


def _inverse(op: o.Op) -> o.Op:
    inverse = op.inverse()
    assert inverse is not None, f"{type(op).__name__} creates something, so it has an inverse"
    return inverse


def _owned_by(mark: str | None, has: str) -> str:
    if mark is None:
        return f"was not created by netgen: {has} no netgen mark"
    if mark.startswith(o.MARK_PREFIX):
        return f"belongs to netgen spec {mark[len(o.MARK_PREFIX) :]!r}: {has} the mark {mark}"
    return f"was not created by netgen: {has} the alias {mark!r}"


def _proc_netns(pid: int) -> str:
    return f"/proc/{pid}/ns/net"


def _adoptable(pid: int) -> str | None:
    """Why process `pid`'s namespace cannot be adopted, or None."""
    path = _proc_netns(pid)
    try:
        theirs = os.stat(path)
    except OSError:
        return f"no process {pid} to adopt the namespace of ({path} does not exist)"
    mine = os.stat("/proc/self/ns/net")
    if (theirs.st_dev, theirs.st_ino) == (mine.st_dev, mine.st_ino):
        return (
            f"process {pid} runs in this host's own network namespace; adopting it "
            "would wire the host itself as a container"
        )
    return None


def _route_dst(to: str, ipv6: bool = False) -> IPv4Network | IPv6Network:
    if ipv6:
        return IPv6Network("::/0" if to == "default" else to, strict=False)
    return IPv4Network("0.0.0.0/0" if to == "default" else to, strict=False)


def _gateway_dev(
    host: Host, netns: str | None, via: IPv4Address | IPv6Address | None
) -> str | None:
    """The link the kernel sends a `via`-only route through (the one on the gateway's
    network), so that the modelled route goes away with that link, as the real one does."""
    if via is None:
        return None
    for link in (host.links_in(netns) or {}).values():
        if any(via in ip_interface(address).network for address in link.addresses):
            return link.name
    return None


def _route_matches(op: o.AddRoute, route: Route) -> bool:
    return (
        route.dst == _route_dst(op.to, op.ipv6)
        and (op.via is None or route.gateway == str(op.via))
        and (op.dev is None or route.dev == op.dev)
    )


def _where(netns: str | None, name: str) -> str:
    return name if netns is None else f"{netns}:{name}"


def describe(op: o.Op) -> str:
    """One line a person reads in `netgen plan`: the kind of object and its name."""
    match op:
        case o.AddNetns(name=name):
            return f"netns {name}"
        case o.AdoptNetns(name=name, pid=pid):
            return f"netns {name} (process {pid})"
        case o.AddBridge(name=name):
            return f"bridge {name}"
        case o.AddVeth():
            return f"veth {_where(op.netns, op.name)} <-> {_where(op.peer_netns, op.peer)}"
        case o.AddVxlan(name=name, netns=ns, vni=vni, remote=remote):
            to = f" to {remote}" if remote is not None else ""
            return f"vxlan {_where(ns, name)} (VNI {vni}{to})"
        case o.AddFdb(dev=dev, dst=dst) | o.DelFdb(dev=dev, dst=dst):
            return f"flood entry {dst} on {dev}"
        case o.DelVxlan(name=name, netns=ns):
            return f"vxlan {_where(ns, name)}"
        case o.SetMaster(dev=dev, bridge=bridge):
            return f"port {dev} on bridge {bridge}"
        case o.AttachUplink(dev=dev, bridge=bridge):
            return f"uplink {dev} on bridge {bridge}"
        case o.LinkUp(dev=dev, netns=ns):
            return f"up {_where(ns, dev)}"
        case o.AddAddress(dev=dev, address=address, netns=ns):
            return f"address {address} on {_where(ns, dev)}"
        case o.AddRoute(netns=ns, to=to, via=via, dev=dev):
            text = f"route {to}"
            text += f" via {via}" if via is not None else ""
            text += f" dev {dev}" if dev is not None else ""
            return f"{text} in {ns}" if ns is not None else text
        case o.WaitDad(dev=dev, address=address, netns=ns):
            return f"duplicate address detection of {address.ip} on {_where(ns, dev)}"
        case o.MakeDir(path=path):
            return f"dir {path}"
        case o.WriteFile(path=path):
            return f"file {path}"
        case o.DelVeth(name=name, netns=ns):
            return f"veth {_where(ns, name)}"
        case o.DelNetns(name=name) | o.ReleaseNetns(name=name):
            return f"netns {name}"
        case o.DelBridge(name=name):
            return f"bridge {name}"
        case o.DetachUplink(dev=dev, bridge=bridge):
            return f"uplink {dev} on bridge {bridge}"
        case o.RemoveDir(path=path):
            return f"dir {path}"
        case o.RemoveFile(path=path):
            return f"file {path}"
        case o.AddFirewall(owner=owner, rules=rules):
            return f"firewall of spec {owner} ({len(rules)} rule{'' if len(rules) == 1 else 's'})"
        case o.DelFirewall(owner=owner):
            return f"firewall of spec {owner}"
        case o.SetSysctl(key=key, value=value):
            return f"sysctl {key}={value}"
        case o.RestoreSysctl(key=key):
            return f"sysctl {key}"
    fields = o.to_json(op)
    fields.pop("loc", None)
    name = fields.pop("op")
    return f"{name} " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)


def leftovers(
    created: Iterable[o.Op], host: Host, owner: str, *, firewall: str = "iptables"
) -> list[str]:
    """What of the objects these ops created still exists (after a rollback deleted them)."""
    planner = _Planner(host, owner, False, [], firewall, firewall)
    out = []
    for op in created:
        if not creates(op):
            continue
        there = planner.status(op) != "absent"
        if isinstance(op, o.AddVeth):
            there = there or host.link(op.peer_netns, op.peer) is not None
        if there:
            out.append(describe(op))
    return out


def lines(result: Plan) -> list[tuple[str, str, Step]]:
    """(sign, object, step) per step: + create, - remove, ~ replace or rewrite.

    A replaced object shows once, as "~" on its removal; the re-creation it
    pairs with is marked " " (not shown in the text diff, kept in JSON).
    """
    out: list[tuple[str, str, Step]] = []
    replaced: set[Key] = set()
    for step in result.steps:
        if step.action == "-":
            root = step.undoes or step.op
            keys = creates(root)
            if step.change and keys:
                if keys[0] in replaced:
                    out.append((" ", describe(root), step))
                    continue
                replaced.add(keys[0])
            out.append(("~" if step.change else "-", describe(root), step))
            continue
        keys = creates(step.op)
        if keys and keys[0] in replaced and keys[0][0] != "file":
            out.append((" ", describe(step.op), step))
        else:
            out.append(("~" if step.change else "+", describe(step.op), step))
    return out
