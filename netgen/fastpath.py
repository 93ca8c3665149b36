"""The fast path of `apply` and `destroy`: the dialect's own commands, sent as netlink requests.

`dialects.commands()` stays the one place that decides what an op does; this module
is another way to *run* what it wrote. An `ip` command line that `parse()` reads
whole, in the shapes the iproute2 dialect writes, becomes the request `ip` itself
would send for it, sent from this process over sockets that stay open (`netlink.py`).
Anything else (install, iptables, nft, `rm`, a line with one word `parse()` does not
know) runs as a subprocess exactly as in the slow path. The executor, its plan,
guards, failure handling and rollback are unchanged: only the runner differs.

Also here, for the executor: `Reader` reads each namespace's links, addresses and
routes with netlink dumps instead of three `ip -j` processes per namespace, and
`absorb_veths()` lets a namespace's deletion take the host ends of its veths along
(one kernel cleanup for all of them) instead of deleting them one by one, each of
which waits for an RCU grace period.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, ip_address, ip_network
from typing import Protocol

from . import execute as ex
from . import netlink as nl
from . import ops as o
from . import plan as p
from .dialects import Cmd
from .errors import HostError
from .state import Link, Route

NETNS_DIR = nl.NETNS_DIR


# -- `ip` command lines as requests --------------------------------------------------


class Resolver(Protocol):
    """What a request needs looked up when it is sent: ifindexes and namespace fds."""

    def index(self, netns: str | None, dev: str) -> int: ...

    def netns_fd(self, netns: str) -> int: ...


@dataclass(frozen=True)
class Request:
    """One rtnetlink message an `ip` command stands for, in namespace `netns` (None: host).

    Devices are named (`index_of`, `master`, `oif`, `peer_netns`) and looked up when it
    is encoded, since they exist only once the requests before it have run.
    """

    netns: str | None
    kind: int
    flags: int
    family: int = socket.AF_UNSPEC
    index_of: str | None = None  # the device whose ifindex goes in the fixed header
    attrs: tuple[bytes, ...] = ()  # attributes needing no lookup
    ifname: str | None = None  # IFLA_IFNAME: the name of a link to create
    up: bool = False
    master: str | None = None  # IFLA_MASTER: this device's ifindex ("" for nomaster)
    link_kind: str | None = None  # IFLA_LINKINFO: kind, data, and a veth's peer
    link_data: tuple[bytes, ...] = ()
    peer: tuple[bytes, ...] | None = None  # a veth peer's attributes, but its namespace
    peer_name: str | None = None
    peer_netns: str | None = None  # None: the request's own
    prefixlen: int = 0  # addresses and routes
    scope: int = 0
    oif: str | None = None

    def encode(self, resolve: Resolver, seq: int = 0) -> bytes:
        """The whole message, as the unit tests compare it."""
        return nl.message(self.kind, self.flags | nl.NLM_F_REQUEST | nl.NLM_F_ACK,
                          self.header(resolve), *self.body(resolve), seq=seq)  # fmt: skip

    def header(self, resolve: Resolver) -> bytes:
        index = resolve.index(self.netns, self.index_of) if self.index_of is not None else 0
        if self.kind in (nl.RTM_NEWLINK, nl.RTM_DELLINK):
            change = nl.IFF_UP if self.up else 0
            return nl.IFINFOMSG.pack(self.family, 0, index, change, change)
        if self.kind == nl.RTM_NEWADDR:
            return nl.IFADDRMSG.pack(self.family, self.prefixlen, 0, self.scope, index)
        return nl.RTMSG.pack(
            self.family, self.prefixlen, 0, 0, nl.RT_TABLE_MAIN, nl.RTPROT_BOOT, self.scope,
            nl.RTN_UNICAST, 0,
        )  # fmt: skip

    def body(self, resolve: Resolver) -> list[bytes]:
        """The attributes, in the order iproute2 sends them."""
        out = list(self.attrs)
        if self.ifname is not None:
            out.append(nl.attr_str(nl.IFLA_IFNAME, self.ifname))
        if self.master is not None:
            index = resolve.index(self.netns, self.master) if self.master else 0
            out.append(nl.attr_u32(nl.IFLA_MASTER, index))
        if self.oif is not None:
            out.append(nl.attr_u32(nl.RTA_OIF, resolve.index(self.netns, self.oif)))
        if self.link_kind is not None:
            data = list(self.link_data)
            if self.peer is not None:
                peer = [*self.peer, nl.attr_str(nl.IFLA_IFNAME, self.peer_name or "")]
                if self.peer_netns is not None:
                    fd = resolve.netns_fd(self.peer_netns)
                    peer.insert(0, nl.attr_u32(nl.IFLA_NET_NS_FD, fd))
                empty = nl.IFINFOMSG.pack(0, 0, 0, 0, 0)
                data.append(nl.attr(nl.VETH_INFO_PEER, empty + b"".join(peer)))
            info = [nl.attr(nl.IFLA_INFO_KIND, self.link_kind.encode())]
            if data:
                info.append(nl.nest(nl.IFLA_INFO_DATA, *data))
            out.append(nl.nest(nl.IFLA_LINKINFO, *info))
        return out


@dataclass(frozen=True)
class NetnsRequest:
    """`ip netns add/delete NAME`: a bind mount under /var/run/netns, not a message."""

    add: bool
    name: str


Action = Request | NetnsRequest
_CREATE = nl.NLM_F_CREATE | nl.NLM_F_EXCL


def parse(argv: Sequence[str]) -> list[Action] | None:
    """The requests an `ip` command line stands for, or None if it is not read whole.

    Only the shapes the iproute2 dialect writes are read; a word out of place makes
    the line run as a subprocess instead, so nothing is ever half-understood.
    """
    args = list(argv)
    if len(args) < 2 or args[0] != "ip":
        return None
    netns: str | None = None
    rest = args[1:]
    if rest[:1] == ["-n"] and len(rest) >= 2:
        netns, rest = rest[1], rest[2:]
    try:
        match rest:
            case ["netns", "add", name] if netns is None:
                return [NetnsRequest(True, name)]
            case ["netns", "delete", name] if netns is None:
                return [NetnsRequest(False, name)]
            case ["link", "add", "name", name, *opts]:
                return [_link_add(netns, name, opts)]
            case ["link", "set", "dev", dev, *opts] if opts:
                return [_link_set(netns, dev, opts)]
            case ["link", "delete", "dev", dev, *opts]:
                kind = _options(opts, {"type"}).get("type")
                return [Request(netns, nl.RTM_DELLINK, 0, index_of=dev, link_kind=kind)]
            case ["addr", "add", address, "dev", dev]:
                return [_addr_add(netns, address, dev)]
            case ["route", "add", to, *opts]:
                return [_route_add(netns, to, opts)]
    except ValueError:
        return None
    return None


def _options(words: list[str], known: set[str]) -> dict[str, str]:
    """`key value` pairs, each key at most once; ValueError on anything else."""
    if len(words) % 2:
        raise ValueError(words)
    out: dict[str, str] = {}
    for key, value in zip(words[::2], words[1::2], strict=True):
        if key not in known or key in out:
            raise ValueError(key)
        out[key] = value
    return out


def _mtu(value: str) -> bytes:
    return nl.attr_u32(nl.IFLA_MTU, int(value))


def _link_add(netns: str | None, name: str, words: list[str]) -> Request:
    kind_at = words.index("type")
    own = _options(words[:kind_at], {"mtu"})
    attrs = (_mtu(own["mtu"]),) if "mtu" in own else ()
    kind, extra = words[kind_at + 1], words[kind_at + 2 :]
    base = Request(netns, nl.RTM_NEWLINK, _CREATE, ifname=name, attrs=attrs, link_kind=kind)
    if kind == "bridge":
        opts = _options(extra, {"mcast_snooping"})
        data: tuple[bytes, ...] = ()
        if "mcast_snooping" in opts:
            data = (nl.attr_u8(nl.IFLA_BR_MCAST_SNOOPING, _bit(opts["mcast_snooping"])),)
        return replace(base, link_data=data)
    if kind == "veth" and extra[:2] == ["peer", "name"] and len(extra) >= 3:
        opts = _options(extra[3:], {"netns", "mtu", "address"})
        peer = []
        if "mtu" in opts:
            peer.append(_mtu(opts["mtu"]))
        if "address" in opts:
            peer.append(nl.attr(nl.IFLA_ADDRESS, _mac(opts["address"])))
        return replace(base, peer=tuple(peer), peer_name=extra[2], peer_netns=opts.get("netns"))
    raise ValueError(kind)


def _link_set(netns: str | None, dev: str, words: list[str]) -> Request:
    base = Request(netns, nl.RTM_NEWLINK, 0, index_of=dev)
    match words:
        case ["up"]:
            return replace(base, up=True)
        case ["alias", alias] if len(alias.encode()) < 256:
            # as iproute2 sends it: the bytes without a terminating NUL
            return replace(base, attrs=(nl.attr(nl.IFLA_IFALIAS, alias.encode()),))
        case ["addrgenmode", "none"]:
            mode = nl.attr_u8(nl.IFLA_INET6_ADDR_GEN_MODE, nl.IN6_ADDR_GEN_MODE_NONE)
            spec = nl.nest(nl.IFLA_AF_SPEC, nl.nest(socket.AF_INET6, mode))
            return replace(base, attrs=(spec,))
        case ["master", bridge]:
            return replace(base, master=bridge)
        case ["nomaster"]:
            return replace(base, master="")
        case ["mtu", mtu]:
            return replace(base, attrs=(_mtu(mtu),))
    raise ValueError(words)


def _addr_add(netns: str | None, address: str, dev: str) -> Request:
    iface = IPv4Interface(address)
    local = iface.ip.packed
    # iproute2's default scope: host for a loopback address, else global
    scope = nl.RT_SCOPE_HOST if iface.ip.is_loopback else nl.RT_SCOPE_UNIVERSE
    return Request(
        netns, nl.RTM_NEWADDR, _CREATE, socket.AF_INET, index_of=dev,
        attrs=(nl.attr(nl.IFA_LOCAL, local), nl.attr(nl.IFA_ADDRESS, local)),
        prefixlen=iface.network.prefixlen, scope=scope,
    )  # fmt: skip


def _route_add(netns: str | None, to: str, words: list[str]) -> Request:
    opts = _options(words, {"via", "dev"})
    attrs: list[bytes] = []
    prefixlen = 0
    if to != "default":
        dst = IPv4Network(to, strict=True)
        prefixlen = dst.prefixlen
        attrs.append(nl.attr(nl.RTA_DST, dst.network_address.packed))
    if "via" in opts:
        attrs.append(nl.attr(nl.RTA_GATEWAY, IPv4Address(opts["via"]).packed))
    # iproute2: a unicast route without a gateway is scope link, else universe
    scope = nl.RT_SCOPE_UNIVERSE if "via" in opts else nl.RT_SCOPE_LINK
    return Request(
        netns, nl.RTM_NEWROUTE, _CREATE, socket.AF_INET, attrs=tuple(attrs),
        prefixlen=prefixlen, scope=scope, oif=opts.get("dev"),
    )  # fmt: skip


def _bit(value: str) -> int:
    if value not in ("0", "1"):
        raise ValueError(value)
    return int(value)


def _mac(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6:
        raise ValueError(text)
    return bytes(int(x, 16) for x in parts)


# -- guards: "is this object ours" probes ----------------------------------------------


def parse_alias_guard(argv: Sequence[str]) -> tuple[str | None, str, str] | None:
    """(netns, dev, mark) of a dialect's ownership guard `[ip netns exec NS] grep -qsxF
    MARK /sys/class/net/DEV/ifalias`, or None for any other probe."""
    args = list(argv)
    netns: str | None = None
    if args[:3] == ["ip", "netns", "exec"] and len(args) > 3:
        netns, args = args[3], args[4:]
    match args:
        case ["grep", "-qsxF", mark, path] if path.startswith("/sys/class/net/"):
            dev, _, tail = path[len("/sys/class/net/") :].partition("/")
            if tail == "ifalias" and dev and "\n" not in mark:
                return netns, dev, mark
    return None


# -- the runner --------------------------------------------------------------------------


class NetlinkRunner:
    """Runs the dialect's `ip` commands as netlink requests, anything else through
    `fallback` (by default the slow path's subprocess runner). See the module docstring.

    A command it reads is carried out by the requests `ip` would send for it, one at a
    time, each acknowledged before the next, so a refusal is the command's failure and
    the executor's rollback works as it does for `ip`.
    """

    changes_host = True

    def __init__(self, fallback: ex.Runner | None = None) -> None:
        self.fallback = fallback if fallback is not None else ex.RealRunner()
        self._nss: nl.Namespaces | None = None
        self._index: dict[str | None, dict[str, int]] = {}  # netns -> dev -> ifindex
        self.sent = 0  # requests sent: for tests and the profile

    @property
    def nss(self) -> nl.Namespaces:
        if self._nss is None:
            self._nss = nl.Namespaces()
        return self._nss

    def close(self) -> None:
        """Close every socket: open ones keep their namespaces alive."""
        if self._nss is not None:
            self._nss.close()
            self._nss = None

    def release(self) -> None:
        """Let the kernel free the namespaces deleted so far (see Namespaces.delete)."""
        if self._nss is not None:
            self._nss.release()

    def socket(self, netns: str | None) -> nl.Socket:
        if netns is None:
            return self.nss.host
        try:
            return self.nss.socket(netns)
        except OSError as exc:
            code = exc.errno or errno.EIO
            raise nl.NetlinkError(
                code, f'Cannot open network namespace "{netns}": {os.strerror(code)}'
            ) from None

    def index(self, netns: str | None, dev: str) -> int:
        """The ifindex of a device, remembered until a request of ours may change it (a
        bridge is looked up once, not once per port)."""
        known = self._index.setdefault(netns, {})
        index = known.get(dev)
        if index is None:
            try:
                index = self.socket(netns).ifindex(dev)
            except ValueError:  # longer than a device name can be: let the kernel say so
                link = self.link(netns, dev)
                index = link.ifindex if link is not None else None
            if index is None:
                raise nl.NetlinkError(errno.ENODEV, f'Cannot find device "{dev}"')
            known[dev] = index
        return index

    def _forget(self, action: Action) -> None:
        """Drop the ifindexes a request may invalidate: the links it deletes or creates
        (a name can come back with a new ifindex), all of a namespace it adds or deletes."""
        if isinstance(action, NetnsRequest):
            self._index.pop(action.name, None)
        elif action.kind == nl.RTM_DELLINK and action.index_of is not None:
            self._index.get(action.netns, {}).pop(action.index_of, None)
        elif action.kind == nl.RTM_NEWLINK and action.ifname is not None:
            self._index.get(action.netns, {}).pop(action.ifname, None)
            if action.peer_name is not None:
                where = action.peer_netns if action.peer_netns is not None else action.netns
                self._index.get(where, {}).pop(action.peer_name, None)

    def netns_fd(self, netns: str) -> int:
        self.socket(netns)  # opens it, or says why not as `ip` does
        return self.nss.fd(netns)

    def link(self, netns: str | None, dev: str) -> Link | None:
        """One link by name (None: no such device)."""
        try:
            reply = self.socket(netns).get(
                nl.RTM_GETLINK,
                nl.IFINFOMSG.pack(0, 0, 0, 0, 0),
                nl.attr_str(nl.IFLA_IFNAME, dev),
                nl.attr_u32(nl.IFLA_EXT_MASK, nl.RTEXT_FILTER_SKIP_STATS),
            )
        except nl.NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise
        return _link(reply.body)

    def send(self, action: Action) -> None:
        """Carry out one request; NetlinkError/OSError with `ip`'s message if refused."""
        self.sent += 1
        self._forget(action)
        if isinstance(action, NetnsRequest):
            if action.add:
                self.nss.add(action.name)
            else:
                self.nss.delete(action.name)
            return
        sock = self.socket(action.netns)
        sock.request(action.kind, action.flags, action.header(self), *action.body(self))

    def probe(self, argv: Sequence[str]) -> bool:
        guard = parse_alias_guard(argv)
        if guard is None:
            return self.fallback.probe(argv)
        netns, dev, mark = guard
        try:
            link = self.link(netns, dev)
        except OSError:
            return False
        return link is not None and mark in (link.alias or "").split("\n")

    def run(self, cmd: Cmd) -> ex.Result:
        actions = parse(cmd.argv) if cmd.stdin is None else None
        if actions is None:
            self._index.clear()  # who knows what it changes
            return self.fallback.run(cmd)
        try:
            for action in actions:
                self.send(action)
        except nl.NetlinkError as exc:
            if exc.code == errno.ENODEV:
                self._index.clear()  # a device went away under us: look up afresh
            return ex.Result(2, exc.text)
        except OSError as exc:
            return ex.Result(1, exc.strerror or str(exc))
        return ex.Result(0)


# -- reading a namespace --------------------------------------------------------------


def _link(body: bytes) -> Link:
    """A Link from an RTM_NEWLINK message, as state.py builds it from `ip -j -d addr`."""
    _, _, index, flags, _ = nl.IFINFOMSG.unpack_from(body)
    a = nl.attrs(body, nl.IFINFOMSG.size)
    info = nl.attrs(a[nl.IFLA_LINKINFO]) if nl.IFLA_LINKINFO in a else {}
    kind = nl.text(info[nl.IFLA_INFO_KIND]) if nl.IFLA_INFO_KIND in info else None
    alias = nl.text(a[nl.IFLA_IFALIAS]) if nl.IFLA_IFALIAS in a else None
    link = Link(
        name=nl.text(a[nl.IFLA_IFNAME]),
        kind=kind or None,
        alias=alias or None,
        up=bool(flags & nl.IFF_UP),
        ifindex=index,
    )
    if nl.IFLA_MASTER in a:
        link.master = str(nl.u32(a[nl.IFLA_MASTER]))  # an ifindex until names are known
    if nl.IFLA_LINK in a:
        peer = nl.u32(a[nl.IFLA_LINK])
        if nl.IFLA_LINK_NETNSID in a:
            link.link_index = peer
            link.link_netnsid = nl.s32(a[nl.IFLA_LINK_NETNSID])
        elif peer:
            link.link_name = str(peer)
    return link


class Reader:
    """state.read()'s per-namespace reader over netlink: links, IPv4 and global IPv6
    addresses, main-table routes (IPv6 ones where there is an IPv6 address) and the
    namespace ids that name the other ends of veths: the snapshot `ip -j` gives.

    `names`: the namespaces this snapshot reads; ids are looked up only for those,
    and only for ids that a veth actually points at. `links_only`: the named
    namespaces' links without their addresses and routes (the host is read whole), for
    a plan that only removes: whether a namespace or veth is there and whose it is
    needs no more, and it halves the requests of reading 1,000 namespaces.
    """

    def __init__(self, nss: nl.Namespaces, names: Iterable[str], links_only: bool = False) -> None:
        self.nss = nss
        self.names = sorted(set(names))
        self.links_only = links_only

    def __call__(self, netns: str | None) -> tuple[dict[str, Link], list[Route], dict[int, str]]:
        try:
            sock = self.nss.socket(netns)
            return self._read(netns, sock)
        except OSError as exc:
            raise HostError(f"cannot read namespace {netns!r}: {exc.strerror}") from exc

    def _read(
        self, netns: str | None, sock: nl.Socket
    ) -> tuple[dict[str, Link], list[Route], dict[int, str]]:
        header = nl.IFINFOMSG.pack(0, 0, 0, 0, 0)
        mask = nl.attr_u32(nl.IFLA_EXT_MASK, nl.RTEXT_FILTER_SKIP_STATS)
        by_index: dict[int, Link] = {}
        for reply in sock.dump(nl.RTM_GETLINK, header, mask):
            link = _link(reply.body)
            by_index[link.ifindex] = link
        names = {i: link.name for i, link in by_index.items()}
        for link in by_index.values():
            if link.master is not None:
                link.master = names.get(int(link.master), f"if{link.master}")
            if link.link_name is not None:
                link.link_name = names.get(int(link.link_name), f"if{link.link_name}")
        if self.links_only and netns is not None:
            links = {link.name: link for link in by_index.values()}
            return links, [], self._ids(netns, sock, links.values())
        # as state._read_ns: every IPv4 address, global IPv6 ones
        for reply in sock.dump(nl.RTM_GETADDR, nl.IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            family, prefixlen, _, scope, index = nl.IFADDRMSG.unpack_from(reply.body)
            a = nl.attrs(reply.body, nl.IFADDRMSG.size)
            local = a.get(nl.IFA_LOCAL) or a.get(nl.IFA_ADDRESS)
            if local is None or index not in by_index:
                continue
            if family == socket.AF_INET or (
                family == socket.AF_INET6 and scope == nl.RT_SCOPE_UNIVERSE
            ):
                by_index[index].addresses.add(f"{ip_address(local)}/{prefixlen}")
        routes = self._routes(sock, socket.AF_INET, names)
        if any(":" in a for link in by_index.values() for a in link.addresses):
            routes += self._routes(sock, socket.AF_INET6, names)  # only where netgen put v6
        links = {link.name: link for link in by_index.values()}
        return links, routes, self._ids(netns, sock, links.values())

    @staticmethod
    def _routes(sock: nl.Socket, family: int, names: dict[int, str]) -> list[Route]:
        """The main table's routes of one family, as `ip -4/-6 route show` lists them."""
        routes = []
        for reply in sock.dump(nl.RTM_GETROUTE, nl.RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)):
            got, dst_len, _, _, table, _, _, _, rflags = nl.RTMSG.unpack_from(reply.body)
            a = nl.attrs(reply.body, nl.RTMSG.size)
            if nl.RTA_TABLE in a:
                table = nl.u32(a[nl.RTA_TABLE])
            if got != family or table != nl.RT_TABLE_MAIN or rflags & nl.RTM_F_CLONED:
                continue
            size = 4 if family == socket.AF_INET else 16
            dst = ip_address(a.get(nl.RTA_DST, bytes(size)))
            gateway = str(ip_address(a[nl.RTA_GATEWAY])) if nl.RTA_GATEWAY in a else None
            dev = names.get(nl.u32(a[nl.RTA_OIF])) if nl.RTA_OIF in a else None
            routes.append(Route(ip_network(f"{dst}/{dst_len}", strict=False), gateway, dev))
        return routes

    def _ids(self, netns: str | None, sock: nl.Socket, links: Iterable[Link]) -> dict[int, str]:
        """Names of the namespace ids this namespace's veths point at (those we read)."""
        wanted = {link.link_netnsid for link in links if link.link_netnsid is not None}
        wanted.discard(-1)
        if not wanted:
            return {}
        if netns is not None:
            wanted.discard(_nsid(sock, self.nss.home))  # the host: it has no name
        out: dict[int, str] = {}
        for name in self.names:
            if not wanted:
                break
            if name == netns:
                continue
            try:
                fd = os.open(f"{NETNS_DIR}/{name}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                nsid = _nsid(sock, fd)
            except OSError:
                continue
            finally:
                os.close(fd)
            if nsid in wanted:
                out[nsid] = name
                wanted.discard(nsid)
        return out


def _nsid(sock: nl.Socket, fd: int) -> int:
    """The id this socket's namespace knows the namespace `fd` by (-1: none yet)."""
    reply = sock.get(
        nl.RTM_GETNSID, nl.RTGENMSG.pack(socket.AF_UNSPEC), nl.attr_u32(nl.NETNSA_FD, fd)
    )
    a = nl.attrs(reply.body, nl.RTGENMSG.size)
    return nl.s32(a[nl.NETNSA_NSID]) if nl.NETNSA_NSID in a else -1


# -- destroy: namespaces take their veths along ------------------------------------


@dataclass
class Absorbed:
    """Removal steps of host-side veth ends left to the deletion of the namespace that
    holds their other end (`by[i]`: the steps the i-th step's deletion takes along)."""

    by: dict[int, list[p.Step]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.by)


def absorb_veths(
    steps: list[p.Step], pinned: Collection[str] = ()
) -> tuple[list[p.Step], Absorbed]:
    """Drop each "-" step deleting a host veth end whose other end is in a namespace
    deleted later in the same plan; that deletion takes it along and will rebuild it on
    rollback. Not when the plan creates a host link of the same name again (the old
    one may linger until the kernel's cleanup), nor for adopted namespaces or `pinned`
    ones (they live on with their processes, and so would the veth).
    """
    deleted = {
        s.op.name: i
        for i, s in enumerate(steps)
        if s.action == "-"
        and isinstance(s.op, o.DelNetns)
        and isinstance(s.undoes, o.AddNetns)
        and s.op.name not in pinned
    }
    recreated = {
        key[2]
        for s in steps
        if s.action == "+"
        for key in p.creates(s.op)
        if key[:2] == ("link", None)
    }
    dropped: set[int] = set()
    taken: dict[int, list[p.Step]] = {}
    for i, s in enumerate(steps):
        root = s.undoes
        if (
            s.action == "-"
            and isinstance(s.op, o.DelVeth)
            and s.op.netns is None
            and isinstance(root, o.AddVeth)
            and root.netns is None
            and root.peer_netns is not None
            and deleted.get(root.peer_netns, -1) > i
            and s.op.name not in recreated
        ):
            taken.setdefault(deleted[root.peer_netns], []).append(s)
            dropped.add(i)
    out: list[p.Step] = []
    absorbed = Absorbed()
    for i, s in enumerate(steps):
        if i in taken:
            restore = s.restore + tuple(op for t in taken[i] for op in t.restore)
            s = replace(s, restore=restore)
            absorbed.by[len(out)] = taken[i]
            out.append(s)
        elif i not in dropped:
            out.append(s)
    return out, absorbed


def deleted_netns(steps: Iterable[p.Step]) -> list[str]:
    return [s.op.name for s in steps if s.action == "-" and isinstance(s.op, o.DelNetns)]


def pinned(names: Iterable[str]) -> set[str]:
    """The named namespaces some process is in: unnaming one does not free it."""
    idents: dict[tuple[int, int], str] = {}
    for name in names:
        try:
            st = os.stat(f"{NETNS_DIR}/{name}")
        except OSError:
            continue
        idents[(st.st_dev, st.st_ino)] = name
    out: set[str] = set()
    if not idents:
        return out
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        found = idents.get((st.st_dev, st.st_ino))
        if found is not None:
            out.add(found)
    return out


def wait_gone(names: Collection[str], timeout: float) -> set[str]:
    """Wait until none of the host links `names` exists (the kernel frees a deleted
    namespace, and the veths in it, asynchronously); returns those still there.

    Each look is an ioctl per name, in order, up to the first one still there (the
    kernel frees the namespaces released together in one batch): a full link dump per
    look cost ~10 ms of CPU at 1,000 links, taken from the kernel's cleanup on a
    small machine.
    """
    left = sorted(names)
    if not left:
        return set()
    sock = nl.Socket()
    try:
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            while left and not _exists(sock, left[-1]):
                left.pop()
            if not left:
                return set()
            if time.monotonic() > deadline:
                return {name for name in left if _exists(sock, name)}
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
    finally:
        sock.close()


def _exists(sock: nl.Socket, name: str) -> bool:
    try:
        return sock.ifindex(name) is not None
    except ValueError:  # longer than a device name can be
        return False
