"""Try a multi-host spec for real without touching the host: `netgen try` of a spec whose
`hosts:` has two or more entries.

Each host of the spec is simulated by a sandbox of its own (a
:class:`~netgen.sandbox.Fleet`), on an underlay switch, at the underlay address the
spec gives it (its interface named and sized as the spec says), so the VXLAN devices
netgen makes (`local <host address>`) and their flood entries are the real ones. In
each host, netgen itself runs as it would there: `netgen apply SPEC --host H`, `netgen
check SPEC --host H --json` (the probes that start on that host; those that cross
hosts go over the overlay), `netgen destroy SPEC --host H`; then each host must be as
apply found it. The hosts are driven concurrently, and reported in `hosts:` order.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv6Address
from pathlib import Path
from typing import IO, Any, TypeVar

from . import check, lower, render, spec
from . import model as m
from .errors import UsageError
from .sandbox import Closing, Fleet, FleetHost, Sandbox, SandboxUnavailable, mode
from .trial import (
    NETGEN,
    TIMEOUT,
    Log,
    StandIn,
    address_of,
    netns_of,
    refuse_unsandboxable,
    said,
    serve_in,
    services,
    shell_in,
    stand_ins,
    state_diff,
)
from .trialreport import FleetReport, Report, TrialError, results_from_json

T = TypeVar("T")
#: The smallest MTU an interface may have and still carry IPv6 (RFC 8200).
IPV6_MIN_MTU = 1280


def underlay(s: m.Spec) -> list[FleetHost]:
    """Where each host of the spec sits on the simulated underlay: its address, its
    interface (`dev`, else eth0) and MTU. UsageError (exit 2) for what a fleet of
    sandboxes cannot play."""
    taken = {b.name for b in s.bridges} | {u for b in s.bridges for u in b.uplinks}
    taken |= {leg.host_ifname for c in s.containers for leg in c.interfaces}
    out = []
    for h in s.hosts:
        dev = h.dev or "eth0"
        where = f"{h.loc}: host {h.name}"
        if h.address.is_link_local:
            raise UsageError(
                f"{where}: {h.address} is link-local; netgen try gives each simulated host "
                "its address on one shared underlay link, and cannot play a link-local "
                "underlay (its scope is one interface): try the spec with routable addresses"
            )
        if isinstance(h.address, IPv6Address) and h.mtu < IPV6_MIN_MTU:
            raise UsageError(
                f"{where}: mtu {h.mtu} is below {IPV6_MIN_MTU}, the least an interface "
                f"needs to carry IPv6, so its underlay {h.address} cannot be simulated"
            )
        if s.outside is not None and s.outside == h.address:
            raise UsageError(
                f"{where}: {h.address} is also the spec's outside address; netgen try "
                "plays the outside as a host behind each host, which cannot be a host too"
            )
        if dev == "lo" or dev in taken:
            what = "the loopback" if dev == "lo" else "also an interface the spec makes"
            raise UsageError(
                f"{where}: its underlay interface {dev} is {what}; netgen try makes {dev} "
                "as the host's underlay NIC: give `dev` another name"
            )
        out.append(FleetHost(h.name, str(h.address), dev, h.mtu))
    return out


def start_fleet(hosts: Sequence[FleetHost], log: Log | None = None) -> Fleet:
    """The simulated hosts, as root. SandboxUnavailable without root: devices move
    between sibling sandboxes, which an unprivileged user namespace cannot do."""
    if mode() != "root":
        raise SandboxUnavailable(
            "a multi-host spec needs root: each host is a sandbox of its own, and "
            "their underlay links are moved between them, which an unprivileged user "
            "namespace cannot do (try one host's part with `netgen apply --host` in a "
            "single sandbox, or run as root)"
        )
    fleet = Fleet.start_hosts(hosts)
    if log is not None:
        names = ", ".join(f"{h.name} {h.address}" for h in hosts)
        log(
            f"sandbox: {len(hosts)} hosts ({names}), each a private network + mount "
            "namespace (as root), on one underlay switch"
        )
    return fleet


class FleetTrial(Closing):
    """A multi-host spec applied in simulated hosts; use :meth:`start`, close when done.

    Containers are named as in the spec; `run`, `ping` and `connect` start from a
    container's namespace on its own host (``"host"`` needs `host=`: which one).
    """

    def __init__(
        self,
        s: m.Spec,
        path: Path,
        fleet: Fleet,
        *,
        dialect: str = "iproute2",
        firewall: str = "iptables",
        log: Log | None = None,
        verify_destroy: bool = True,
    ) -> None:
        self.spec = s
        self.path = path
        self.fleet = fleet
        self.dialect = dialect
        self.firewall = firewall
        self.hosts = [h.name for h in s.hosts]
        self.stand_ins: dict[str, list[StandIn]] = {h: [] for h in self.hosts}
        self._log = log
        self.verify_destroy = verify_destroy
        self._before: dict[str, dict[str, Any]] = {}  # each host's state before apply
        self._applied: set[str] = set()

    @classmethod
    def start(
        cls,
        path: str | os.PathLike[str],
        *,
        dialect: str = "iproute2",
        firewall: str = "iptables",
        log: Log | None = None,
        verify_destroy: bool = True,
    ) -> FleetTrial:
        """Load the spec and refuse what cannot be simulated (exit 2, before any
        sandbox), make the hosts and their stand-ins, apply each host's part. Whatever
        fails closes every host again. SandboxUnavailable when no fleet can be made."""
        p = Path(path)
        s = spec.load(p)
        if len(s.hosts) < 2:
            raise UsageError(f"spec {s.name!r} spans no hosts: try it with Trial")
        refuse_unsandboxable(s)
        wiring = underlay(s)
        for h in s.hosts:  # DialectError: exit 2
            render.render(
                s, lower.lower(s, h.name), dialect=dialect, firewall=firewall, host=h.name
            )
        fleet = start_fleet(wiring, log)
        trial = cls(
            s, p, fleet, dialect=dialect, firewall=firewall, log=log, verify_destroy=verify_destroy
        )
        try:
            trial._prepare()
            trial.apply()
        except BaseException:
            fleet.close()
            raise
        return trial

    def _say(self, text: str) -> None:
        if self._log is not None:
            self._log(text)

    def _prepare(self) -> None:
        for host in self.hosts:
            for stand_in in stand_ins(self.spec, host):
                self.fleet.host(host).sh(stand_in.script)
                self.stand_ins[host].append(stand_in)
                self._say(f"{host}: stand-in: {stand_in.what}")

    def _each(self, do: Callable[[str], T], hosts: Sequence[str] | None = None) -> dict[str, T]:
        """`do(host)` for every host (or those of `hosts`) at once; in `hosts:` order."""
        names = [h for h in self.hosts if hosts is None or h in hosts]
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            return dict(zip(names, pool.map(do, names), strict=True))

    # -- netgen itself, in each host ------------------------------------------------------

    def netgen(self, host: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `netgen ARGS --host HOST` in host HOST (same interpreter, same netgen)."""
        return self.fleet.run(host, [*NETGEN, *args, "--host", host], check=False, timeout=TIMEOUT)

    def _relay(self, host: str, res: subprocess.CompletedProcess[str]) -> None:
        for line in res.stderr.splitlines():
            self._say(f"{host}: {line.removeprefix('netgen: ')}")

    def _failed(self, what: str, done: dict[str, subprocess.CompletedProcess[str]]) -> None:
        """Relay what went well; TrialError naming each host where `what` failed."""
        bad = {h: res for h, res in done.items() if res.returncode != 0}
        for host, res in done.items():
            if host not in bad:
                self._relay(host, res)
        if bad:
            raise TrialError(
                "\n".join(
                    f"netgen {what} failed on host {h}: {said(res)}" for h, res in bad.items()
                )
            )

    def apply(self) -> None:
        """`netgen apply --host H` in every host; TrialError naming the hosts it failed on
        (each one rolls its own part back; close() removes the others')."""
        if not self._before:
            self._before = self._each(lambda h: self.fleet.host(h).state())
        args = ["apply", "--dialect", self.dialect, "--firewall", self.firewall, str(self.path)]
        done = self._each(lambda h: self.netgen(h, *args))
        self._applied |= {h for h, res in done.items() if res.returncode == 0}
        self._failed("apply", done)

    def check(self, *, implied: bool = True, timeout: float = check.TIMEOUT) -> FleetReport:
        """Each host's checks (implied ones too, unless told), probed on that host."""
        args = ["check", "--json", "--timeout", str(timeout), str(self.path)]
        args += [] if implied else ["--no-implied"]
        done = self._each(lambda h: self.netgen(h, *args))
        reports: dict[str, Report] = {}
        for host, res in done.items():
            if res.returncode not in (0, 1):
                raise TrialError(f"netgen check failed on host {host}: {said(res)}")
            try:
                data = json.loads(res.stdout)
            except ValueError as exc:
                raise TrialError(
                    f"netgen check printed no JSON on host {host}:\n{res.stderr.rstrip()}"
                ) from exc
            reports[host] = results_from_json(self.spec, data, implied=implied, host=host)
        return FleetReport(self.spec, reports)

    def destroy(self) -> None:
        """`netgen destroy --host H` in every host applied, then prove each host is as
        apply found it (see Trial.destroy)."""
        hosts, self._applied = [h for h in self.hosts if h in self._applied], set()
        if not hosts:
            return
        args = ["destroy", "--firewall", self.firewall, str(self.path)]
        done = self._each(lambda h: self.netgen(h, *args), hosts)
        self._failed("destroy", done)
        if not self.verify_destroy:
            return
        after = self._each(lambda h: self.fleet.host(h).state(), hosts)
        changed = [h for h in hosts if after[h] != self._before.get(h, after[h])]
        if changed:
            raise TrialError(
                "\n".join(
                    f"netgen destroy did not leave host {h} as apply found it:\n"
                    + state_diff(self._before[h], after[h])
                    for h in changed
                )
            )
        self._say(f"destroy left each host ({', '.join(hosts)}) as apply found it")

    def close(self) -> None:
        """Destroy (where applied), then close every host even if destroy failed."""
        try:
            self.destroy()
        finally:
            self.fleet.close()

    # -- looking around -------------------------------------------------------------------

    def host_of(self, name: str, host: str | None = None) -> str:
        """The host a container runs on; `host` for "host" (or a netns name)."""
        if name in {c.name for c in self.spec.containers}:
            found = self.spec.container(name).host
            assert found is not None  # a spec with 2+ hosts places every container
            return found
        if host is None:
            raise ValueError(f"{name!r} is on every host of spec {self.spec.name!r}: say which")
        self.fleet.host(host)  # KeyError naming the hosts
        return host

    def sandbox(self, host: str) -> Sandbox:
        return self.fleet.host(host)

    def run(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        host: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv in a container's namespace on its host ("host": host `host`'s own)."""
        sb, netns = self.sandbox(self.host_of(ns, host)), netns_of(self.spec, ns)
        if netns is None:
            return sb.run(argv, check=check, timeout=timeout)
        return sb.in_netns(netns, argv, check=check, timeout=timeout)

    def ping(self, src: str, dst: str, *, host: str | None = None, timeout_s: int = 2) -> bool:
        """Does `dst` (container, `outside` or address) answer a ping from `src`?"""
        sb = self.sandbox(self.host_of(src, host))
        return sb.ping(
            netns_of(self.spec, src), address_of(self.spec, dst, src), timeout_s=timeout_s
        )

    def connect(
        self,
        src: str,
        dst: str,
        port: int,
        proto: str = "tcp",
        *,
        host: str | None = None,
        timeout_s: float = 2,
    ) -> bool:
        """Does a tcp connect (a udp datagram and its reply) from `src` to dst:port work?"""
        sb = self.sandbox(self.host_of(src, host))
        address = address_of(self.spec, dst, src)
        return sb.connect(netns_of(self.spec, src), address, port, proto=proto, timeout_s=timeout_s)

    def serve(self) -> list[str]:
        """Listen, in each container on its own host, on the ports of
        :func:`~netgen.trial.services`. A port check from another host is skipped all the
        same: `netgen check` there cannot see this host's listeners."""
        on = {c.netns: c.host for c in self.spec.containers if c.netns is not None}
        wanted = services(self.spec)
        started = []
        for host in self.hosts:
            mine = {netns: ports for netns, ports in wanted.items() if on[netns] == host}
            started += serve_in(self.sandbox(host), mine, f" (host {host})")
        return started

    def sandbox_json(self) -> dict[str, Any]:
        """What `netgen try --json` adds to the checks: how the hosts were played."""
        return {
            "sandbox": "root",
            "stand_ins": {h: [s.what for s in self.stand_ins[h]] for h in self.hosts},
        }

    # -- interactive ----------------------------------------------------------------------

    def enter_commands(self) -> dict[str, str]:
        """Per host, the command that enters it from another terminal (root: see start)."""
        return {h: f"nsenter -t {self.sandbox(h).pid} -n -m" for h in self.hosts}

    def shell(self, stdin: IO[Any] | None = None) -> int:
        """An interactive bash in the first host; the others are one nsenter away."""
        first = self.hosts[0]
        env = {"NETGEN_SANDBOX": self.spec.name, "NETGEN_HOST": first}
        return shell_in(self.sandbox(first), f"{self.spec.name}, host {first}", env, stdin)
