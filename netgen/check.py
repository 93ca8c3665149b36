"""Prove the network: compile reachability checks from a spec and run them on the live host.

`compile()` is pure: the spec's declared `checks:` plus the checks a spec implies
(each container reaches its gateway; link peers reach each other; on an
`icc: false` bridge, containers without a link do not reach each other, and a
linked one reaches the target's exposed tcp ports; a published tcp port answers
on the host), each as a `Probe` that says where it starts, where it goes and
what must happen. A probe may depend on something only the live host knows (a
listener behind a port, an address being the host's own): it is then skipped,
with the reason, rather than failed, since netgen builds the network, not the
services.

`run()` runs probes concurrently, each bounded in time, through a `Prober`:
`LiveProber` pings and connects from inside the namespaces (`ip netns exec`,
argv only, never a shell), so a check sees exactly what the container sees.

What "open" means: ping got an echo reply; tcp connected; udp got a datagram
back. "blocked" passes on anything else (dropped, refused, unreachable): `got`
says which.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from . import model as m
from .lower import pick_host

NETNS_DIR = "/var/run/netns"
TIMEOUT = 1.0  # seconds a probe waits for an answer
JOBS = 32  # probes at once: a blocked check waits its whole timeout
MAX_PAIRS = 64  # icc=false bridges: beyond this many pairs, probe a ring instead

Kind = Literal["ping", "tcp", "udp"]
OPEN = ("reply", "open")  # what `got` says when the target answered


@dataclass(frozen=True)
class Listener:
    """Something must listen on `proto`/`port` in `netns` for the probe to mean anything."""

    netns: str | None
    container: str
    proto: m.Proto
    port: int


@dataclass(frozen=True)
class Probe:
    """One check, compiled: from `netns` (None: the host) to `address`, by `kind`."""

    src: str  # a container name, or "host"
    netns: str | None
    dst: str  # what the table shows: a container, "outside", "br0 (gateway)", an address
    address: m.IPAddress
    kind: Kind
    port: int | None = None
    expect: m.Expect = "open"
    origin: str = "declared"  # or the implied rule: gateway, link, icc, exposed, published
    listener: Listener | None = None
    local: bool = False  # the address must be one of the host's own (else: skipped)
    skip: str | None = None  # known not to be checkable, whatever the host
    loc: m.Loc = field(default=m.NOWHERE, compare=False)

    @property
    def what(self) -> str:
        return self.kind if self.port is None else f"{self.kind}/{self.port}"

    @property
    def why(self) -> str:
        if self.origin == "declared":
            return f"{self.loc.file}:{self.loc.line} {self.loc.path}"
        return f"implied: {IMPLIED[self.origin]}"


IMPLIED = {
    "gateway": "a container reaches its bridge",
    "link": "link peers reach each other",
    "icc": "icc: false, no link",
    "exposed": "link to an exposed port",
    "published": "published port",
}


# -- compiling: pure ------------------------------------------------------------------


def compile(spec: m.Spec, *, implied: bool = True, host: str | None = None) -> list[Probe]:
    """The spec's implied checks (if `implied`), then its declared ones.

    An implied check that a declared one repeats is left out: the declared one
    names its spec line. With `hosts:`, those that start on `host` (see
    lower.pick_host), the only ones this host can run.
    """
    declared = [_declared(spec, c) for c in spec.checks]
    out = declared
    if implied:
        seen = {_key(p) for p in declared}
        out = [p for p in _implied(spec) if _key(p) not in seen] + declared
    if not spec.hosts:
        return out
    here = pick_host(spec, host)
    return [_here(spec, p, here) for p in out if _start(spec, p) == here]


def _start(spec: m.Spec, p: Probe) -> str | None:
    """The host a probe starts on: its container's, or (from the host) its target's."""
    name = p.src if p.src != "host" else p.dst.partition(":")[0]
    return spec.container(name).host


def _here(spec: m.Spec, p: Probe, here: str | None) -> Probe:
    """A listener can only be started on this host: one elsewhere makes the probe a skip."""
    if p.listener is None:
        return p
    there = spec.container(p.listener.container).host
    if there == here:
        return p
    why = f"the listener would run in {p.listener.container}, on host {there}"
    return replace(p, listener=None, skip=why)


def _key(p: Probe) -> tuple[Any, ...]:
    return (p.netns, p.address, p.kind, p.port, p.expect)


def _netns_of(spec: m.Spec, name: str) -> str | None:
    """Where a container's probes start: its namespace (a shared one for container:),
    or the host's (None) for network: host."""
    return spec.container(name).netns


def _owner(spec: m.Spec, name: str) -> m.Container:
    """The container whose namespace (and so addresses) `name` uses."""
    c = spec.container(name)
    return spec.container(c.share) if c.share is not None else c


def address_of(spec: m.Spec, target: str, src: str) -> m.IPAddress:
    """The address of `target` that `src` would use: on a bridge both are on, else over a
    link between them, else the target's first address (bridge, then link)."""
    t, s = _owner(spec, target), _owner(spec, src)
    mine = {leg.bridge for leg in s.interfaces}
    for leg in t.interfaces:
        if leg.bridge in mine:
            return leg.address.ip
    for link in spec.links:
        for a, b in ((link.a, link.b), (link.b, link.a)):
            if a.container == s.name and b.container == t.name and b.address is not None:
                return b.address.ip
    if t.address is not None:
        return t.address
    for link in spec.links:
        for ep in (link.a, link.b):
            if ep.container == t.name and ep.address is not None:
                return ep.address.ip
    raise ValueError(f"container {target} has no address (the validator rejects this)")


def _declared(spec: m.Spec, c: m.Check) -> Probe:
    if c.kind == "container":
        address = address_of(spec, c.dst, c.src)
    else:
        assert c.address is not None
        address = c.address
    kind: Kind = "ping" if c.port is None else c.proto
    return Probe(c.src, _netns_of(spec, c.src), c.dst, address, kind, c.port, c.expect, loc=c.loc)


def _implied(spec: m.Spec) -> list[Probe]:
    return [*_gateways(spec), *_links(spec), *_isolation(spec), *_published(spec)]


def _gateways(spec: m.Spec) -> Iterable[Probe]:
    for c in spec.containers:
        if not c.owns_netns:
            continue
        for leg in c.interfaces:
            bridge = spec.bridge(leg.bridge).on(c.host)
            dst = f"{bridge.name} gateway"
            yield Probe(c.name, c.netns, dst, bridge.address, "ping", origin="gateway", loc=leg.loc)
            if leg.address6 is not None and bridge.address6 is not None:
                yield Probe(
                    c.name, c.netns, dst, bridge.address6, "ping", origin="gateway", loc=leg.loc
                )


def _links(spec: m.Spec) -> Iterable[Probe]:
    """Both ways, when the addresses let each end route to the other (as lowering wires it:
    a /32 end gets a route to its peer; otherwise the peer must be in the end's network)."""
    for link in spec.links:
        a, b = link.a.address, link.b.address
        if a is None or b is None:
            continue
        if _routes_to(a, b.ip) and _routes_to(b, a.ip):
            for src, dst, address in ((link.a, link.b, b.ip), (link.b, link.a, a.ip)):
                yield Probe(
                    src.container,
                    src.netns,
                    dst.container,
                    address,
                    "ping",
                    origin="link",
                    loc=link.loc,
                )


def _routes_to(end: m.IPInterface, other: m.IPAddress) -> bool:
    return end.network.prefixlen == end.max_prefixlen or other in end.network


def _isolation(spec: m.Spec) -> Iterable[Probe]:
    """On an icc=false bridge: unlinked pairs are blocked (ping, one way per pair); a
    container that links another reaches the target's exposed tcp ports there."""
    for bridge in spec.bridges:
        if bridge.icc:
            continue
        members = [
            (c, leg) for c in spec.containers for leg in c.interfaces if leg.bridge == bridge.name
        ]
        links = {(c.name, ref.name) for c in spec.containers for ref in c.links}
        pairs = [
            (x, y)
            for i, x in enumerate(members)
            for y in members[i + 1 :]
            if (x[0].name, y[0].name) not in links and (y[0].name, x[0].name) not in links
        ]
        if len(pairs) > MAX_PAIRS:  # every container still probed, both as source and target
            pairs = _ring(members, links)
        for (x, _), (y, yleg) in pairs:
            yield Probe(
                x.name,
                x.netns,
                y.name,
                yleg.address.ip,
                "ping",
                expect="blocked",
                origin="icc",
                loc=bridge.loc,
            )
        for c, _ in members:
            for ref in c.links:
                target = spec.container(ref.name)
                for tleg in (leg for leg in target.interfaces if leg.bridge == bridge.name):
                    for e in target.expose:
                        probe = Probe(
                            c.name,
                            c.netns,
                            target.name,
                            tleg.address.ip,
                            e.proto,
                            e.port,
                            origin="exposed",
                            loc=ref.loc,
                        )
                        yield _needs_listener(probe, target, e.proto, e.port)


Member = tuple[m.Container, m.Interface]


def _ring(members: list[Member], links: set[tuple[str, str]]) -> list[tuple[Member, Member]]:
    """Each member with the next one it has no link with, in declaration order."""
    out = []
    n = len(members)
    for i, x in enumerate(members):
        for k in range(1, n):
            y = members[(i + k) % n]
            if (x[0].name, y[0].name) not in links and (y[0].name, x[0].name) not in links:
                out.append((x, y))
                break
    return out


def _published(spec: m.Spec) -> Iterable[Probe]:
    """From the host, to the host address the port is published on (HOST_IP, else the
    bridge's address, one of the host's own): it must reach the container's port."""
    for c in spec.containers:
        if not c.interfaces:
            continue
        bridge = spec.bridge(c.interfaces[0].bridge).on(c.host)
        for p in c.ports:
            address = p.host_ip if p.host_ip is not None else bridge.address
            probe = Probe(
                "host",
                None,
                f"{c.name}:{p.container_port} via host",
                address,
                p.proto,
                p.host_port,
                origin="published",
                local=True,
                loc=p.loc,
            )
            yield _needs_listener(probe, c, p.proto, p.container_port)


def _needs_listener(probe: Probe, target: m.Container, proto: m.Proto, port: int) -> Probe:
    if proto == "udp":
        why = "udp: a silent service cannot be told from a blocked one"
        return replace(probe, skip=why)
    return replace(probe, listener=Listener(target.netns, target.name, proto, port))


# -- running: the live host -----------------------------------------------------------


@dataclass(frozen=True)
class Result:
    probe: Probe
    got: str  # reply, no reply, open, refused, timeout, unreachable; or why it was skipped
    ok: bool | None  # None: skipped

    @property
    def status(self) -> str:
        return "skipped" if self.ok is None else ("ok" if self.ok else "FAIL")


class Prober(Protocol):
    """What running checks needs from the host (a fake one in unit tests)."""

    def netns_exists(self, name: str) -> bool: ...

    def is_local(self, address: m.IPAddress) -> bool: ...

    def listening(self, netns: str | None, proto: m.Proto, port: int) -> bool: ...

    def ping(self, netns: str | None, address: m.IPAddress, timeout: float) -> str: ...

    def connect(
        self, netns: str | None, address: m.IPAddress, port: int, proto: m.Proto, timeout: float
    ) -> str: ...


def run(
    probes: Sequence[Probe],
    *,
    prober: Prober | None = None,
    timeout: float = TIMEOUT,
    jobs: int = JOBS,
) -> list[Result]:
    """Every probe's result, in the probes' order; at most `jobs` run at once."""
    live = prober if prober is not None else LiveProber()
    if not probes:
        return []

    def one(probe: Probe) -> Result:
        return run_one(probe, live, timeout)

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(probes)))) as pool:
        return list(pool.map(one, probes))


def run_one(probe: Probe, prober: Prober, timeout: float = TIMEOUT) -> Result:
    """Skip what cannot mean anything here before sending a packet; then probe."""
    if probe.skip is not None:
        return Result(probe, probe.skip, None)
    for netns in (probe.netns, probe.listener.netns if probe.listener else None):
        if netns is not None and not prober.netns_exists(netns):
            return Result(probe, f"no netns {netns} (not applied?)", False)
    if probe.local and not prober.is_local(probe.address):
        return Result(probe, f"{probe.address} is not an address of this host", None)
    lis = probe.listener
    if lis is not None and not prober.listening(lis.netns, lis.proto, lis.port):
        return Result(probe, f"nothing listens on {lis.proto}/{lis.port} in {lis.container}", None)
    if probe.kind == "ping":
        got = prober.ping(probe.netns, probe.address, timeout)
    else:
        assert probe.port is not None
        got = prober.connect(probe.netns, probe.address, probe.port, probe.kind, timeout)
    return Result(probe, got, (got in OPEN) == (probe.expect == "open"))


# The probe that runs inside a namespace: prints what happened, one word or two.
_CONNECT = """
import errno, socket, sys
host, port, proto, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
family = socket.AF_INET6 if ":" in host else socket.AF_INET
try:
    with socket.socket(family, kind) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        if kind == socket.SOCK_DGRAM:
            s.send(b"netgen-check\\n")
            s.recv(65535)
            print("reply")
        else:
            print("open")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("no reply" if kind == socket.SOCK_DGRAM else "timeout")
except OSError as exc:
    unreachable = exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
    print("unreachable" if unreachable else f"error: {exc.strerror}")
"""


class LiveProber:
    """Probes from inside named namespaces with `ip netns exec`; the host's own without."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python

    def netns_exists(self, name: str) -> bool:
        return os.path.exists(f"{NETNS_DIR}/{name}")

    def is_local(self, address: m.IPAddress) -> bool:
        """The host's routing decision for `address` (a query: nothing is sent). Binding
        would not do: with ip_nonlocal_bind set it succeeds for any address."""
        res = _run(["ip", "-j", "route", "get", str(address)], 10)
        if res is None or res.returncode != 0:
            return False
        try:
            routes = json.loads(res.stdout)
        except ValueError:
            return False
        return bool(routes) and routes[0].get("type") == "local"

    def listening(self, netns: str | None, proto: m.Proto, port: int) -> bool:
        flag = "-t" if proto == "tcp" else "-u"
        argv = _in(netns, "ss", "-H", "-l", "-n", flag, "sport", "=", f":{port}")
        res = _run(argv, 10)
        return res is not None and res.returncode == 0 and bool(res.stdout.strip())

    def ping(self, netns: str | None, address: m.IPAddress, timeout: float) -> str:
        wait = str(max(1, math.ceil(timeout)))
        family = ("-6",) if address.version == 6 else ()
        argv = _in(netns, "ping", *family, "-n", "-q", "-c", "1", "-W", wait, str(address))
        res = _run(argv, timeout)
        if res is None:
            return "no reply"
        if res.returncode == 0:
            return "reply"
        if res.returncode == 1:
            return "no reply"
        text = (res.stderr or res.stdout).strip()
        if "unreachable" in text.lower():
            return "unreachable"
        return f"error: {text.splitlines()[-1] if text else f'ping exit code {res.returncode}'}"

    def connect(
        self, netns: str | None, address: m.IPAddress, port: int, proto: m.Proto, timeout: float
    ) -> str:
        argv = _in(netns, self.python, "-I", "-c", _CONNECT, str(address), str(port), proto)
        res = _run([*argv, str(timeout)], timeout)
        if res is None:
            return "timeout" if proto == "tcp" else "no reply"
        out = res.stdout.strip()
        if res.returncode != 0 or not out:
            text = (res.stderr or "").strip().splitlines()
            return f"error: {text[-1] if text else f'exit code {res.returncode}'}"
        return out


def _in(netns: str | None, *argv: str) -> list[str]:
    return list(argv) if netns is None else ["ip", "netns", "exec", netns, *argv]


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str] | None:
    """None when it outlived its bound (the probe's timeout plus time to start Python)."""
    try:
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout + 10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    except OSError as exc:
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: {exc.strerror}")


# -- reporting ------------------------------------------------------------------------

COLUMNS = ("FROM", "TO", "WHAT", "EXPECT", "GOT", "OK", "WHY")


def table(results: Sequence[Result]) -> str:
    """One row per check, aligned; `to` shows the address probed."""
    rows = [COLUMNS] + [
        (
            r.probe.src,
            _to(r.probe),
            r.probe.what,
            r.probe.expect,
            r.got,
            r.status,
            r.probe.why,
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def _to(probe: Probe) -> str:
    address = str(probe.address)
    return address if probe.dst == address else f"{probe.dst} ({address})"


def summary(results: Sequence[Result]) -> str:
    failed = sum(1 for r in results if r.ok is False)
    skipped = sum(1 for r in results if r.ok is None)
    passed = len(results) - failed - skipped
    n = len(results)
    text = f"{n} check{'' if n == 1 else 's'}: {passed} passed, {failed} failed"
    return text + (f", {skipped} skipped" if skipped else "")


def to_json(spec: m.Spec, results: Sequence[Result]) -> dict[str, Any]:
    return {
        "spec": spec.name,
        "ok": all(r.ok is not False for r in results),
        "summary": summary(results),
        "checks": [
            {
                "from": r.probe.src,
                "netns": r.probe.netns,
                "to": r.probe.dst,
                "address": str(r.probe.address),
                "what": r.probe.what,
                "kind": r.probe.kind,
                "port": r.probe.port,
                "expect": r.probe.expect,
                "got": r.got,
                "ok": r.ok,
                "status": r.status,
                "origin": r.probe.origin,
                "why": r.probe.why,
            }
            for r in results
        ],
    }


def failed(results: Iterable[Result]) -> bool:
    return any(r.ok is False for r in results)
