"""The spec format's keys, types and patterns, declared once.

`spec.py` takes its key lists and name patterns from here and `schema.py` turns
the same tables into JSON Schema, so a key added to a table is known to the
validator (which rejects unknown keys) and to editors at once. What a table
cannot say (references, overlaps, address allocation) stays in `spec.py`.

The patterns are written in the common subset of Python `re` and ECMAScript
regular expressions (JSON Schema's dialect): character classes, groups,
bounded repeats and lookahead; no `\\d`, named groups or inline flags, except
in PORT and EXPOSE, which `schema.py` does not export as they are (see
`PORT_STRICT`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

# -- patterns the validator matches (with fullmatch) --------------------------

NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
IFNAME = r"[A-Za-z0-9_.-]{1,15}"
HOSTNAME = (
    r"(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)
DNS_OPTION = r"[A-Za-z0-9_.:-]{1,64}"
MAC = r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}"
# syntax only: the validator then checks the numbers, the protocol and the IP in code
PORT = r"(?:(?P<ip>[^:/]+):(?P<hp>\d*):|(?P<hp2>\d+):)?(?P<cp>\d+)(?:/(?P<proto>[A-Za-z]+))?"
EXPOSE = r"(?P<cp>\d+)(?:/(?P<proto>[A-Za-z]+))?"

VAR = r"[A-Za-z_][A-Za-z0-9_]{0,127}"  # an Ansible variable name

NAME_RE = re.compile(NAME)
VAR_RE = re.compile(VAR)
IFNAME_RE = re.compile(IFNAME)
HOSTNAME_RE = re.compile(HOSTNAME)
DNS_OPTION_RE = re.compile(DNS_OPTION)
MAC_RE = re.compile(MAC)
PORT_RE = re.compile(PORT)
EXPOSE_RE = re.compile(EXPOSE)

NOT_IFNAMES = (".", "..")  # match IFNAME, yet the kernel refuses them

# -- patterns for what the validator checks in code (ipaddress, int ranges) ----
# Only the schema uses these; they say in a regex what the code decides, so an
# editor flags the same values netgen rejects.

OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV4 = rf"{OCTET}(?:\.{OCTET}){{3}}"
PREFIX = rf"(?:0*(?:3[0-2]|[12]?[0-9])|{IPV4})"  # a length, or a netmask (loosely)
CIDR = rf"{IPV4}/{PREFIX}"
IPV6 = rf"(?:[0-9A-Fa-f]{{0,4}}:){{2,7}}(?:[0-9A-Fa-f]{{0,4}}|{IPV4})(?:%[^%]+)?"  # loosely
IPV6_PLAIN = r"(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}"  # loosely; no zone, no dotted tail
PREFIX6 = r"0*(?:12[0-8]|1[01][0-9]|[1-9]?[0-9])"
CIDR6 = rf"{IPV6_PLAIN}/{PREFIX6}"
PORT_NUMBER = (
    r"0*(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
)
PROTO = r"(?:/(?:[Tt][Cc][Pp]|[Uu][Dd][Pp]))?"
PORT_STRICT = rf"(?:{IPV4}:(?:{PORT_NUMBER})?:|{PORT_NUMBER}:)?{PORT_NUMBER}{PROTO}"
EXPOSE_STRICT = rf"{PORT_NUMBER}{PROTO}"
MAC_UNICAST = r"[0-9A-Fa-f][02468ACEace](:[0-9A-Fa-f]{2}){5}"  # the first octet's low bit clear
NOT_DOT_IFNAME = r"(?!\.\.?$)" + IFNAME

# -- types ------------------------------------------------------------------


@dataclass(frozen=True)
class Str:
    """A string matching `pattern` in full (a pattern above, or None for any string)."""

    pattern: str | None = None
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Int:
    lo: int
    hi: int


@dataclass(frozen=True)
class Bool:
    pass


@dataclass(frozen=True)
class Const:
    value: int


@dataclass(frozen=True)
class Data:
    """Any YAML value (scalar, list or mapping), passed through as it is."""


@dataclass(frozen=True)
class Enum:
    values: tuple[str, ...]


@dataclass(frozen=True)
class Seq:
    item: Type
    length: int | None = None  # an exact length, for pairs


@dataclass(frozen=True)
class Map:
    """A mapping from user-chosen keys (names) to values."""

    key: Str
    value: Type


@dataclass(frozen=True)
class Either:
    options: tuple[Type, ...]


@dataclass(frozen=True)
class Named:
    """A type worth a name: one definition in the schema, documented once."""

    name: str
    type: Type
    doc: str
    examples: tuple[str | int, ...] = ()


@dataclass(frozen=True)
class Key:
    name: str
    type: Type
    doc: str
    required: bool = False
    default: bool | int | str | None = None


@dataclass(frozen=True)
class Table:
    """One mapping of the spec: its keys (in the order messages list them) and rules."""

    name: str
    doc: str
    keys: tuple[Key, ...]
    need_one_of: tuple[str, ...] = ()  # at least one of these keys
    conflicts: tuple[tuple[str, str], ...] = ()  # never both keys of a pair

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys)


Type: TypeAlias = Str | Int | Bool | Const | Data | Enum | Seq | Map | Either | Named | Table

# -- named types --------------------------------------------------------------

NAME_T = Named(
    "name",
    Str(NAME),
    "A spec, container or namespace name: up to 64 characters of A-Z a-z 0-9 _ . -, "
    "starting with a letter or digit.",
    ("web", "db-1"),
)
IFNAME_T = Named(
    "ifname",
    Str(IFNAME, exclude=NOT_IFNAMES),
    "An interface name (also a bridge name): 1 to 15 characters of A-Z a-z 0-9 _ . -, not . or ..",
    ("eth0", "br0"),
)
HOSTNAME_T = Named("hostname", Str(HOSTNAME), "A DNS host name.", ("db.example.test",))
IPV4_T = Named("ipv4", Str(IPV4), "An IPv4 address.", ("10.0.0.1",))
IP_T = Named(
    "ip", Either((IPV4_T, Str(IPV6))), "An IPv4 or IPv6 address.", ("10.0.0.53", "2001:db8::53")
)
CIDR_T = Named(
    "cidr",
    Str(CIDR),
    "An IPv4 network in CIDR notation, without host bits.",
    ("10.0.0.0/24",),
)
IPV6_T = Named("ipv6", Str(IPV6_PLAIN), "An IPv6 address.", ("fd00:20::1",))
CIDR6_T = Named(
    "cidr6",
    Str(CIDR6),
    "An IPv6 network in CIDR notation, without host bits.",
    ("fd00:20::/64",),
)
IFACE_ADDRESS6_T = Named(
    "iface_address6",
    Str(rf"{IPV6_PLAIN}(?:/{PREFIX6})?"),
    "An IPv6 address, or address/prefix with the bridge's subnet6 prefix.",
    ("fd00:20::10", "fd00:20::10/64"),
)
IFACE_ADDRESS_T = Named(
    "iface_address",
    Str(rf"{IPV4}(?:/{PREFIX})?"),
    "An IPv4 address, or address/prefix with the bridge's prefix.",
    ("10.0.0.10", "10.0.0.10/24"),
)
MAC_T = Named(
    "mac",
    Str(MAC_UNICAST),
    "A unicast MAC address (the first octet even).",
    ("02:42:ac:11:00:02",),
)
PORT_T = Named(
    "port",
    Either((Int(1, 65535), Str(PORT_STRICT))),
    "A published port, Docker's -p syntax: CONTAINER_PORT, HOST_PORT:CONTAINER_PORT, "
    "HOST_IP:HOST_PORT:CONTAINER_PORT or HOST_IP::CONTAINER_PORT, optionally /tcp or /udp. "
    "Quote it: YAML 1.1 reads an unquoted 8022:22 (a container port below 60) as the "
    "number 481342.",
    ("8080:80", "127.0.0.1:8053:53/udp", 80),
)
EXPOSE_T = Named(
    "expose",
    Either((Int(1, 65535), Str(EXPOSE_STRICT))),
    "A port this container serves to linked containers: PORT or PORT/tcp|udp.",
    (5432, "53/udp"),
)
VNI_T = Named(
    "vni",
    Int(1, 16777215),
    "A VXLAN network identifier, 1 to 16777215.",
    (100,),
)
NETWORK_T = Named(
    "network",
    Either((Enum(("none", "host")), Str("container:" + NAME), IFNAME_T)),
    "A bridge name, none (only lo), host (the host's network: nothing to build) or "
    "container:NAME (share that container's namespace).",
    ("br0", "none", "host", "container:web"),
)

# -- the tables ---------------------------------------------------------------

BRIDGE = Table(
    "bridge",
    "A Linux bridge; its address is the gateway of its containers.",
    (
        Key("subnet", CIDR_T, "The bridge's network.", required=True),
        Key("address", IPV4_T, "The bridge's address; default: the first host address."),
        Key("subnet6", CIDR6_T, "The bridge's IPv6 network: the bridge is dual-stack."),
        Key(
            "address6",
            IPV6_T,
            "The bridge's IPv6 address (the containers' IPv6 gateway); default: the first "
            "host address of subnet6.",
        ),
        Key("mtu", Int(68, 65535), "MTU of the bridge and of every veth on it."),
        Key(
            "external",
            Bool(),
            "The bridge already exists (e.g. docker0): attach to it, never create, address "
            "or delete it.",
            default=False,
        ),
        Key(
            "masquerade",
            Bool(),
            "NAT traffic from the subnet leaving by another interface, and enable IP forwarding.",
            default=False,
        ),
        Key(
            "masquerade6",
            Bool(),
            "NAT traffic from subnet6 leaving by another interface, and enable IPv6 forwarding.",
            default=False,
        ),
        Key(
            "dad",
            Bool(),
            "IPv6 duplicate address detection on the static addresses netgen gives (apply waits "
            "for it to finish); default: off (nodad), as Docker does, since netgen already "
            "checked that they are unique.",
            default=False,
        ),
        Key(
            "icc",
            Bool(),
            "Containers on this bridge may reach each other (Docker's --icc).",
            default=True,
        ),
        Key(
            "uplinks",
            Seq(IFNAME_T),
            "Existing host interfaces (a NIC) to enslave to the bridge; released, never "
            "deleted, on destroy.",
        ),
        Key("mcast_snooping", Bool(), "Multicast snooping on the bridge; default: the kernel's."),
        Key(
            "vni",
            VNI_T,
            "VXLAN network identifier of the overlay joining the bridge's hosts; default: "
            "derived from the spec and bridge names. Unused while the bridge spans one host.",
        ),
        Key(
            "vxlan_port",
            Int(1, 65535),
            "UDP port of the bridge's VXLAN overlay between hosts.",
            default=4789,
        ),
    ),
)

SHORT_IF_KEYS = ("address", "address6", "ifname", "host_ifname", "mac")

INTERFACE = Table(
    "interface",
    "A container's leg on a bridge: one veth pair.",
    (
        Key("bridge", IFNAME_T, "The bridge this leg is on.", required=True),
        Key("ifname", IFNAME_T, "Name inside the namespace; default eth0, eth1, ... in order."),
        Key("address", IFACE_ADDRESS_T, "Address; default: the next free one in the subnet."),
        Key(
            "address6",
            IFACE_ADDRESS6_T,
            "IPv6 address (the bridge needs subnet6); default: the next free one in subnet6.",
        ),
        Key("host_ifname", IFNAME_T, "Host end of the veth; default: derived, unique."),
        Key("mac", MAC_T, "MAC of the inside end; default: the kernel's."),
    ),
)

ROUTE = Table(
    "route",
    "An extra route inside the namespace.",
    (
        Key(
            "to",
            Either((Enum(("default",)), CIDR_T, CIDR6_T)),
            "Destination: an IPv4 or IPv6 CIDR, or default (IPv6 when via is IPv6).",
            True,
        ),
        Key("via", Either((IPV4_T, IPV6_T)), "Gateway (IPv4 or IPv6, the family of `to`)."),
        Key("dev", IFNAME_T, "Interface (in the namespace)."),
    ),
    need_one_of=("via", "dev"),
)

DNS = Table(
    "dns",
    "resolv.conf of the namespace (/etc/netns/NETNS/resolv.conf).",
    (
        Key("nameservers", Seq(IP_T), "Name servers."),
        Key("search", Seq(HOSTNAME_T), "Search domains."),
        Key("options", Seq(Str(DNS_OPTION)), "resolv.conf options, like ndots:2."),
    ),
)

CONTAINER = Table(
    "container",
    "A network namespace, wired as `docker run --net=...` would.",
    (
        Key("network", NETWORK_T, "The network mode; default: the only bridge, if one exists."),
        Key(
            "host",
            NAME_T,
            "The host (of `hosts:`) it runs on; required with 2 or more hosts, except for "
            "network: container:NAME (that container's host).",
        ),
        Key("netns", NAME_T, "Namespace name under /var/run/netns; default: the container name."),
        Key("pid", Int(1, 2**22), "Adopt the namespace of this running process."),
        Key("address", IFACE_ADDRESS_T, "Address of eth0; default: the next free one."),
        Key(
            "address6",
            IFACE_ADDRESS6_T,
            "IPv6 address of eth0 (the bridge needs subnet6); default: the next free one.",
        ),
        Key("ifname", IFNAME_T, "Interface name inside the namespace.", default="eth0"),
        Key("host_ifname", IFNAME_T, "Host end of the veth; default: derived, unique."),
        Key("mac", MAC_T, "MAC of the inside end; default: the kernel's."),
        Key("interfaces", Seq(INTERFACE), "Long form for several bridges."),
        Key("routes", Seq(ROUTE), "Extra routes inside the namespace."),
        Key(
            "default_route",
            Bool(),
            "Add `default via <bridge address>` on the first bridge interface.",
            default=True,
        ),
        Key("ports", Seq(PORT_T), "Published ports (Docker's -p)."),
        Key("expose", Seq(EXPOSE_T), "Ports served to linked containers."),
        Key(
            "link",
            Seq(
                Named(
                    "link_ref",
                    Str(rf"{NAME}(?::(?:{HOSTNAME})?)?"),
                    "Docker's --link: NAME or NAME:ALIAS.",
                    ("db", "db:database"),
                )
            ),
            "Docker's --link: hosts entries, and reachability on an icc: false bridge.",
        ),
        Key("dns", DNS, "Name resolution inside the namespace."),
        Key(
            "hosts",
            Map(Str(HOSTNAME), IP_T),
            "Extra /etc/hosts entries: host name -> IP.",
        ),
        Key("hostname", HOSTNAME_T, "The namespace's host name (/etc/netns/NETNS/hostname)."),
    ),
    conflicts=tuple(("interfaces", k) for k in SHORT_IF_KEYS),
)

LINK = Table(
    "link",
    "A point-to-point veth pair between two containers, no bridge.",
    (
        Key(
            "endpoints",
            Seq(
                Named(
                    "endpoint",
                    Str(rf"{NAME}:{NOT_DOT_IFNAME}"),
                    "CONTAINER:IFNAME, one end of a link.",
                    ("a:eth1",),
                ),
                length=2,
            ),
            "The two ends.",
            required=True,
        ),
        Key(
            "addresses",
            Seq(Either((Str(rf"{IPV4}/{PREFIX}"), Str(CIDR6))), length=2),
            "One address/prefix per endpoint, both IPv4 (like 10.1.1.1/32) or both IPv6 "
            "(like fd00:1::1/128).",
        ),
        Key(
            "vni",
            VNI_T,
            "VXLAN network identifier when the ends run on different hosts; default: derived "
            "from the spec name and the endpoints. Unused while both ends share a host.",
        ),
    ),
)

HOST = Table(
    "host",
    "A machine the spec spans: containers say `host: NAME` to run there.",
    (
        Key(
            "address",
            IP_T,
            "Underlay address (IPv4 or IPv6): the VXLAN tunnels' end on this host, and the SSH "
            "target unless vars gives ansible_host.",
            required=True,
        ),
        Key("dev", IFNAME_T, "Underlay interface the VXLAN devices use; default: the route's."),
        Key(
            "mtu",
            Int(68, 65535),
            "MTU of the underlay; the overlay gets this minus 50 (IPv4) or 70 (IPv6).",
            default=1500,
        ),
        Key(
            "vars",
            Map(Str(VAR), Data()),
            "Variables copied into the Ansible inventory for this host (like ansible_user).",
        ),
    ),
)

CHECK_PORT_T = Named(
    "check_port",
    Either((Int(1, 65535), Str(EXPOSE_STRICT))),
    "The port to probe, PORT or PORT/tcp|udp (tcp when not said); without one, a ping.",
    ("5432/tcp", "53/udp", 80),
)

CHECK = Table(
    "check",
    "A reachability claim `netgen check` tests on the live host: FROM reaches TO, or not.",
    (
        Key("from", NAME_T, "The container the probe starts in.", required=True),
        Key(
            "to",
            Named(
                "check_target",
                Either((NAME_T, IP_T)),
                "A container (its address on a bridge or link it shares with FROM), outside "
                "(the top-level `outside` address) or an IP address.",
                ("db", "outside", "198.51.100.7"),
            ),
            "What the probe goes to.",
            required=True,
        ),
        Key("port", CHECK_PORT_T, "Connect to this port (tcp or udp); without it: ping."),
        Key(
            "expect",
            Enum(("open", "blocked")),
            "open: it answers; blocked: it does not.",
            default="open",
        ),
    ),
)

TOP = Table(
    "spec",
    "A netgen spec: the container network to build.",
    (
        Key("version", Const(1), "The spec format version: 1.", required=True),
        Key("name", NAME_T, "The spec's name; default: the file's stem. Marks what netgen owns."),
        Key(
            "hosts",
            Map(Str(NAME), HOST),
            "The machines the spec spans, by name; without it, the local host only.",
        ),
        Key("bridges", Map(Str(IFNAME, exclude=NOT_IFNAMES), BRIDGE), "Linux bridges, by name."),
        Key("containers", Map(Str(NAME), CONTAINER), "Network namespaces, by name."),
        Key("links", Seq(LINK), "Point-to-point veth pairs between two containers."),
        Key(
            "outside",
            IP_T,
            "The address `to: outside` checks probe: a host beyond every bridge. Never guessed: "
            "a probe sends real traffic to it.",
        ),
        Key("checks", Seq(CHECK), "Reachability claims that `netgen check` tests."),
    ),
)

TOP_KEYS = TOP.names
BRIDGE_KEYS = BRIDGE.names
CONTAINER_KEYS = CONTAINER.names
INTERFACE_KEYS = INTERFACE.names
ROUTE_KEYS = ROUTE.names
LINK_KEYS = LINK.names
DNS_KEYS = DNS.names
CHECK_KEYS = CHECK.names
HOST_KEYS = HOST.names
