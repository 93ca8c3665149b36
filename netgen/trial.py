"""Try a spec for real without touching the host: `netgen try` and the pytest plugin.

A trial builds the spec inside a throw-away :class:`~netgen.sandbox.Sandbox` by running
netgen itself in there (`netgen apply`, `netgen check --json`, `netgen destroy`), so
what is tried is exactly what a user runs, and every change lands in the sandbox's
private network and mount namespaces. What a spec expects to find already on a host
(uplink NICs, external bridges, the `outside` host of its checks) is played by
stand-ins made inside the sandbox first. Closing a trial destroys the network, proves
destroy left the sandbox as apply found it, and closes the sandbox.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import check, lower, render, spec
from . import model as m
from .errors import UsageError
from .sandbox import Closing, Sandbox, mode
from .trialreport import Report as Report  # re-exported: the plugin's users import it here
from .trialreport import TrialError as TrialError
from .trialreport import results_from_json as results_from_json

NETGEN = [sys.executable, "-m", "netgen"]
#: The sandbox's end of the link to the `outside` stand-in (link-local: it routes nowhere).
ROUTER = ipaddress.IPv4Address("169.254.253.1")
ROUTER6 = ipaddress.IPv6Address("fe80::253:1")
#: How long one netgen command inside the sandbox may take.
TIMEOUT = 300

Log = Callable[[str], None]


@dataclass(frozen=True)
class StandIn:
    """Something a spec expects on the host, played inside the sandbox."""

    what: str  # for people: "uplink em1 (of bridge br0): one end of a veth pair"
    script: str  # bash, every value quoted


def stand_ins(s: m.Spec, host: str | None = None) -> list[StandIn]:
    """What a real host would have and a fresh sandbox has not: external bridges (with
    their gateway address, up, as Docker's docker0 is), uplink NICs (a veth end, up), and
    the `outside` host of `to: outside` checks (a namespace routed by the sandbox).

    With `host` (a spec with hosts): what that host would have; the bridges it builds
    part of, and the outside, which every host reaches on its own."""
    taken = _names(s)

    def fresh(base: str) -> str:
        name, i = base, 0
        while name in taken:
            i += 1
            name = f"{base}{i}"
        taken.add(name)
        return name

    out: list[StandIn] = []
    for b in s.bridges:
        if host is not None and host not in b.hosts:
            continue
        b = b.on(host)
        q = shlex.quote(b.name)
        if b.external:
            out.append(
                StandIn(
                    f"external bridge {b.name}: a bridge with {b.gateway}, up",
                    f"ip link add name {q} type bridge\n"
                    f"ip addr add {b.gateway} dev {q}\n"
                    f"ip link set dev {q} up\n",
                )
            )
        for up in b.uplinks:
            peer = shlex.quote(fresh("ngtry-peer"))
            u = shlex.quote(up)
            out.append(
                StandIn(
                    f"uplink {up} (of bridge {b.name}): one end of a veth pair, up",
                    f"ip link add name {u} type veth peer name {peer}\n"
                    f"ip link set dev {u} up\nip link set dev {peer} up\n",
                )
            )
    if s.outside is not None:
        ns, dev = shlex.quote(fresh("ngtry-outside")), shlex.quote(fresh("ngtry-out"))
        v6 = s.outside.version == 6
        router, host = (ROUTER6, f"{s.outside}/128") if v6 else (ROUTER, f"{s.outside}/32")
        ip, sysctl = ("ip -6", "ipv6/conf/all/forwarding") if v6 else ("ip", "ipv4/ip_forward")
        out.append(
            StandIn(
                f"outside {s.outside}: a namespace behind the sandbox, which forwards "
                f"(net.{sysctl.replace('/', '.')}=1) as a router does",
                f"ip netns add {ns}\n"
                f"ip link add {dev} type veth peer name eth0 netns {ns}\n"
                f"{ip} addr add {router} dev {dev} nodad\nip link set dev {dev} up\n"
                f"{ip} route add {host} dev {dev}\n"
                f"ip -n {ns} link set dev lo up\n"
                f"{ip} -n {ns} addr add {host} dev eth0 nodad\n"
                f"ip -n {ns} link set dev eth0 up\n"
                f"{ip} -n {ns} route add {router} dev eth0\n"
                f"{ip} -n {ns} route add default via {router} dev eth0\n"
                f"echo 1 > /proc/sys/net/{sysctl}\n",
            )
        )
    return out


def _names(s: m.Spec) -> set[str]:
    """Every interface and namespace name the spec uses, so stand-ins avoid them."""
    names = {b.name for b in s.bridges} | {u for b in s.bridges for u in b.uplinks}
    names |= {h.dev for h in s.hosts if h.dev is not None}
    for c in s.containers:
        names |= {leg.host_ifname for leg in c.interfaces}
        if c.netns is not None:
            names.add(c.netns)
    return names


def refuse_unsandboxable(s: m.Spec) -> None:
    """A `pid:` container adopts the namespace of a process of the host: a sandbox shares
    the host's process table, so applying it there would change that process's network."""
    adopted = [c for c in s.containers if c.pid is not None]
    if adopted:
        c = adopted[0]
        raise UsageError(
            f"{c.loc}: container {c.name} adopts the network namespace of process {c.pid} "
            "(pid:), which lives on the host, outside any sandbox; try the spec without pid:"
        )


def services(s: m.Spec) -> dict[str, list[tuple[m.Proto, int]]]:
    """{netns: [(proto, port)]}: what the spec says its containers serve (`expose`, the
    container side of `ports`) and what its declared checks connect to."""
    wanted: dict[str, set[tuple[m.Proto, int]]] = {}

    def add(name: str, proto: m.Proto, port: int) -> None:
        c = s.container(name)
        if c.netns is not None:  # network: host has no namespace of its own to serve in
            wanted.setdefault(c.netns, set()).add((proto, port))

    for c in s.containers:
        for e in c.expose:
            add(c.name, e.proto, e.port)
        for p in c.ports:
            add(c.name, p.proto, p.container_port)
    for chk in s.checks:
        if chk.kind == "container" and chk.port is not None:
            add(chk.dst, chk.proto, chk.port)
    return {netns: sorted(ports) for netns, ports in sorted(wanted.items())}


# One process per namespace: accepts (and closes) tcp connections, echoes udp datagrams;
# on both families where the namespace has IPv6, else on IPv4.
_SERVER = """
import socket, sys, threading

def serve(proto, port):
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    try:
        s = socket.socket(socket.AF_INET6, kind)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
    except OSError:
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
    if kind == socket.SOCK_STREAM:
        s.listen(64)
        def loop():
            while True:
                s.accept()[0].close()
    else:
        def loop():
            while True:
                data, peer = s.recvfrom(65535)
                s.sendto(data, peer)
    threading.Thread(target=loop, daemon=True).start()

for word in sys.argv[1:]:
    proto, port = word.split("/")
    serve(proto, int(port))
print("ready", flush=True)
threading.Event().wait()
"""


def start_sandbox(log: Log | None = None) -> Sandbox:
    """A sandbox as root if we are, else in an unprivileged user namespace; says which.

    Raises SandboxUnavailable naming why neither can be made here.
    """
    how = mode()
    sb = Sandbox.start(user=how == "user")
    if log is not None:
        if how == "root":
            log("sandbox: a private network + mount namespace (as root)")
        else:
            log("sandbox: a private network + mount namespace in an unprivileged user namespace")
    return sb


class Trial(Closing):
    """A spec applied in a sandbox of its own; use :meth:`start`, close when done.

    Containers are named as in the spec; `run`, `ping` and `connect` start from a
    container's namespace (a name that is no container may be a netns of the spec;
    ``None`` or ``"host"`` is the sandbox's root namespace, the spec's host).
    """

    def __init__(
        self,
        s: m.Spec,
        path: Path,
        sandbox: Sandbox,
        *,
        dialect: str = "iproute2",
        firewall: str = "iptables",
        log: Log | None = None,
        verify_destroy: bool = True,
    ) -> None:
        self.spec = s
        self.path = path
        self.sandbox = sandbox
        self.dialect = dialect
        self.firewall = firewall
        self.stand_ins: list[StandIn] = []
        self._log = log
        self.verify_destroy = verify_destroy
        self._before: dict[str, Any] | None = None  # the sandbox's state before apply
        self._applied = False

    @classmethod
    def start(
        cls,
        path: str | os.PathLike[str],
        *,
        dialect: str = "iproute2",
        firewall: str = "iptables",
        log: Log | None = None,
        verify_destroy: bool = True,
    ) -> Trial:
        """Load the spec (SpecError: exit 2, before any sandbox), make a sandbox, its
        stand-ins, and apply the spec there. Whatever fails closes the sandbox again.

        Raises SandboxUnavailable when no sandbox can be made here. `verify_destroy`:
        whether destroy must leave the sandbox exactly as apply found it (see destroy()).
        """
        p = Path(path)
        s = spec.load(p)
        if len(s.hosts) >= 2:
            raise UsageError(
                f"spec {s.name!r} spans {len(s.hosts)} hosts "
                f"({', '.join(h.name for h in s.hosts)}): a Trial is one sandbox; "
                "netgen.fleettrial.FleetTrial gives each host its own (as netgen try does)"
            )
        refuse_unsandboxable(s)
        render.render(s, lower.lower(s), dialect=dialect, firewall=firewall)  # DialectError: 2
        sb = start_sandbox(log)  # SandboxUnavailable: the caller decides (exit 1, skip)
        trial = cls(
            s, p, sb, dialect=dialect, firewall=firewall, log=log, verify_destroy=verify_destroy
        )
        try:
            trial._prepare()
            trial.apply()
        except BaseException:
            trial.sandbox.close()
            raise
        return trial

    def _say(self, text: str) -> None:
        if self._log is not None:
            self._log(text)

    def _prepare(self) -> None:
        for stand_in in stand_ins(self.spec):
            self.sandbox.sh(stand_in.script)
            self.stand_ins.append(stand_in)
            self._say(f"stand-in: {stand_in.what}")

    # -- netgen itself, inside --------------------------------------------------------

    def netgen(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `netgen ARGS` inside the sandbox (same interpreter, same netgen)."""
        return self.sandbox.run([*NETGEN, *args], check=False, timeout=TIMEOUT)

    def _relay(self, res: subprocess.CompletedProcess[str]) -> None:
        for line in res.stderr.splitlines():
            self._say(line.removeprefix("netgen: "))

    def apply(self) -> None:
        """`netgen apply` in the sandbox; TrialError with its diagnostics if it fails."""
        if self._before is None:
            self._before = self.sandbox.state()
        res = self.netgen(
            "apply", "--dialect", self.dialect, "--firewall", self.firewall, str(self.path)
        )
        if res.returncode != 0:
            raise TrialError(f"netgen apply failed in the sandbox: {said(res)}")
        self._applied = True
        self._relay(res)

    def check(self, *, implied: bool = True, timeout: float = check.TIMEOUT) -> Report:
        """The spec's checks (implied ones too, unless told), probed in the sandbox."""
        args = ["check", "--json", "--timeout", str(timeout), str(self.path)]
        res = self.netgen(*args, *([] if implied else ["--no-implied"]))
        if res.returncode not in (0, 1):
            raise TrialError(f"netgen check failed in the sandbox: {said(res)}")
        try:
            data = json.loads(res.stdout)
        except ValueError as exc:
            raise TrialError(f"netgen check printed no JSON:\n{res.stderr.rstrip()}") from exc
        return results_from_json(self.spec, data, implied=implied)

    def destroy(self) -> None:
        """`netgen destroy`, then prove the sandbox is as apply found it (netgen's promise;
        a test that changed the sandbox's root namespace itself turns verify_destroy off)."""
        if not self._applied:
            return
        self._applied = False
        res = self.netgen("destroy", "--firewall", self.firewall, str(self.path))
        if res.returncode != 0:
            raise TrialError(f"netgen destroy failed in the sandbox: {said(res)}")
        self._relay(res)
        if not self.verify_destroy:
            return
        after = self.sandbox.state()
        if self._before is not None and after != self._before:
            raise TrialError(
                "netgen destroy did not leave the sandbox as apply found it:\n"
                + state_diff(self._before, after)
            )
        self._say("destroy left the sandbox as apply found it")

    def close(self) -> None:
        """Destroy (if applied), then close the sandbox even if destroy failed."""
        try:
            self.destroy()
        finally:
            self.sandbox.close()

    # -- looking around -----------------------------------------------------------------

    def netns(self, name: str | None) -> str | None:
        """The namespace a container (or a netns of the spec) lives in; None: the host."""
        return netns_of(self.spec, name)

    def address(self, target: str, src: str | None = None) -> str:
        """`target` as an address: a container's (the one `src` would use, as checks
        pick it), `outside`, or an address as written."""
        return address_of(self.spec, target, src)

    def run(
        self, ns: str | None, argv: Sequence[str], *, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run argv in a container's namespace (None: the host); raises if it fails,
        unless check=False."""
        netns = self.netns(ns)
        if netns is None:
            return self.sandbox.run(argv, check=check, timeout=timeout)
        return self.sandbox.in_netns(netns, argv, check=check, timeout=timeout)

    def spawn(self, ns: str | None, argv: Sequence[str]) -> subprocess.Popen[str]:
        """Start a long-running process (a server) in a container; killed on close."""
        return self.sandbox.spawn(argv, netns=self.netns(ns))

    def ping(self, src: str | None, dst: str, *, count: int = 1, timeout_s: int = 2) -> bool:
        """Does `dst` (container, `outside` or address) answer a ping from `src`?"""
        return self.sandbox.ping(
            self.netns(src), self.address(dst, src), count=count, timeout_s=timeout_s
        )

    def connect(
        self, src: str | None, host: str, port: int, proto: str = "tcp", timeout_s: float = 2
    ) -> bool:
        """Does a tcp connect (a udp datagram and its reply) from `src` to host:port work?"""
        return self.sandbox.connect(
            self.netns(src), self.address(host, src), port, proto=proto, timeout_s=timeout_s
        )

    def state(self) -> dict[str, Any]:
        """The sandbox's normalised state (see Sandbox.state)."""
        return self.sandbox.state()

    def serve(self) -> list[str]:
        """Listen, in each container, on the ports of :func:`services`, so port checks
        prove the network (firewall, DNAT, links) rather than find nothing listening.
        Returns what it started, for people: "web: tcp/80, udp/5353"."""
        return serve_in(self.sandbox, services(self.spec))

    def sandbox_json(self) -> dict[str, Any]:
        """What `netgen try --json` adds to the checks: how the host was played."""
        return {
            "sandbox": "user" if self.sandbox.user else "root",
            "stand_ins": [s.what for s in self.stand_ins],
        }

    # -- interactive -------------------------------------------------------------------

    def enter_command(self) -> str:
        """The command that enters this sandbox from another terminal."""
        sudo = "" if self.sandbox.user or os.geteuid() == 0 else "sudo "
        user = " -U" if self.sandbox.user else ""
        return f"{sudo}nsenter -t {self.sandbox.pid}{user} -n -m"

    def shell(self, stdin: IO[Any] | None = None) -> int:
        """An interactive bash inside the sandbox; returns its exit code (see shell_in)."""
        return shell_in(self.sandbox, self.spec.name, {"NETGEN_SANDBOX": self.spec.name}, stdin)


# -- shared with the multi-host trial (fleettrial.py) -----------------------------------


def netns_of(s: m.Spec, name: str | None) -> str | None:
    """The namespace a container (or a netns of the spec) lives in; None: the host."""
    containers = {c.name for c in s.containers}
    if name is None or (name == "host" and name not in containers):
        return None
    if name in containers:
        return s.container(name).netns
    if name in {c.netns for c in s.containers}:
        return name
    raise ValueError(f"spec {s.name!r} has no container or netns named {name!r}")


def address_of(s: m.Spec, target: str, src: str | None = None) -> str:
    """`target` as an address: a container's (the one `src` would use, as checks pick
    it), `outside`, or an address as written."""
    containers = {c.name for c in s.containers}
    if target in containers:
        via = src if src is not None and src in containers else target
        return str(check.address_of(s, target, via))
    if target == "outside" and s.outside is not None:
        return str(s.outside)
    try:
        return str(ipaddress.ip_address(target))
    except ValueError:
        raise ValueError(f"{target!r} is no container of spec {s.name!r}, nor an address") from None


def serve_in(
    sandbox: Sandbox, wanted: Mapping[str, Sequence[tuple[m.Proto, int]]], where: str = ""
) -> list[str]:
    """Listen in each netns of `wanted` on its ports (see :func:`services`); returns what
    it started, for people: "web: tcp/80, udp/5353" (`where` follows the netns)."""
    started = []
    for netns, ports in wanted.items():  # all at once: each starts Python
        words = [f"{proto}/{port}" for proto, port in ports]
        proc = sandbox.spawn([sys.executable, "-I", "-c", _SERVER, *words], netns=netns)
        started.append((f"{netns}{where}: {', '.join(words)}", proc))
    for what, proc in started:
        assert proc.stdout is not None and proc.stderr is not None
        if proc.stdout.readline() != "ready\n":
            proc.wait(timeout=30)
            why = proc.stderr.read().strip().splitlines()
            raise TrialError(f"cannot listen ({what}): {why[-1] if why else '?'}")
    return [what for what, _ in started]


def shell_in(
    sandbox: Sandbox, label: str, env: Mapping[str, str], stdin: IO[Any] | None = None
) -> int:
    """An interactive bash inside `sandbox`, its prompt naming `label`; its exit code.

    Ctrl-C belongs to the shell meanwhile: our handler does nothing, and handlers are
    reset by exec, so the shell and what it runs get it as usual.
    """
    prompt = f"(netgen sandbox: {label}) \\w \\$ "
    full = {**os.environ, "PS1": prompt, **env}
    interactive = ["-i"] if (stdin or sys.stdin).isatty() else []  # else: no job control
    argv = sandbox.command(["bash", "--norc", "--noprofile", *interactive])
    previous = signal.signal(signal.SIGINT, _ignore)
    try:
        return subprocess.run(argv, env=full, stdin=stdin, check=False).returncode
    finally:
        signal.signal(signal.SIGINT, previous)


def said(res: subprocess.CompletedProcess[str]) -> str:
    """What a netgen run inside said on stderr, without its own "netgen: error: "."""
    text = res.stderr.strip() or f"exit code {res.returncode}"
    return re.sub(r"^netgen: (error: )?", "", text, flags=re.M)


def _ignore(signum: int, frame: object) -> None:
    """A SIGINT handler that does nothing (unlike SIG_IGN, exec resets it)."""


def state_diff(before: dict[str, Any], after: dict[str, Any], limit: int = 60) -> str:
    lines = list(
        difflib.unified_diff(
            json.dumps(before, indent=1, sort_keys=True).splitlines(),
            json.dumps(after, indent=1, sort_keys=True).splitlines(),
            "before apply",
            "after destroy",
            lineterm="",
            n=2,
        )
    )
    more = [f"... ({len(lines) - limit} more lines)"] if len(lines) > limit else []
    return "\n".join(lines[:limit] + more)
