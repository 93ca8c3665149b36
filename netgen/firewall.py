"""Docker's services on plain hosts: published ports, masquerade, icc=false and --link.

`lower` turns a spec's `ports`, bridge `masquerade`/`icc` and container `link`/`expose`
into one AddFirewall op (the rules) and the SetSysctl ops they need. `sections` maps
those ops to commands (`dialects.commands` flattens them) in two firewall dialects
with the same observable behaviour:

- `iptables` (the chapter's): rules in chains of the spec's own, `NETGEN-<id>-DNAT` and
  `-SNAT` (nat), `-FWD` and `-IN` (filter), jumped to from the built-in chains; every
  rule and jump carries `-m comment --comment netgen:<spec>`. `<id>` is the spec name,
  or for names over 15 chars its first 9 + `-` + 6 hex of its sha256 (always 16 chars,
  so it never equals a verbatim name): chain names stay within iptables' 28.
- `nftables`: `table inet netgen_<spec>`, loaded in one `nft -f` transaction.

icc=false is enforced twice, because a container can reach another two ways:
- bridged frames, in an nftables `bridge` table `netgen_<spec>` (in both dialects).
  iptables only sees bridged traffic through br_netfilter: a module whose loading turns
  on iptables for every bridge of the machine, and which the per-netns sysctl
  `bridge-nf-call-iptables` can switch off under us. ebtables could do it but cannot
  carry comments. The bridge table needs neither and is removed whole.
- traffic routed back into the bridge by the host (a container routing via its
  gateway), in FORWARD (`-i BR -o BR`, the chapter's DROP) or the inet forward chain.
  Where br_netfilter is active, bridged traffic meets this rule too; both layers
  accept the same links, so the outcome is the same with it or without it.

Teardown (DelFirewall) removes the spec's chains, jumps and tables by name, whatever
rules they hold, each step guarded by a read-only probe, so a half-built or edited
firewall still goes away and nobody else's rules are touched. iptables cannot delete a
built-in table, so on a host that had no `nat`/`filter` table before, empty ones stay.

Sysctls (`net.ipv4.ip_forward`, and `route_localnet` for loopback ports) are shared
by every spec. Rule: the first spec to raise one records the value it found in
/run/netgen/sysctl/<key>/saved; each spec holding it has a file in .../owners/; the
last one to let go writes the saved value back. Each step runs under a lock so that
concurrent applies and destroys cannot interleave.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv4Network, IPv6Network

from . import model as m
from . import ops as o
from .dialects import FIREWALLS, Cmd
from .errors import DialectError
from .model import Loc

LOOPBACK = IPv4Network("127.0.0.0/8")
LOOPBACK6 = IPv6Network("::1/128")
_ND = "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert }"  # IPv6's ARP
SYSCTL_DIR = "/run/netgen/sysctl"
CHAIN_MAX = 28  # iptables: chain names are shorter than 29 chars
_ID_VERBATIM = 15  # longer spec names are shortened to exactly 16 chars
_PAST_ANY_RULE = "2147483647"  # `-S CHAIN N`: prints nothing, exits 0 iff CHAIN exists

Section = tuple[Loc | str, list[Cmd]]

# The sysctl steps, each one `sh -c` program under a lock so that check-and-set is atomic
# across concurrent runs. Fixed text: values arrive as positional arguments, never spliced.
# $1 state dir, $2 key's state name, $3 /proc/sys path, $4 owner, $5 value.
_RAISE = (
    'set -e; mkdir -p "$1"; exec 9>>"$1/.lock"; flock 9; d="$1/$2"; mkdir -p "$d/owners"; '
    '[ -e "$d/saved" ] || cat "$3" >"$d/saved"; echo "$5" >"$d/owners/$4"; echo "$5" >"$3"'
)
_RESTORE = (
    'set -e; exec 9>>"$1/.lock"; flock 9; d="$1/$2"; rm -f "$d/owners/$4"; '
    'rmdir "$d/owners" 2>/dev/null || exit 0; '
    'if [ -e "$d/saved" ] && [ -e "$3" ]; then cat "$d/saved" >"$3"; fi; '
    'rm -f "$d/saved"; rmdir "$d"'
)


# -- lowering --------------------------------------------------------------------------


def lower(spec: m.Spec, host: str | None = None) -> list[o.Op]:
    """The firewall and sysctl ops of a spec (of `host`'s part of it, with `hosts:`), to
    run once its containers are wired. Ports and masquerade are the business of the host
    a container runs on; an icc=false bridge is isolated on every host it spans, and a
    --link across hosts is let through on both ends' hosts."""
    bridges = [b for b in spec.bridges if host is None or host in b.hosts]
    ports = _published(spec, host)
    masquerades = [o.Masquerade(b.subnet, b.name, _at(b)) for b in bridges if b.masquerade]
    masquerades += [
        o.Masquerade(b.subnet6, b.name, _at(b))
        for b in bridges
        if b.masquerade6 and b.subnet6 is not None
    ]
    rules: list[o.Rule] = [
        *ports,
        *masquerades,
        *_links(spec, bridges, host),
        *_isolations(spec, bridges, host),
    ]
    if not rules:
        return []
    out: list[o.Op] = [o.AddFirewall(spec.name, tuple(rules), rules[0].loc)]
    forwarded = [r for r in rules if isinstance(r, (o.PublishPort, o.Masquerade))]
    forwarded4 = [r for r in forwarded if not o.is_ipv6(r)]
    forwarded6 = [r for r in forwarded if o.is_ipv6(r)]
    if forwarded4:
        out.append(o.SetSysctl(spec.name, "net.ipv4.ip_forward", "1", forwarded4[0].loc))
    if forwarded6:
        key = "net.ipv6.conf.all.forwarding"
        out.append(o.SetSysctl(spec.name, key, "1", forwarded6[0].loc))
    for bridge, loc in _loopback_bridges(ports).items():
        key = f"net.ipv4.conf.{bridge.replace('.', '/')}.route_localnet"
        out.append(o.SetSysctl(spec.name, key, "1", loc))
    return out


def _published(spec: m.Spec, host: str | None) -> list[o.PublishPort]:
    """Ports go to the container's primary address, on the bridge of its first leg; on a
    dual-stack bridge, a port on every host address goes to its IPv6 address too."""
    out = []
    for c in spec.containers:
        if not c.interfaces or c.host != host:
            continue
        leg = c.interfaces[0]
        for p in c.ports:
            dests: list[m.IPAddress] = [leg.address.ip]
            if leg.address6 is not None and p.host_ip is None:
                dests.append(leg.address6.ip)
            for dest in dests:
                out.append(
                    o.PublishPort(
                        p.proto, p.host_ip, p.host_port, dest, p.container_port, leg.bridge, p.loc
                    )
                )
    return out


def _links(spec: m.Spec, bridges: list[m.Bridge], host: str | None) -> list[o.AllowLink]:
    """On each icc=false bridge both ends are on: the client may reach the target's `expose`
    (on the hosts of both, when they run on different ones: each end's bridge filters)."""
    out: dict[o.AllowLink, None] = {}
    by_name = {c.name: c for c in spec.containers}  # spec.container() scans: quadratic
    for b in bridges:
        if b.icc:
            continue
        for c in spec.containers:
            for ref in c.links:
                target = by_name[ref.name]
                if host not in (c.host, target.host):
                    continue
                for mine in (leg for leg in c.interfaces if leg.bridge == b.name):
                    for theirs in (leg for leg in target.interfaces if leg.bridge == b.name):
                        pairs: list[tuple[m.IPAddress, m.IPAddress]] = [
                            (mine.address.ip, theirs.address.ip)
                        ]
                        if mine.address6 is not None and theirs.address6 is not None:
                            pairs.append((mine.address6.ip, theirs.address6.ip))
                        for e in target.expose:
                            for src, dst in pairs:
                                rule = o.AllowLink(b.name, src, dst, e.proto, e.port, ref.loc)
                                out.setdefault(rule)
    return list(out)


def _isolations(spec: m.Spec, bridges: list[m.Bridge], host: str | None) -> list[o.Isolate]:
    """Between the bridge's ports on this host: its containers' legs, its uplinks, and
    (across hosts) its VXLAN device, through which the other hosts' containers come."""
    out = []
    for b in bridges:
        if b.icc:
            continue
        legs = [
            leg.host_ifname
            for c in spec.containers
            if c.host == host
            for leg in c.interfaces
            if leg.bridge == b.name
        ]
        if b.overlay:
            legs.append(b.vxlan_dev)
        if legs:
            out.append(o.Isolate(b.name, b.subnet, (*legs, *b.uplinks), _at(b)))
            if b.subnet6 is not None:
                out.append(o.Isolate(b.name, b.subnet6, (*legs, *b.uplinks), _at(b)))
    return out


def _at(b: m.Bridge) -> Loc:
    """`masquerade:`/`icc:` have no location of their own in the model: the bridge's stands in."""
    return b.loc if b.loc.path else replace(b.loc, path=f"bridges.{b.name}")


def _loopback_bridges(ports: Iterable[o.PublishPort]) -> dict[str, Loc]:
    """Bridges behind a port bound to a loopback HOST_IP (host-only, like Docker's 127.0.0.1:)."""
    out: dict[str, Loc] = {}
    for p in ports:
        if p.host_ip is not None and p.host_ip in LOOPBACK:
            out.setdefault(p.bridge, p.loc)
    return out


# -- names -----------------------------------------------------------------------------


def chain_id(owner: str) -> str:
    """The spec's part of its chain names: deterministic, at most 16 chars."""
    if len(owner) <= _ID_VERBATIM:
        return owner
    return f"{owner[:9]}-{hashlib.sha256(owner.encode()).hexdigest()[:6]}"


def table_name(owner: str) -> str:
    """The spec's nftables tables (inet and bridge): nft allows long names, so no hashing."""
    return f"netgen_{owner}"


@dataclass(frozen=True)
class _Chain:
    """One of the spec's iptables chains and the jumps to it from built-in chains."""

    table: str
    name: str
    hooks: tuple[str, ...]
    match: tuple[str, ...] = ()
    first: bool = False  # -I: before the host's own rules (a trailing DROP must not shadow it)


@dataclass(frozen=True)
class _Chains:
    dnat: _Chain
    snat: _Chain
    fwd: _Chain
    inp: _Chain

    def all(self) -> tuple[_Chain, ...]:
        return (self.dnat, self.snat, self.fwd, self.inp)


def chains(owner: str) -> _Chains:
    base = f"NETGEN-{chain_id(owner)}"
    local = ("-m", "addrtype", "--dst-type", "LOCAL")
    return _Chains(
        dnat=_Chain("nat", f"{base}-DNAT", ("PREROUTING", "OUTPUT"), local),
        snat=_Chain("nat", f"{base}-SNAT", ("POSTROUTING",)),
        fwd=_Chain("filter", f"{base}-FWD", ("FORWARD",), first=True),
        inp=_Chain("filter", f"{base}-IN", ("INPUT",), first=True),
    )


# -- the command mapping ---------------------------------------------------------------


def sections(op: o.Op, firewall: str) -> list[Section]:
    """Commands for a firewall or sysctl op, in groups the script comments one by one."""
    if firewall not in FIREWALLS:
        raise DialectError(
            type(op).__name__, firewall, f"unknown firewall; use {' or '.join(FIREWALLS)}"
        )
    match op:
        case o.AddFirewall():
            plan = _Plan(op.owner, op.rules)
            if firewall == "nftables":
                return [(f"firewall of spec {op.owner} (nftables, one transaction)", plan.nft())]
            return plan.iptables()
        case o.DelFirewall(owner=owner, bridged=bridged, ipv6=ipv6):
            cmds = _teardown(owner, firewall, bridged, ipv6)
            return [(f"firewall of spec {owner} ({firewall})", cmds)]
        case o.SetSysctl(owner=owner, key=key, value=value):
            state, path = _sysctl_names(key)
            raise_it = ("sh", "-c", _RAISE, "netgen-sysctl", SYSCTL_DIR, state, path, owner, value)
            return [(op.loc, [Cmd(raise_it)])]
        case o.RestoreSysctl(owner=owner, key=key):
            state, path = _sysctl_names(key)
            guard = ("test", "-e", f"{SYSCTL_DIR}/{state}/owners/{owner}")
            restore = ("sh", "-c", _RESTORE, "netgen-sysctl", SYSCTL_DIR, state, path, owner)
            return [(op.loc, [Cmd(restore, guard=guard)])]
    raise DialectError(type(op).__name__, firewall, "not a firewall op")


def commands(op: o.Op, firewall: str) -> list[Cmd]:
    return [cmd for _, cmds in sections(op, firewall) for cmd in cmds]


def probes(op: o.Op, firewall: str) -> list[tuple[str, ...]] | None:
    """Read-only argvs that all exit 0 iff `op`'s effect is in place (None: not our op).

    For apply's planner: with these it can tell "already there" from "to run".
    iptables: every chain, jump and rule (-C). nftables: the tables exist.
    """
    match op:
        case o.AddFirewall():
            plan = _Plan(op.owner, op.rules)
            if firewall == "nftables":
                kinds = ["inet"] + (["bridge"] if plan.bridged else [])
                return [("nft", "-c", "delete", "table", k, table_name(op.owner)) for k in kinds]
            out: list[tuple[str, ...]] = []
            for cmd in commands(op, firewall):
                argv = cmd.argv
                if argv[:1] == ("nft",):
                    out.append(("nft", "-c", "delete", "table", "bridge", table_name(op.owner)))
                elif "-N" in argv:
                    i = argv.index("-N")
                    out.append((*argv[:i], "-S", argv[i + 1], _PAST_ANY_RULE))
                else:
                    i = next(i for i, a in enumerate(argv) if a in ("-A", "-I"))
                    out.append((*argv[:i], "-C", *argv[i + 1 :]))
            return out
        case o.SetSysctl(owner=owner, key=key, value=value):
            state, path = _sysctl_names(key)
            return [
                ("test", "-e", f"{SYSCTL_DIR}/{state}/owners/{owner}"),
                ("grep", "-qx", value, path),
            ]
    return None


def _sysctl_names(key: str) -> tuple[str, str]:
    """(its directory under SYSCTL_DIR, its /proc/sys path) for a key in sysctl(8) notation."""
    parts = [part.replace("/", ".") for part in key.split(".")]
    return ".".join(parts), "/proc/sys/" + "/".join(parts)


def _teardown(owner: str, firewall: str, bridged: bool, ipv6: bool = False) -> list[Cmd]:
    """Everything named after `owner`, each removal guarded by a read-only probe."""
    table = table_name(owner)
    kinds = ["inet"] if firewall == "nftables" else []
    kinds += ["bridge"] if bridged else []
    out: list[Cmd] = []
    tools = ["iptables", "ip6tables"] if ipv6 else ["iptables"]
    for ipt in (_Ipt(owner, tool) for tool in tools if firewall == "iptables"):
        for chain in ipt.chains.all():
            for hook in chain.hooks:
                spec = ipt.jump_spec(chain, hook)
                out.append(
                    Cmd(
                        ipt.argv(chain.table, "-D", *spec), guard=ipt.argv(chain.table, "-C", *spec)
                    )
                )
        for chain in ipt.chains.all():
            exists = ipt.argv(chain.table, "-S", chain.name, _PAST_ANY_RULE)
            out.append(Cmd(ipt.argv(chain.table, "-F", chain.name), guard=exists))
            out.append(Cmd(ipt.argv(chain.table, "-X", chain.name), guard=exists))
    for kind in kinds:
        out.append(
            Cmd(
                ("nft", "delete", "table", kind, table),
                guard=("nft", "-c", "delete", "table", kind, table),
            )
        )
    return out


class _Ipt:
    """iptables argv for one spec's chains; every rule and jump carries the spec's comment."""

    def __init__(self, owner: str, tool: str = "iptables") -> None:
        self.chains = chains(owner)
        self.comment = ("-m", "comment", "--comment", o.mark(owner))
        self.tool = tool  # ip6tables: the same chains, for IPv6

    def argv(self, table: str, *args: str) -> tuple[str, ...]:
        return (self.tool, "-w", "-t", table, *args)

    def jump_spec(self, chain: _Chain, hook: str) -> tuple[str, ...]:
        return (hook, *chain.match, *self.comment, "-j", chain.name)

    def jump(self, chain: _Chain, hook: str) -> Cmd:
        return Cmd(
            self.argv(chain.table, "-I" if chain.first else "-A", *self.jump_spec(chain, hook))
        )

    def rule(self, chain: _Chain, *spec: str) -> Cmd:
        """`spec` ends with the target (`-j X ...`); the comment goes right before it."""
        j = spec.index("-j")
        return Cmd(self.argv(chain.table, "-A", chain.name, *spec[:j], *self.comment, *spec[j:]))


def _host(address: m.IPAddress) -> str:
    return f"{address}/{address.max_prefixlen}"


def _fam(address: m.IPAddress | m.IPNetwork) -> str:
    """nft's address family keyword for a match on `address`."""
    return "ip6" if address.version == 6 else "ip"


class _Plan:
    """One spec's rules, sorted by kind, and what they need (chains, per-bridge rules).

    Kinds go in a fixed order, so accepts always precede the drops they punch through.
    """

    def __init__(self, owner: str, rules: Iterable[o.Rule]) -> None:
        self.owner = owner
        rules = list(rules)
        self.ports = [r for r in rules if isinstance(r, o.PublishPort)]
        self.masquerades = [r for r in rules if isinstance(r, o.Masquerade)]
        self.links = [r for r in rules if isinstance(r, o.AllowLink)]
        self.isolations = [r for r in rules if isinstance(r, o.Isolate)]
        self.loopback = _loopback_bridges(self.ports)
        # Bridges whose connections to/from elsewhere need their replies let through.
        self.replies = list(
            dict.fromkeys([*(p.bridge for p in self.ports), *(q.bridge for q in self.masquerades)])
        )
        self.bridged = bool(self.links or self.isolations)
        # One FORWARD accept per container port, however many host ports lead to it.
        firsts = {(p.bridge, p.dest, p.proto, p.dest_port): p for p in reversed(self.ports)}
        self.forwards = [
            p for p in self.ports if firsts[(p.bridge, p.dest, p.proto, p.dest_port)] is p
        ]

    # -- iptables ------------------------------------------------------------------

    def iptables(self) -> list[Section]:
        """iptables for the IPv4 rules, then ip6tables for the IPv6 ones (same chain names)."""
        rules: list[o.Rule] = [*self.ports, *self.masquerades, *self.links, *self.isolations]
        out: list[Section] = []
        for tool, v6 in (("iptables", False), ("ip6tables", True)):
            mine = [r for r in rules if o.is_ipv6(r) == v6]
            if mine:
                out += _Plan(self.owner, mine)._xtables(_Ipt(self.owner, tool))
        if self.bridged:
            table = table_name(self.owner)
            text = "\n".join(self._bridge_table()) + "\n"
            title = f"bridged traffic of spec {self.owner} (nftables table bridge {table})"
            out.append((title, [_nft_load(text)]))
        return out

    def _xtables(self, ipt: _Ipt) -> list[Section]:
        c = ipt.chains
        used = [
            chain
            for chain, needed in (
                (c.dnat, self.ports),
                (c.snat, self.masquerades or self.loopback),
                (c.fwd, self.ports or self.masquerades or self.bridged),
                (c.inp, self.loopback),
            )
            if needed
        ]
        head = [Cmd(ipt.argv(chain.table, "-N", chain.name)) for chain in used]
        head += [ipt.jump(chain, hook) for chain in used for hook in chain.hooks]
        for br in self.replies:
            established = ("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
            head.append(ipt.rule(c.fwd, "-o", br, *established))
            head.append(ipt.rule(c.fwd, "-i", br, "!", "-o", br, *established))
        for br in self.loopback:
            # route_localnet lets 127/8 cross `br`: masquerade it on the way out; on the way
            # in, only replies (a container must not reach the host's 127.0.0.1 services).
            replies = ("-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED")
            head.append(ipt.rule(c.snat, "-s", str(LOOPBACK), "-o", br, "-j", "MASQUERADE"))
            head.append(ipt.rule(c.inp, "-d", str(LOOPBACK), "-i", br, *replies, "-j", "DROP"))
        names = ", ".join(chain.name for chain in used)
        out: list[Section] = [(f"firewall of spec {self.owner} ({ipt.tool}): chains {names}", head)]
        forwards = set(self.forwards)  # a list's `in` would make this loop quadratic
        for p in self.ports:
            dest: tuple[str, ...] = ("-p", p.proto, "-m", p.proto)
            if p.host_ip is None:
                where: tuple[str, ...] = (
                    "!",
                    "-d",
                    str(LOOPBACK6 if p.dest.version == 6 else LOOPBACK),
                )
            else:
                where = ("-d", _host(p.host_ip))
            if p.host_ip is not None and p.host_ip in LOOPBACK:
                dest += ("--dport", str(p.host_port), "-m", "addrtype", "--src-type", "LOCAL")
            else:
                dest += ("--dport", str(p.host_port))
            to = f"{_bracket(p.dest)}:{p.dest_port}"
            cmds = [ipt.rule(c.dnat, *where, *dest, "-j", "DNAT", "--to-destination", to)]
            if p in forwards:
                fwd = ("-d", _host(p.dest), "!", "-i", p.bridge, "-o", p.bridge, "-p", p.proto)
                port = ("-m", p.proto, "--dport", str(p.dest_port))
                cmds.append(ipt.rule(c.fwd, *fwd, *port, "-j", "ACCEPT"))
            out.append((p.loc, cmds))
        for q in self.masquerades:
            net = str(q.subnet)
            out.append(
                (
                    q.loc,
                    [
                        ipt.rule(c.snat, "-s", net, "!", "-d", net, "-j", "MASQUERADE"),
                        ipt.rule(c.fwd, "-i", q.bridge, "!", "-o", q.bridge, "-j", "ACCEPT"),
                    ],
                )
            )
        for k in self.links:
            ends = ("-i", k.bridge, "-o", k.bridge, "-p", k.proto, "-m", k.proto)
            there = ("-s", _host(k.src), "-d", _host(k.dst))
            back = ("-s", _host(k.dst), "-d", _host(k.src))
            out.append(
                (
                    k.loc,
                    [
                        ipt.rule(c.fwd, *there, *ends, "--dport", str(k.port), "-j", "ACCEPT"),
                        ipt.rule(c.fwd, *back, *ends, "--sport", str(k.port), "-j", "ACCEPT"),
                    ],
                )
            )
        for i in self.isolations:
            net = str(i.subnet)
            within = ("-s", net, "-d", net, "-i", i.bridge, "-o", i.bridge)
            cmds = []
            if i.subnet.version == 6:
                # with br_netfilter, bridged neighbour discovery passes here: let it (ARP's twin)
                for kind in ("neighbour-solicitation", "neighbour-advertisement"):
                    nd = ("-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", kind)
                    cmds.append(ipt.rule(c.fwd, *within, *nd, "-j", "ACCEPT"))
            cmds.append(ipt.rule(c.fwd, *within, "-j", "DROP"))
            out.append((i.loc, cmds))
        return out

    # -- nftables ------------------------------------------------------------------

    def nft(self) -> list[Cmd]:
        lines = [
            f"# netgen firewall of spec {self.owner}; netgen render --teardown removes it",
            *self._inet_table(),
        ]
        if self.bridged:
            lines += self._bridge_table()
        return [_nft_load("\n".join(lines) + "\n")]

    def _inet_table(self) -> list[str]:
        note = f'comment "{o.mark(self.owner)}"'
        blocks: list[tuple[str, str | None, list[str]]] = []
        if self.ports:
            local = f"fib daddr type local jump ports {note}"
            blocks.append(("prerouting", "type nat hook prerouting priority dstnat", [local]))
            # nft names no priority for the nat output hook: -100 is dstnat's number
            blocks.append(("output", "type nat hook output priority -100", [local]))
            body = []
            for p in self.ports:
                if p.host_ip is None and p.dest.version == 6:
                    where = f"ip6 daddr != {LOOPBACK6.network_address}"
                elif p.host_ip is None:
                    where = f"ip daddr != {LOOPBACK}"
                elif p.host_ip in LOOPBACK:
                    where = f"ip daddr {p.host_ip} fib saddr type local"
                else:
                    where = f"ip daddr {p.host_ip}"
                to = f"dnat {_fam(p.dest)} to {_bracket(p.dest)}:{p.dest_port}"
                body += [_where(p.loc), f"{where} {p.proto} dport {p.host_port} {to} {note}"]
            blocks.append(("ports", None, body))
        post = []
        for q in self.masquerades:
            ip = _fam(q.subnet)
            post += [
                _where(q.loc),
                f"{ip} saddr {q.subnet} {ip} daddr != {q.subnet} masquerade {note}",
            ]
        for br, loc in self.loopback.items():
            post += [_where(loc), f'ip saddr {LOOPBACK} oifname "{br}" masquerade {note}']
        if post:
            blocks.append(("postrouting", "type nat hook postrouting priority srcnat", post))
        if self.loopback:
            rules = []
            for br, loc in self.loopback.items():
                new = "ct state != { established, related }"
                rules += [_where(loc), f'iifname "{br}" ip daddr {LOOPBACK} {new} drop {note}']
            blocks.append(("input", "type filter hook input priority filter", rules))
        fwd = []
        for br in self.replies:
            fwd.append(f'oifname "{br}" ct state established,related accept {note}')
            fwd.append(
                f'iifname "{br}" oifname != "{br}" ct state established,related accept {note}'
            )
        for p in self.forwards:
            fwd += [
                _where(p.loc),
                f'iifname != "{p.bridge}" oifname "{p.bridge}" {_fam(p.dest)} daddr {p.dest} '
                f"{p.proto} dport {p.dest_port} accept {note}",
            ]
        # one accept per bridge: in the inet table it lets both families out
        outbound: dict[str, o.Masquerade] = {}
        for q in self.masquerades:
            outbound.setdefault(q.bridge, q)
        for q in outbound.values():
            fwd += [_where(q.loc), f'iifname "{q.bridge}" oifname != "{q.bridge}" accept {note}']
        for k in self.links:
            ends = f'iifname "{k.bridge}" oifname "{k.bridge}"'
            fwd += [_where(k.loc), *(f"{ends} {rule} {note}" for rule in _link_rules(k))]
        for i in self.isolations:
            ends = f'iifname "{i.bridge}" oifname "{i.bridge}"'
            ip = _fam(i.subnet)
            if i.subnet.version == 6:  # neighbour discovery passes (with br_netfilter)
                fwd += [_where(i.loc), f"{ends} {_ND} accept {note}"]
            fwd += [
                _where(i.loc),
                f"{ends} {ip} saddr {i.subnet} {ip} daddr {i.subnet} drop {note}",
            ]
        if fwd:
            blocks.append(("forward", "type filter hook forward priority filter", fwd))
        return _table("inet", table_name(self.owner), self.owner, blocks)

    def _bridge_table(self) -> list[str]:
        """L2: frames between the bridge's ports; ARP passes so that links can resolve."""
        note = f'comment "{o.mark(self.owner)}"'
        rules = []
        for k in self.links:
            rules += [_where(k.loc), *(f"{rule} {note}" for rule in _link_rules(k))]
        for i in self.isolations:  # IPv6 neighbour discovery passes, as ARP does for IPv4
            if i.subnet.version == 6:
                ports = _nft_set(i.ports)
                rules += [_where(i.loc), f"iifname {ports} oifname {ports} {_ND} accept {note}"]
        for i in self.isolations:
            if i.subnet.version == 6:
                continue  # the IPv4 twin's drop below drops every frame but ARP
            ports = _nft_set(i.ports)
            rules += [
                _where(i.loc),
                f"iifname {ports} oifname {ports} ether type != arp drop {note}",
            ]
        chain = ("forward", "type filter hook forward priority filter", rules)
        return _table("bridge", table_name(self.owner), self.owner, [chain])


def _link_rules(k: o.AllowLink) -> list[str]:
    """The chapter's pair: the request to the exposed port, and the reply from it."""
    ip = _fam(k.src)
    return [
        f"{ip} saddr {k.src} {ip} daddr {k.dst} {k.proto} dport {k.port} accept",
        f"{ip} saddr {k.dst} {ip} daddr {k.src} {k.proto} sport {k.port} accept",
    ]


def _bracket(address: m.IPAddress) -> str:
    """An address ahead of `:port`: IPv6 in brackets."""
    return f"[{address}]" if address.version == 6 else str(address)


def _table(
    family: str, name: str, owner: str, blocks: list[tuple[str, str | None, list[str]]]
) -> list[str]:
    """`create` fails if the table exists (as iptables -N does); the comment marks it ours."""
    lines = [
        f'create table {family} {name} {{ comment "{o.mark(owner)}"; }}',
        f"table {family} {name} {{",
    ]
    for i, (chain, base, rules) in enumerate(blocks):
        if i:
            lines.append("")
        lines.append(f"\tchain {chain} {{")
        if base is not None:
            lines.append(f"\t\t{base}; policy accept;")
        last = None
        for rule in rules:
            if rule.startswith("#"):  # a spec line: once for consecutive rules from it
                if rule == last:
                    continue
                last = rule
            lines.append(f"\t\t{rule}")
        lines.append("\t}")
    lines.append("}")
    return lines


def _where(loc: Loc) -> str:
    """An nft comment line naming the spec line; kept to one line of printable text."""
    text = f"{loc.file}:{loc.line} {loc.path}" if loc.line else "netgen"
    return "# " + "".join(ch if ch.isprintable() else "?" for ch in text)


def _nft_set(names: Iterable[str]) -> str:
    quoted = [f'"{n}"' for n in names]
    return quoted[0] if len(quoted) == 1 else "{ " + ", ".join(quoted) + " }"


def _nft_load(ruleset: str) -> Cmd:
    return Cmd(("nft", "-f", "/dev/stdin"), stdin=ruleset)
