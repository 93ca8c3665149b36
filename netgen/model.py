"""The validated spec: what the user asked for, every address resolved.

Everything here has passed validation: names match the contract's patterns,
addresses are inside their subnets and unique, references resolve. Lowering
reads only these types, never YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Any, Literal

IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface
IPNetwork = IPv4Network | IPv6Network
Mode = Literal["bridge", "none", "host", "container"]
Proto = Literal["tcp", "udp"]


@dataclass(frozen=True)
class Loc:
    """Where a spec element was written: file, 1-based line and column, key path."""

    file: str
    line: int
    col: int
    path: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} {self.path}"


NOWHERE = Loc("<netgen>", 0, 0, "")


VXLAN_PORT = 4789  # IANA's VXLAN port, the kernel's and Docker's default


@dataclass(frozen=True)
class Host:
    """A machine the spec spans (`hosts:`): its underlay address is the VXLAN tunnels' end."""

    name: str
    address: IPAddress
    dev: str | None = None
    mtu: int = 1500
    vars: tuple[tuple[str, Any], ...] = field(default=(), compare=False)  # Ansible inventory
    loc: Loc = field(default=NOWHERE, compare=False)

    @property
    def overhead(self) -> int:
        """Bytes VXLAN adds to a frame: outer IP, UDP, VXLAN and inner Ethernet headers."""
        return 50 if self.address.version == 4 else 70

    @property
    def overlay_mtu(self) -> int:
        return self.mtu - self.overhead


@dataclass(frozen=True)
class Bridge:
    name: str
    subnet: IPv4Network
    address: IPv4Address
    mtu: int | None = None
    external: bool = False
    masquerade: bool = False
    icc: bool = True
    uplinks: tuple[str, ...] = ()
    mcast_snooping: bool | None = None
    loc: Loc = field(default=NOWHERE, compare=False)
    uplinks_loc: Loc = field(default=NOWHERE, compare=False)  # the `uplinks:` key
    subnet6: IPv6Network | None = None  # dual-stack when set
    address6: IPv6Address | None = None  # set exactly when subnet6 is
    masquerade6: bool = False
    dad: bool = False  # IPv6 duplicate address detection on netgen's addresses (else nodad)
    vni: int | None = None  # resolved (given or derived) when the spec has hosts
    vxlan_port: int = VXLAN_PORT
    # (host, address, address6) per host the bridge spans, in `hosts:` order; the first
    # is (host, address, address6). Empty without `hosts:`.
    gateways: tuple[tuple[str, IPv4Address, IPv6Address | None], ...] = ()

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hosts the bridge spans (empty without `hosts:`)."""
        return tuple(h for h, _, _ in self.gateways)

    @property
    def overlay(self) -> bool:
        """The bridge spans 2+ hosts: a VXLAN device joins each host's part."""
        return len(self.gateways) >= 2

    @property
    def vxlan_dev(self) -> str:
        return f"vx{self.vni}"

    def on(self, host: str | None) -> Bridge:
        """This bridge as `host` builds it: its gateway addresses there."""
        for name, address, address6 in self.gateways:
            if name == host:
                return replace(self, address=address, address6=address6)
        return self

    @property
    def gateway(self) -> IPv4Interface:
        return IPv4Interface(f"{self.address}/{self.subnet.prefixlen}")

    @property
    def gateway6(self) -> IPv6Interface | None:
        if self.subnet6 is None or self.address6 is None:
            return None
        return IPv6Interface(f"{self.address6}/{self.subnet6.prefixlen}")


@dataclass(frozen=True)
class Interface:
    """A container's leg on a bridge: one veth pair."""

    bridge: str
    ifname: str
    address: IPv4Interface
    host_ifname: str
    mac: str | None = None
    loc: Loc = field(default=NOWHERE, compare=False)
    address6: IPv6Interface | None = None  # set exactly when the bridge has subnet6


@dataclass(frozen=True)
class Route:
    to: IPNetwork | None  # None is the default route (IPv6 when `via` is IPv6)
    via: IPAddress | None = None
    dev: str | None = None
    loc: Loc = field(default=NOWHERE, compare=False)

    @property
    def destination(self) -> str:
        return "default" if self.to is None else str(self.to)

    @property
    def ipv6(self) -> bool:
        return (self.to is not None and self.to.version == 6) or (
            self.via is not None and self.via.version == 6
        )


@dataclass(frozen=True)
class Port:
    """A published port: host (ip, port) forwarded to the container's port."""

    proto: Proto
    container_port: int
    host_port: int
    host_ip: IPv4Address | None = None  # None: every host address
    loc: Loc = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class Exposed:
    port: int
    proto: Proto


@dataclass(frozen=True)
class LinkRef:
    """Docker's --link NAME[:ALIAS]."""

    name: str
    alias: str | None = None
    loc: Loc = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class Dns:
    nameservers: tuple[IPAddress, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Container:
    name: str
    mode: Mode
    netns: str | None  # None for host mode; the shared namespace for container mode
    share: str | None = None  # container: mode, the container whose namespace is used
    pid: int | None = None
    interfaces: tuple[Interface, ...] = ()
    routes: tuple[Route, ...] = ()
    default_route: bool = True
    ports: tuple[Port, ...] = ()
    expose: tuple[Exposed, ...] = ()
    links: tuple[LinkRef, ...] = ()
    dns: Dns | None = None
    hosts: tuple[tuple[str, IPAddress], ...] = ()
    hostname: str | None = None
    loc: Loc = field(default=NOWHERE, compare=False)
    host: str | None = None  # the host it runs on (None: the spec has no hosts)

    @property
    def owns_netns(self) -> bool:
        """True when this container has a namespace of its own to build."""
        return self.mode in ("bridge", "none")

    @property
    def address(self) -> IPv4Address | None:
        """The container's primary address (first bridge interface)."""
        return self.interfaces[0].address.ip if self.interfaces else None

    @property
    def address6(self) -> IPv6Address | None:
        """The container's primary IPv6 address (first bridge interface, if dual-stack)."""
        if not self.interfaces or self.interfaces[0].address6 is None:
            return None
        return self.interfaces[0].address6.ip


@dataclass(frozen=True)
class Endpoint:
    container: str
    netns: str
    ifname: str
    address: IPInterface | None = None


@dataclass(frozen=True)
class Link:
    """A point-to-point veth pair between two containers."""

    a: Endpoint
    b: Endpoint
    loc: Loc = field(default=NOWHERE, compare=False)
    vni: int | None = None  # resolved when the spec has hosts
    hosts: tuple[str, str] | None = None  # the hosts of a and b (None: no hosts)

    @property
    def crosses(self) -> bool:
        """The ends run on different hosts: a VXLAN point-to-point pair, not a veth."""
        return self.hosts is not None and self.hosts[0] != self.hosts[1]


Expect = Literal["open", "blocked"]
Target = Literal["container", "outside", "address"]


@dataclass(frozen=True)
class Check:
    """A `checks:` entry: `src` reaches `dst` (or, expect blocked, does not).

    `dst` is as written; `kind` says what it names. `address` is set for `outside`
    and for an address; a container's address depends on where the probe starts
    from, so `check.py` picks it.
    """

    src: str
    dst: str
    kind: Target
    address: IPAddress | None = None
    port: int | None = None  # None: ping
    proto: Proto = "tcp"
    expect: Expect = "open"
    loc: Loc = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class Spec:
    name: str
    file: str
    sha256: str
    bridges: tuple[Bridge, ...] = ()
    containers: tuple[Container, ...] = ()
    links: tuple[Link, ...] = ()
    checks: tuple[Check, ...] = ()
    outside: IPAddress | None = None  # what `to: outside` checks probe
    hosts: tuple[Host, ...] = ()  # empty: one local host

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def bridge(self, name: str) -> Bridge:
        return next(b for b in self.bridges if b.name == name)

    def container(self, name: str) -> Container:
        return next(c for c in self.containers if c.name == name)
