"""The IR: what to build, one small fact per op, never how.

Ops are frozen dataclasses. Each says *what* (bridge br0; address 10.0.0.1/24
on eth0 in netns web) and carries `loc`, the spec line that asked for it
(excluded from equality, so moving a spec line does not change the ops).
How an op becomes a command is decided in one place, `dialects.py`.

Each op knows its inverse, used for teardown and rollback. An inverse of None
means the object goes away with its parent (an address with its link, a link
inside a namespace with the namespace), so undoing the parent is enough.

Creating ops carry `owner`, the spec name: netgen marks what it creates so it
deletes only its own objects (`netgen:<owner>` as the link's ifalias, on `lo`
for a namespace).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Any

from .model import NOWHERE, Loc, Proto

MARK_PREFIX = "netgen:"


def mark(owner: str) -> str:
    """The ownership mark netgen leaves on what it creates."""
    return f"{MARK_PREFIX}{owner}"


@dataclass(frozen=True)
class AddNetns:
    """A named network namespace with its `lo` marked as ours."""

    name: str
    owner: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> DelNetns:
        return DelNetns(self.name, self.owner, self.loc)


@dataclass(frozen=True)
class AdoptNetns:
    """Name the namespace of a running process, as the chapter does with `ln -s`."""

    name: str
    pid: int
    owner: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> ReleaseNetns:
        return ReleaseNetns(self.name, self.owner, self.loc)


@dataclass(frozen=True)
class AddBridge:
    name: str
    owner: str
    mtu: int | None = None
    mcast_snooping: bool | None = None
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> DelBridge:
        return DelBridge(self.name, self.owner, self.loc)


@dataclass(frozen=True)
class AddVeth:
    """A veth pair: `name` in `netns` (None: the host), `peer` created in `peer_netns`.

    The peer is created in its namespace directly where the dialect allows:
    moving it afterwards costs an RCU grace period per link.
    """

    name: str
    netns: str | None
    peer: str
    peer_netns: str | None
    owner: str
    mtu: int | None = None
    peer_mac: str | None = None
    peer_autoconf: bool = False  # IPv6 address autoconfiguration on the peer end
    autoconf: bool = True  # ... on the `name` end; off for a bridge port, which needs no address
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> DelVeth:
        return DelVeth(self.name, self.netns, self.owner, self.loc)


@dataclass(frozen=True)
class AddVxlan:
    """A VXLAN device `name` in `netns` (None: the host), always created from the host
    namespace, so that its UDP socket (`local` -> `remote` on `port`, over `dev`) lives on
    the host's underlay wherever the device ends up. `remote` None: a bridge port whose
    peers are AddFdb entries (head-end replication); set: a point-to-point tunnel."""

    name: str
    netns: str | None
    vni: int
    local: IPv4Address | IPv6Address
    remote: IPv4Address | IPv6Address | None
    port: int
    dev: str | None
    owner: str
    mtu: int | None = None
    autoconf: bool = True  # IPv6 address autoconfiguration; off for a bridge port
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> DelVxlan:
        return DelVxlan(self.name, self.netns, self.owner, self.loc)


@dataclass(frozen=True)
class AddFdb:
    """Static head-end replication on a VXLAN bridge port: frames with no learnt
    destination (broadcast, unknown unicast, multicast) are also sent to `dst`, a peer
    host, so the overlay needs no multicast underlay. The entry has no mark of its own:
    it is `owner`'s because its device carries `owner`'s mark."""

    dev: str
    dst: IPv4Address | IPv6Address
    owner: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> DelFdb:
        return DelFdb(self.dev, self.dst, self.owner, self.loc)


@dataclass(frozen=True)
class SetMaster:
    """Enslave a veth end netgen created to a bridge; undone by deleting the veth."""

    dev: str
    bridge: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> None:
        return None


@dataclass(frozen=True)
class AttachUplink:
    """Enslave an existing host interface (a NIC) to a bridge; released, never deleted."""

    dev: str
    bridge: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> DetachUplink:
        return DetachUplink(self.dev, self.bridge, self.loc)


@dataclass(frozen=True)
class LinkUp:
    dev: str
    netns: str | None = None
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> None:
        return None


@dataclass(frozen=True)
class AddAddress:
    """An address on a link. `nodad`: an IPv6 address usable at once, without duplicate
    address detection (netgen checked it is unique), as Docker adds its own."""

    dev: str
    address: IPv4Interface | IPv6Interface
    netns: str | None = None
    loc: Loc = field(default=NOWHERE, compare=False)
    nodad: bool = False

    def inverse(self) -> None:
        return None


@dataclass(frozen=True)
class AddRoute:
    """A route; `default` is IPv6 when `via` is."""

    netns: str | None
    to: str  # "default" or a CIDR
    via: IPv4Address | IPv6Address | None = None
    dev: str | None = None
    loc: Loc = field(default=NOWHERE, compare=False)

    @property
    def ipv6(self) -> bool:
        """An IPv6 route: its destination or gateway says so (`default` alone does not)."""
        return ":" in self.to or (self.via is not None and self.via.version == 6)

    def inverse(self) -> None:
        return None


@dataclass(frozen=True)
class WaitDad:
    """Wait until duplicate address detection has finished for an IPv6 address added
    without `nodad`: it is unusable (no bind, no source) while `tentative`. A failed
    detection (another host holds the address) is a failure of the apply. The wait
    covers every address of the link, its link-local one (neighbour discovery) included."""

    dev: str
    address: IPv6Interface
    netns: str | None = None
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> None:
        return None


@dataclass(frozen=True)
class MakeDir:
    path: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> RemoveDir:
        return RemoveDir(self.path, self.loc)


@dataclass(frozen=True)
class WriteFile:
    path: str
    content: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> RemoveFile:
        return RemoveFile(self.path, self.loc)


# -- firewall: published ports, masquerade, icc=false and --link ---------------------
# The rules are the parts of one AddFirewall op rather than ops of their own: a spec's
# firewall is installed as one unit (one `nft -f` transaction in the nftables dialect)
# and removed as one unit (everything lives in chains/tables named after the spec).
# Each rule keeps its `loc`, so the script still names the spec line behind each rule.


@dataclass(frozen=True)
class PublishPort:
    """Docker's -p: (host_ip, or any non-loopback host address; host_port) to dest:dest_port.

    Reached from other hosts (DNAT in PREROUTING), from the host itself (DNAT in
    OUTPUT) and let through FORWARD into `bridge`.
    """

    proto: Proto
    host_ip: IPv4Address | None
    host_port: int
    dest: IPv4Address | IPv6Address  # IPv6: published on the host's IPv6 addresses
    dest_port: int
    bridge: str
    loc: Loc = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class Isolate:
    """icc=false: nothing passes between the containers on `bridge` but what AllowLink opens.

    `ports` (the bridge ports netgen attached: container legs and uplinks) scope the
    filter on bridged frames; `subnet` scopes the one on traffic routed back into the
    bridge by the host.
    """

    bridge: str
    subnet: IPv4Network | IPv6Network
    ports: tuple[str, ...]
    loc: Loc = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class Masquerade:
    """Traffic from `subnet` to anywhere else leaves with the host's address (and is forwarded)."""

    subnet: IPv4Network | IPv6Network
    bridge: str
    loc: Loc = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class AllowLink:
    """--link on an icc=false bridge: `src` may reach `dst` on proto/port, and get the replies."""

    bridge: str
    src: IPv4Address | IPv6Address
    dst: IPv4Address | IPv6Address
    proto: Proto
    port: int
    loc: Loc = field(default=NOWHERE, compare=False)


# Isolate before Masquerade: a decoder that tries the union in order must not read an
# Isolate (a superset of Masquerade's fields) as a Masquerade.
Rule = PublishPort | Isolate | Masquerade | AllowLink
_RULES = (PublishPort, Isolate, Masquerade, AllowLink)


@dataclass(frozen=True)
class AddFirewall:
    """The spec's firewall: chains (iptables) or tables (nftables) of its own, and jumps to them."""

    owner: str
    rules: tuple[Rule, ...]
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> DelFirewall:
        bridged = any(isinstance(r, (Isolate, AllowLink)) for r in self.rules)
        return DelFirewall(self.owner, bridged, self.loc, ipv6=any(is_ipv6(r) for r in self.rules))


@dataclass(frozen=True)
class SetSysctl:
    """Set a kernel setting shared by every spec (`net.ipv4.ip_forward`), remembering its old value.

    `key` is in sysctl(8)'s notation: dots separate components, a `/` stands for a
    dot inside one (an interface name like `br.1`).
    """

    owner: str
    key: str
    value: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> RestoreSysctl:
        return RestoreSysctl(self.owner, self.key, self.loc)


def is_ipv6(rule: Rule) -> bool:
    """An IPv6 rule (ip6tables in the iptables dialect)."""
    match rule:
        case PublishPort(dest=a) | AllowLink(src=a):
            return a.version == 6
        case Isolate(subnet=n) | Masquerade(subnet=n):
            return n.version == 6
    return False


# -- inverses: each removes only what exists and is marked as the owner's ----------


@dataclass(frozen=True)
class DelNetns:
    name: str
    owner: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> None:
        return None


@dataclass(frozen=True)
class ReleaseNetns:
    name: str
    owner: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> None:
        return None


@dataclass(frozen=True)
class DelBridge:
    name: str
    owner: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> None:
        return None


@dataclass(frozen=True)
class DelVeth:
    name: str
    netns: str | None
    owner: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> None:
        return None


@dataclass(frozen=True)
class DelVxlan:
    name: str
    netns: str | None
    owner: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> None:
        return None


@dataclass(frozen=True)
class DelFdb:
    dev: str
    dst: IPv4Address | IPv6Address
    owner: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> None:
        return None


@dataclass(frozen=True)
class DetachUplink:
    dev: str
    bridge: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> None:
        return None


@dataclass(frozen=True)
class RemoveDir:
    path: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> None:
        return None


@dataclass(frozen=True)
class RemoveFile:
    path: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> None:
        return None


@dataclass(frozen=True)
class DelFirewall:
    """Remove every chain, jump and table named after `owner`, whatever rules they hold.

    `bridged`: the firewall filters bridged traffic too (icc=false), so its nftables
    bridge table goes as well; without it the iptables dialect needs no `nft` at all.
    """

    owner: str
    bridged: bool = True
    loc: Loc = field(default=NOWHERE, compare=False)
    ipv6: bool = False  # ip6tables chains to remove too (the iptables dialect)

    def inverse(self) -> None:
        return None


@dataclass(frozen=True)
class RestoreSysctl:
    """Drop `owner`'s claim on `key`; the last spec to let go restores the value first found."""

    owner: str
    key: str
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> None:
        return None


Op = (
    AddNetns
    | AdoptNetns
    | AddBridge
    | AddVeth
    | AddVxlan
    | AddFdb
    | SetMaster
    | AttachUplink
    | LinkUp
    | AddAddress
    | AddRoute
    | WaitDad
    | MakeDir
    | WriteFile
    | AddFirewall
    | SetSysctl
    | DelNetns
    | ReleaseNetns
    | DelBridge
    | DelVeth
    | DelVxlan
    | DelFdb
    | DetachUplink
    | RemoveDir
    | RemoveFile
    | DelFirewall
    | RestoreSysctl
)


def teardown(ops: list[Op]) -> list[Op]:
    """The ops that undo `ops`: inverses in reverse order, children left to parents."""
    out: list[Op] = []
    for op in reversed(ops):
        inv = op.inverse()
        if inv is not None:
            out.append(inv)
    return out


def to_json(op: Op | Rule) -> dict[str, Any]:
    """A JSON-ready dict: {"op": name, fields..., "loc": {...}}; a firewall's rules nest."""
    out: dict[str, Any] = {"op": type(op).__name__}
    for f in dataclasses.fields(op):
        out[f.name] = _json_value(f.name, getattr(op, f.name))
    return out


def _json_value(name: str, value: Any) -> Any:
    if name == "loc":
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return [to_json(v) if isinstance(v, _RULES) else _json_value("", v) for v in value]
    if value is not None and not isinstance(value, (str, int, bool)):
        return str(value)
    return value
