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
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from .model import NOWHERE, Loc

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
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> DelVeth:
        return DelVeth(self.name, self.netns, self.owner, self.loc)


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
    dev: str
    address: IPv4Interface
    netns: str | None = None
    loc: Loc = field(default=NOWHERE, compare=False)

    def inverse(self) -> None:
        return None


@dataclass(frozen=True)
class AddRoute:
    netns: str | None
    to: str  # "default" or a CIDR
    via: IPv4Address | None = None
    dev: str | None = None
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


Op = (
    AddNetns
    | AdoptNetns
    | AddBridge
    | AddVeth
    | SetMaster
    | AttachUplink
    | LinkUp
    | AddAddress
    | AddRoute
    | MakeDir
    | WriteFile
    | DelNetns
    | ReleaseNetns
    | DelBridge
    | DelVeth
    | DetachUplink
    | RemoveDir
    | RemoveFile
)


def teardown(ops: list[Op]) -> list[Op]:
    """The ops that undo `ops`: inverses in reverse order, children left to parents."""
    out: list[Op] = []
    for op in reversed(ops):
        inv = op.inverse()
        if inv is not None:
            out.append(inv)
    return out


def to_json(op: Op) -> dict[str, Any]:
    """A JSON-ready dict: {"op": name, fields..., "loc": {...}}."""
    out: dict[str, Any] = {"op": type(op).__name__}
    for f in dataclasses.fields(op):
        value = getattr(op, f.name)
        if f.name == "loc":
            value = dataclasses.asdict(value)
        elif value is not None and not isinstance(value, (str, int, bool)):
            value = str(value)
        out[f.name] = value
    return out
