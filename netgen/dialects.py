"""How each op becomes commands, per dialect: the single source of truth.

Both the script renderer and the executor call `commands()`, so `netgen render`
and `netgen apply` can never disagree. A command is an argv tuple (never a
shell string), optionally fed `stdin`, optionally run only when `guard` exits 0
(teardown and rollback use guards to touch only what exists and is marked as
the spec's own).

Dialects:
- `iproute2` (default): modern `ip`, `ip -n NS`, `ip link set ... master`, the
  container end of a veth created directly in its namespace.
- `brctl`: the chapter's style: `brctl addbr/addif/delif/delbr` for bridge work,
  `ip netns exec NS ip ...` inside namespaces, veth ends created on the host,
  moved with `ip link set X netns NS` and renamed there.

Firewall dialects (`firewall=`: `iptables` or `nftables`) map the firewall and
sysctl ops; that mapping lives in `firewall.py`, reached through `sections()`
and `commands()` here like every other op.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from . import ops as o
from .errors import DialectError
from .model import Loc

DIALECTS = ("iproute2", "brctl")
ZERO_MAC = "00:00:00:00:00:00"  # an fdb entry for every destination not learnt
FIREWALLS = ("iptables", "nftables")
NETNS_DIR = "/var/run/netns"


class Cmd(NamedTuple):
    """A named tuple, not a dataclass: a script of 10,000 containers builds 120,000."""

    argv: tuple[str, ...]
    stdin: str | None = None
    guard: tuple[str, ...] | None = None


# Ops mapped by firewall.py (the `firewall` dialect), whatever the link dialect.
_FIREWALL_OPS = (o.AddFirewall, o.DelFirewall, o.SetSysctl, o.RestoreSysctl)


def sections(
    op: o.Op, dialect: str = "iproute2", firewall: str = "iptables"
) -> list[tuple[Loc | str, list[Cmd]]]:
    """`commands(op)` in the groups a script comments one by one: (spec line or title, cmds).

    Most ops are one group under their own `loc`; a firewall is one group per rule
    (iptables) or one `nft -f` transaction (nftables).
    """
    return list(each_section((op,), dialect, firewall))


def each_section(
    ops: Iterable[o.Op], dialect: str = "iproute2", firewall: str = "iptables"
) -> Iterator[tuple[Loc | str, list[Cmd]]]:
    """`sections` of each op in turn: what a whole script is made of (the dialect is
    looked up once, not per op)."""
    d = _BY_NAME.get(dialect)
    for op in ops:
        if isinstance(op, _FIREWALL_OPS):
            from . import firewall as fw  # fw imports Cmd from here

            yield from fw.sections(op, firewall)
        else:
            yield op.loc, _commands(op, d or _dialect(op, dialect))


def commands(op: o.Op, dialect: str = "iproute2", firewall: str = "iptables") -> list[Cmd]:
    """The commands for one op. `firewall` picks iptables or nftables for firewall ops."""
    d = _dialect(op, dialect)
    if isinstance(op, _FIREWALL_OPS):
        return [cmd for _, cmds in sections(op, dialect, firewall) for cmd in cmds]
    return _commands(op, d)


def _dialect(op: o.Op, dialect: str) -> _Dialect:
    d = _BY_NAME.get(dialect)
    if d is None:
        raise DialectError(
            type(op).__name__, dialect, f"unknown dialect; use {' or '.join(DIALECTS)}"
        )
    return d


def _commands(op: o.Op, d: _Dialect) -> list[Cmd]:
    """`commands` of an op that is not a firewall op, in dialect `d`: the mapping itself.
    The ops a setup has most of (a link up per veth end, an address, a route) come first:
    `match` tries the cases in order."""
    match op:
        case o.LinkUp(dev=dev, netns=netns):
            return [d.ip(netns, "link", "set", "dev", dev, "up")]
        case o.AddAddress(dev=dev, address=address, netns=netns) if address.version == 6:
            # IPv6 may be off on the link (disable_ipv6 inherited from `default`): turn it on
            key = f"net.ipv6.conf.{dev.replace('.', '/')}.disable_ipv6=0"
            return [
                Cmd(d.in_netns(netns, "sysctl", "-q", "-w", key)),
                d.ip(netns, "-6", "addr", "add", str(address), "dev", dev, *nodad(op.nodad)),
            ]
        case o.AddAddress(dev=dev, address=address, netns=netns):
            return [d.ip(netns, "addr", "add", str(address), "dev", dev)]
        case o.AddRoute(netns=netns, to=to, via=via, dev=dev):
            args = ["-6"] if op.ipv6 else []
            args += ["route", "add", to]
            if via is not None:
                args += ["via", str(via)]
            if dev is not None:
                args += ["dev", dev]
            return [d.ip(netns, *args)]
        case o.AddNetns(name=name, owner=owner):
            return [
                C("ip", "netns", "add", name),
                d.ip(name, "link", "set", "dev", "lo", "alias", o.mark(owner)),
            ]
        case o.AdoptNetns(name=name, pid=pid, owner=owner):
            return [
                C("mkdir", "-p", NETNS_DIR),
                C("ln", "-s", f"/proc/{pid}/ns/net", f"{NETNS_DIR}/{name}"),
                d.ip(name, "link", "set", "dev", "lo", "alias", o.mark(owner)),
            ]
        case o.AddBridge():
            return d.add_bridge(op)
        case o.AddVeth():
            return d.add_veth(op)
        case o.AddVxlan():
            return d.add_vxlan(op)
        case o.AddFdb(dev=dev, dst=dst):
            return [C("bridge", "fdb", "append", ZERO_MAC, "dev", dev, "dst", str(dst))]
        case o.SetMaster(dev=dev, bridge=bridge) | o.AttachUplink(dev=dev, bridge=bridge):
            if d.brctl:
                return [Cmd(brctl("addif", bridge, dev))]
            return [C("ip", "link", "set", "dev", dev, "master", bridge)]
        case o.WaitDad(dev=dev, netns=netns):
            show = d.ip(netns, "-6", "addr", "show", "dev", dev)
            return [Cmd(("sh", "-c", WAIT_DAD, "netgen-wait-dad", *show.argv))]
        case o.MakeDir(path=path):
            return [C("mkdir", "-p", path)]
        case o.WriteFile(path=path, content=content):
            return [Cmd(("install", "-m", "0644", "/dev/stdin", path), stdin=content)]
        case o.DelNetns(name=name, owner=owner):
            return [Cmd(("ip", "netns", "delete", name), guard=d.netns_owned(name, owner))]
        case o.ReleaseNetns(name=name, owner=owner):
            return [Cmd(("rm", "-f", f"{NETNS_DIR}/{name}"), guard=d.netns_owned(name, owner))]
        case o.DelBridge(name=name, owner=owner):
            guard = d.link_owned(None, name, owner)
            if d.brctl:  # the mark outlives `down`: both steps check it
                return [
                    Cmd(("ip", "link", "set", "dev", name, "down"), guard=guard),
                    Cmd(brctl("delbr", name), guard=guard),
                ]
            return [Cmd(("ip", "link", "delete", "dev", name, "type", "bridge"), guard=guard)]
        case o.DelVeth(name=name, netns=netns, owner=owner):
            return [
                Cmd(
                    d.ip(netns, "link", "delete", "dev", name).argv,
                    guard=d.link_owned(netns, name, owner),
                )
            ]
        case o.DelVxlan(name=name, netns=netns, owner=owner):
            return [
                Cmd(
                    d.ip(netns, "link", "delete", "dev", name).argv,
                    guard=d.link_owned(netns, name, owner),
                )
            ]
        case o.DelFdb(dev=dev, dst=dst, owner=owner):
            # the entry carries no mark: it goes only from a device that carries ours
            return [
                Cmd(
                    ("bridge", "fdb", "del", ZERO_MAC, "dev", dev, "dst", str(dst)),
                    guard=d.link_owned(None, dev, owner),
                )
            ]
        case o.DetachUplink(dev=dev, bridge=bridge):
            guard = ("test", "-e", f"/sys/class/net/{bridge}/brif/{dev}")
            if d.brctl:
                return [Cmd(brctl("delif", bridge, dev), guard=guard)]
            return [Cmd(("ip", "link", "set", "dev", dev, "nomaster"), guard=guard)]
        case o.RemoveDir(path=path):
            return [Cmd(("rmdir", "--ignore-fail-on-non-empty", path), guard=("test", "-d", path))]
        case o.RemoveFile(path=path):
            return [C("rm", "-f", path)]
    raise DialectError(type(op).__name__, d.name, "no command mapping for this op")


#: The bounded wait behind WaitDad: runs its arguments (the dialect's `ip -6 addr show
#: dev DEV`) every 0.1 s until no address on the link is `tentative`, for at most 5 s;
#: a `dadfailed` address fails it, naming the address. A wait is a loop, which no single
#: command of iproute2 or coreutils does, and a script cannot count on a helper of
#: netgen's being installed: so a fixed `sh -c` program. It is a constant; every value
#: reaches it as an argument ("$@"), never as shell text, so it quotes like any other
#: argv, and `render` and `apply` run the same thing. A link without carrier (a bridge
#: without ports) has nothing to wait for: the kernel starts detection at carrier.
WAIT_DAD = (
    'for _ in $(seq 50); do s=$("$@") || exit; case $s in *dadfailed*) '
    'echo "duplicate address detection failed (another host on the link has it):" >&2; '
    'echo "$s" | grep dadfailed >&2; exit 1;; '
    "*NO-CARRIER*) exit 0;; *tentative*) sleep 0.1;; *) exit 0;; esac; done; "
    'echo "duplicate address detection did not finish within 5 s:" >&2; '
    'echo "$s" | grep tentative >&2; exit 1'
)


def nodad(flag: bool) -> tuple[str, ...]:
    return ("nodad",) if flag else ()


def C(*argv: str) -> Cmd:
    return Cmd(tuple(argv))


def brctl(*args: str) -> tuple[str, ...]:
    """brctl's getopt takes a name like `-rf` (a valid interface name) for options
    unless `--` comes first; the chapter's plain form everywhere else."""
    if any(a.startswith("-") for a in args):
        return ("brctl", "--", *args)
    return ("brctl", *args)


class _Dialect:
    def __init__(self, name: str) -> None:
        self.name = name
        self.brctl = name == "brctl"

    def ip(self, netns: str | None, *args: str) -> Cmd:
        """`ip ARGS` in the host or in a namespace, the dialect's way."""
        if netns is None:
            return Cmd(("ip", *args))
        if self.brctl:
            return Cmd(("ip", "netns", "exec", netns, "ip", *args))
        return Cmd(("ip", "-n", netns, *args))

    def in_netns(self, netns: str | None, *argv: str) -> tuple[str, ...]:
        return argv if netns is None else ("ip", "netns", "exec", netns, *argv)

    def link_owned(self, netns: str | None, dev: str, owner: str) -> tuple[str, ...]:
        """Exits 0 only if the link exists and carries the owner's mark."""
        return self.in_netns(netns, "grep", "-qsxF", o.mark(owner), f"/sys/class/net/{dev}/ifalias")

    def netns_owned(self, netns: str, owner: str) -> tuple[str, ...]:
        return self.link_owned(netns, "lo", owner)

    def add_bridge(self, op: o.AddBridge) -> list[Cmd]:
        name = op.name
        if self.brctl:
            out = [Cmd(brctl("addbr", name))]
            if op.mtu is not None:
                out.append(C("ip", "link", "set", "dev", name, "mtu", str(op.mtu)))
            if op.mcast_snooping is not None:
                raise DialectError(
                    "AddBridge", self.name, "brctl has no multicast snooping setting; use iproute2"
                )
        else:
            argv = ["ip", "link", "add", "name", name]
            if op.mtu is not None:
                argv += ["mtu", str(op.mtu)]
            argv += ["type", "bridge"]
            if op.mcast_snooping is not None:
                argv += ["mcast_snooping", _bit(op.mcast_snooping)]
            out = [Cmd(tuple(argv))]
        out.append(C("ip", "link", "set", "dev", name, "alias", o.mark(op.owner)))
        return out

    def add_veth(self, op: o.AddVeth) -> list[Cmd]:
        mtu = ("mtu", str(op.mtu)) if op.mtu is not None else ()
        mac = ("address", op.peer_mac) if op.peer_mac is not None else ()
        if not self.brctl:
            argv = ["ip"]
            if op.netns is not None:
                argv += ["-n", op.netns]
            argv += ["link", "add", "name", op.name, *mtu, "type", "veth", "peer", "name", op.peer]
            if op.peer_netns is not None:
                argv += ["netns", op.peer_netns]
            argv += [*mtu, *mac]
            out = [Cmd(tuple(argv))]
        else:
            out = self._chapter_veth(op, mtu, mac)
        out.append(self.ip(op.netns, "link", "set", "dev", op.name, "alias", o.mark(op.owner)))
        if not op.autoconf:
            out.append(self.ip(op.netns, "link", "set", "dev", op.name, "addrgenmode", "none"))
        if not op.peer_autoconf:
            out.append(self.ip(op.peer_netns, "link", "set", "dev", op.peer, "addrgenmode", "none"))
        return out

    def add_vxlan(self, op: o.AddVxlan) -> list[Cmd]:
        """`ip link add` in the host namespace, with `netns` when the device belongs in a
        container: its UDP socket stays on the host's underlay. brctl has no VXLAN, so
        the brctl dialect uses the same `ip` command."""
        argv = ["ip", "link", "add", "name", op.name]
        if op.mtu is not None:
            argv += ["mtu", str(op.mtu)]
        if op.netns is not None:
            argv += ["netns", op.netns]
        argv += ["type", "vxlan", "id", str(op.vni), "local", str(op.local)]
        if op.remote is not None:
            argv += ["remote", str(op.remote)]
        argv += ["dstport", str(op.port)]
        if op.dev is not None:
            argv += ["dev", op.dev]
        out = [
            Cmd(tuple(argv)),
            self.ip(op.netns, "link", "set", "dev", op.name, "alias", o.mark(op.owner)),
        ]
        if not op.autoconf:
            out.append(self.ip(op.netns, "link", "set", "dev", op.name, "addrgenmode", "none"))
        return out

    def _chapter_veth(self, op: o.AddVeth, mtu: tuple[str, ...], mac: tuple[str, ...]) -> list[Cmd]:
        """Create on the host under temporary names, move each end, rename it there."""
        ends = [(op.name, op.netns, mtu), (op.peer, op.peer_netns, (*mtu, *mac))]
        names = [
            _temp_name(op, side) if netns is not None else name
            for side, (name, netns, _) in zip("ab", ends, strict=True)
        ]
        out = [C("ip", "link", "add", "name", names[0], "type", "veth", "peer", "name", names[1])]
        for (name, netns, extra), temp in zip(ends, names, strict=True):
            if netns is not None:
                out.append(C("ip", "link", "set", temp, "netns", netns))
                out.append(self.ip(netns, "link", "set", "dev", temp, "name", name))
            if extra:
                out.append(self.ip(netns, "link", "set", "dev", name, *extra))
        return out


_BY_NAME = {name: _Dialect(name) for name in DIALECTS}  # one each: `commands` runs per op


def scratch_names(op: o.AddVeth) -> tuple[str, str]:
    """The temporary names the brctl dialect gives a veth's ends on the way into their
    namespaces, so a crashed or failed apply can find and remove them."""
    return _temp_name(op, "a"), _temp_name(op, "b")


def _temp_name(op: o.AddVeth, side: str) -> str:
    """A deterministic host-side name for a veth end on its way into a namespace."""
    seed = f"{op.owner}\0{op.netns}\0{op.name}\0{op.peer_netns}\0{op.peer}"
    return f"ngt{hashlib.sha256(seed.encode()).hexdigest()[:10]}{side}"


def _bit(flag: bool) -> str:
    return "1" if flag else "0"
