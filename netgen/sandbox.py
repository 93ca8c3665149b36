"""A throw-away private network + mount namespace for running netgen against a real kernel.

Tests (and ``netgen`` itself in its self-check mode) must never touch the host's network.
A :class:`Sandbox` starts one long-lived *holder* process in fresh network and mount
namespaces; every command is then run inside it with ``nsenter``.  Fresh tmpfs mounts on
``/run/netns``, ``/etc/netns`` and ``/run/netgen`` hide the host's named namespaces and
netgen state, and a fresh sysfs makes ``/sys/class/net`` show the sandbox's devices.
Killing the holder (by PID) releases the mount namespace, which drops the netns bind
mounts, which frees every namespace and device created inside.

Without root, ``Sandbox.start(user=True)`` does the same inside a fresh *user* namespace
(``unshare -r``: the caller is root there, and only there), for laptops where ``sudo`` is
not wanted; :func:`mode` picks what this host allows.

A :class:`Fleet` is several sandboxes playing separate machines (multi-host specs): one
per simulated host, joined by an underlay bridge in one more sandbox; either the fixed
test fleet (h1.. at 192.0.2.1N) or, with :meth:`Fleet.start_hosts`, hosts at the
addresses a spec gives them (:class:`FleetHost`).
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from types import TracebackType
from typing import IO, Any, Self

__all__ = [
    "NETNS_DIR",
    "OUTSIDE_ADDRESS",
    "OUTSIDE_NETNS",
    "UNDERLAY_ADDRESS",
    "Fleet",
    "FleetHost",
    "Sandbox",
    "SandboxCommandError",
    "SandboxUnavailable",
    "mode",
    "unavailable_reason",
]

#: Where ``ip netns`` keeps its bind mounts (inside the sandbox this is a private tmpfs).
NETNS_DIR = "/run/netns"
#: Per-namespace config files that ``ip netns exec`` bind-mounts over ``/etc``.
ETC_NETNS_DIR = "/etc/netns"
#: netgen's own state directory.
NETGEN_STATE_DIR = "/run/netgen"

_READY = "NETGEN-SANDBOX-READY"
_READY_TIMEOUT = 15.0
_REQUIRED_TOOLS = ("unshare", "nsenter", "ip", "bash", "mount")

# Runs as the holder: make the private mounts, then block on stdin.  Blocking on the
# parent's pipe (instead of ``sleep infinity``) means the holder also goes away if the
# parent dies without calling close(), so a crashed test run cannot leak a namespace.
_HOLDER_SCRIPT = f"""
set -eu
for d in "$@"; do
    mount -t tmpfs -o mode=0755 netgen-sandbox "$d"
done
mount -t sysfs sysfs /sys
ip link set lo up
echo {_READY}
exec cat >/dev/null 2>&1
"""

# The holder in a user namespace.  An unprivileged caller cannot create mount points on
# the host, so /run (and /var/run, if it is not a link to /run) gets one fresh tmpfs
# holding netns/ and netgen/, and a missing /etc/netns is made in a tmpfs-backed overlay
# of /etc (so /etc itself stays readable).  Only this mount namespace sees any of it.
_USER_HOLDER_SCRIPT = f"""
set -eu
mount -t tmpfs -o mode=0755 netgen-sandbox /run
mkdir /run/netns /run/netgen
varrun=$(readlink -f /var/run)
if [ "$varrun" != /run ]; then
    mount -t tmpfs -o mode=0755 netgen-sandbox "$varrun"
    mkdir "$varrun/netns"
fi
if [ -d /etc/netns ]; then
    mount -t tmpfs -o mode=0755 netgen-sandbox /etc/netns
else
    mkdir -p /run/.netgen-etc/upper /run/.netgen-etc/work
    mount -t overlay netgen-sandbox \
        -o lowerdir=/etc,upperdir=/run/.netgen-etc/upper,workdir=/run/.netgen-etc/work /etc
    mkdir /etc/netns
fi
mount -t sysfs sysfs /sys
ip link set lo up
echo {_READY}
exec cat >/dev/null 2>&1
"""

# Collects one namespace's raw state.  Sections are framed by lines starting with the
# ASCII record separator so that one subprocess can report everything; the exit code of
# each command travels in its END line so failures are not silently read as "empty".
_NS_SCRIPT = r"""
sec() {
    local name=$1 out rc
    shift
    out=$("$@")
    rc=$?
    printf '\036BEGIN %s\n%s\n\036END %s %d\n' "$name" "$out" "$name" "$rc"
}
assign_types() {
    local f d
    for f in /sys/class/net/*/addr_assign_type; do
        [ -e "$f" ] || continue
        d=${f%/addr_assign_type}
        printf '%s %s\n' "${d##*/}" "$(cat "$f" 2>/dev/null || echo '?')"
    done
}
sec link ip -d -j link show
sec addr ip -j addr show
sec route4 ip -j -4 route show table all
sec route6 ip -j -6 route show table all
sec nsids ip -j netns list
sec assign assign_types
sec ip_forward cat /proc/sys/net/ipv4/ip_forward
sec ip6_forward cat /proc/sys/net/ipv6/conf/all/forwarding
if command -v iptables-save >/dev/null 2>&1; then sec iptables iptables-save; fi
if command -v ip6tables-save >/dev/null 2>&1; then sec ip6tables ip6tables-save; fi
if command -v nft >/dev/null 2>&1; then sec nftables nft list ruleset; fi
"""

_STATE_DRIVER = r"""
ns_script=$1
shift
printf '\036ROOT\n'
bash -c "$ns_script"
for n in "$@"; do
    printf '\036NS %s\n' "$n"
    ip netns exec "$n" bash -c "$ns_script"
    printf '\036NSDONE %d\n' "$?"
done
"""

# Fallback tunnel devices the kernel adds to *every* netns once the tunnel module is
# loaded; they appear without anyone asking, so they would make states incomparable.
_FALLBACK_DEVICES = {
    ("tunl0", "ipip"),
    ("gre0", "gre"),
    ("gretap0", "gretap"),
    ("erspan0", "erspan"),
    ("ip_vti0", "vti"),
    ("ip6_vti0", "vti6"),
    ("sit0", "sit"),
    ("ip6tnl0", "ip6tnl"),
    ("ip6gre0", "ip6gre"),
}

# Configuration-like (not timer/derived) attributes worth comparing, per link kind.
_KIND_DETAILS: dict[str, tuple[str, ...]] = {
    "bridge": (
        "stp_state",
        "forward_delay",
        "hello_time",
        "max_age",
        "ageing_time",
        "priority",
        "vlan_filtering",
        "vlan_protocol",
    ),
    "vlan": ("id", "protocol"),
    "macvlan": ("mode",),
    "macvtap": ("mode",),
    "ipvlan": ("mode",),
    "vxlan": ("id", "remote", "group", "local", "port", "learning"),
}
_BRIDGE_PORT_DETAILS = ("cost", "priority", "hairpin", "guard", "learning", "flood", "isolated")
_ROUTE_KEYS = (
    "type",
    "dst",
    "gateway",
    "via",
    "dev",
    "scope",
    "protocol",
    "prefsrc",
    "metric",
    "table",
)
_ROUTE_FLAGS = {"onlink", "pervasive"}
_ADDR_KEYS = ("local", "prefixlen", "address", "broadcast", "scope")
_COUNTERS_RE = re.compile(r"\[\d+:\d+\]")
_NFT_COUNTER_RE = re.compile(r"\bcounter packets \d+ bytes \d+")
# iptables(-nft) registers a built-in table with its base chains (policy ACCEPT) the first
# time any command names it, even `iptables -C`, and nothing ever removes it.  Such a table
# filters nothing, so it is dropped: otherwise merely *checking* for a rule changes state.
_IPT_IDLE_LINE_RE = re.compile(r"(\*[a-z]+|:[A-Z]+ ACCEPT \[0:0\]|COMMIT)")
_NFT_IDLE_TABLE_RE = re.compile(r"table (ip|ip6) (filter|nat|mangle|raw|security) \{")
_NFT_BASE_CHAIN_RE = re.compile(r"chain [A-Z]+ \{")
_NFT_ACCEPT_HOOK_RE = re.compile(r"type \w+ hook \w+ priority [\w+-]+; policy accept;")


class Closing:
    """`with X(...) as x:` closes `x` at the end, whatever happened inside."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SandboxUnavailable(Exception):
    """No sandbox can be made here; the message says why (not root, no unshare, ...)."""


class SandboxCommandError(subprocess.CalledProcessError):
    """A command inside the sandbox failed; ``str()`` carries everything needed to debug it."""

    def __str__(self) -> str:
        argv = self.cmd if isinstance(self.cmd, str) else shlex.join(self.cmd)
        return (
            f"sandbox command failed with exit code {self.returncode}: {argv}\n"
            f"--- stdout ---\n{self.stdout or ''}\n--- stderr ---\n{self.stderr or ''}"
        )


def _static_reason(user: bool = False) -> str | None:
    """Checks that need no subprocess: platform, privileges, tools on PATH."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux (this is {sys.platform})"
    if not user and os.geteuid() != 0:
        return f"creating network namespaces needs root (euid is {os.geteuid()})"
    for tool in _REQUIRED_TOOLS:
        if shutil.which(tool) is None:
            return f"required tool {tool!r} not found in PATH"
    return None


def _unshare(user: bool) -> list[str]:
    """The unshare that makes a sandbox: with ``user``, in a user namespace of its own."""
    own_user = ["--user", "--map-root-user"] if user else []
    return ["unshare", *own_user, "--net", "--mount", "--propagation", "private"]


def unavailable_reason(user: bool = False) -> str | None:
    """Why a sandbox cannot be made here, or None if it can.

    Cheap: besides static checks it runs one ``unshare`` that mounts a sysfs in a
    throw-away namespace, which is what fails in unprivileged containers (and, with
    ``user``, where unprivileged user namespaces are off or confined, as AppArmor does
    on Ubuntu 23.10 and later).
    """
    reason = _static_reason(user)
    if reason is not None:
        return reason
    try:
        probe = subprocess.run(
            _unshare(user) + ["mount", "-t", "sysfs", "sysfs", "/sys"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=15,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare probe could not run: {exc}"
    if probe.returncode != 0:
        detail = (probe.stderr or probe.stdout).strip()
        return f"unshare/mount probe failed (exit code {probe.returncode}): {detail}"
    return None


def mode() -> str:
    """How a sandbox can be made here: ``"root"``, or ``"user"`` (an unprivileged user
    namespace); raises SandboxUnavailable saying why neither works.

    Root is preferred when we have it: it is what CI runners and the kernel tests use.
    """
    reasons = []
    if os.geteuid() == 0:
        reason = unavailable_reason()
        if reason is None:
            return "root"
        reasons.append(f"as root: {reason}")
    else:
        reasons.append(f"not root (euid {os.geteuid()})")
    reason = unavailable_reason(user=True)
    if reason is None:
        return "user"
    reasons.append(f"unprivileged user namespaces: {reason}")
    raise SandboxUnavailable(
        "a sandbox needs root or unprivileged user namespaces; " + "; ".join(reasons)
    )


def _mount_dirs() -> list[str]:
    """Directories to hide behind private tmpfs mounts, deduplicated by real path.

    ``ip`` uses the compiled-in ``/var/run/netns``; that is normally ``/run/netns`` but is
    covered separately in case ``/var/run`` is not a symlink on this host.
    """
    dirs: list[str] = []
    for d in (NETNS_DIR, os.path.join(os.path.realpath("/var/run"), "netns")):
        if d not in dirs:
            dirs.append(d)
    for d in (ETC_NETNS_DIR, NETGEN_STATE_DIR):
        if d not in dirs:
            dirs.append(d)
    return dirs


class Sandbox(Closing):
    """Handle on one private network + mount namespace; see the module docstring."""

    pid: int
    #: True when the sandbox lives in a user namespace of its own (see start()).
    user: bool

    def __init__(self, holder: subprocess.Popen[str], nsenter: str, user: bool = False) -> None:
        """Use :meth:`start`; this only wraps an already-ready holder."""
        self._holder = holder
        self.pid = holder.pid
        self._nsenter = nsenter
        self.user = user
        self._spawned: list[subprocess.Popen[str]] = []
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    def start(cls, *, user: bool = False) -> Sandbox:
        """Start the holder and wait until its private mounts are in place.

        ``user``: in a user namespace of its own, which needs no root (see :func:`mode`).
        """
        reason = _static_reason(user)
        if reason is not None:
            raise SandboxUnavailable(reason)
        nsenter = shutil.which("nsenter")
        assert nsenter is not None  # checked by _static_reason
        dirs = [] if user else _mount_dirs()
        try:
            for d in dirs:
                os.makedirs(d, exist_ok=True)  # mount points must exist on the host
        except OSError as exc:
            raise SandboxUnavailable(f"cannot create mount point: {exc}") from exc
        script = _USER_HOLDER_SCRIPT if user else _HOLDER_SCRIPT
        try:
            holder = subprocess.Popen(
                _unshare(user) + ["bash", "-c", script, "netgen-sandbox", *dirs],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # keep terminal signals away from the holder
            )
        except OSError as exc:
            raise SandboxUnavailable(f"cannot run unshare: {exc}") from exc
        if not cls._wait_ready(holder):
            if holder.poll() is None:
                os.kill(holder.pid, signal.SIGKILL)
            _, err = holder.communicate(timeout=10)
            if holder.stdin is not None:
                holder.stdin.close()
            raise SandboxUnavailable(
                f"sandbox setup failed (exit code {holder.returncode}): {err.strip()}"
            )
        assert holder.stdout is not None and holder.stderr is not None
        holder.stdout.close()
        holder.stderr.close()
        return cls(holder, nsenter, user)

    @staticmethod
    def _wait_ready(holder: subprocess.Popen[str]) -> bool:
        """Read the holder's stdout until the ready line, EOF or timeout."""
        assert holder.stdout is not None
        fd = holder.stdout.fileno()
        deadline = time.monotonic() + _READY_TIMEOUT
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                return False
            chunk = os.read(fd, 4096)
            if not chunk:
                return False
            buf += chunk
        return buf.split(b"\n", 1)[0].decode(errors="replace").strip() == _READY

    def close(self) -> None:
        """Kill everything running in the sandbox (by PID) and the holder; idempotent."""
        if self._closed:
            return
        self._closed = True
        for proc in self._spawned:
            if proc.returncode is None:  # not reaped yet, so the PID cannot be reused
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # group created by spawn()
                except (ProcessLookupError, PermissionError):
                    pass
        # Sweep while the holder is alive: it pins the namespaces, so their inode numbers
        # cannot yet have been recycled for some other (e.g. a parallel test's) namespace.
        if self._holder.poll() is None:
            self._kill_inside(self._namespace_inodes())
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._holder.wait(timeout=30)
        if self._holder.stdin is not None:
            try:
                self._holder.stdin.close()
            except BrokenPipeError:
                pass
        for proc in self._spawned:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()

    def _namespace_inodes(self) -> set[tuple[int, int]]:
        """(dev, inode) of the sandbox's mount + network namespaces, its named netns and
        the network namespaces of the processes it spawned.

        Symlinked netns entries are ignored (they may point at a host namespace), and the
        caller's own namespaces are excluded so a misbehaving sandbox cannot make close()
        touch host processes.
        """
        found: set[tuple[int, int]] = set()
        for kind in ("net", "mnt", "user") if self.user else ("net", "mnt"):
            try:
                st = os.stat(f"/proc/{self.pid}/ns/{kind}")
            except OSError:
                continue
            found.add((st.st_dev, st.st_ino))
        netns_dir = f"/proc/{self.pid}/root{NETNS_DIR}"
        try:
            names = os.listdir(netns_dir)
        except OSError:
            names = []
        for name in names:
            path = os.path.join(netns_dir, name)
            try:
                if stat.S_ISLNK(os.lstat(path).st_mode):
                    continue
                st = os.stat(path)
            except OSError:
                continue
            found.add((st.st_dev, st.st_ino))
        # A namespace a spawned process made for itself (the chapter's container, played by
        # `unshare -n sleep`) is the sandbox's too, so a /run/netns symlink to it is followed.
        for proc in self._spawned:
            if proc.returncode is not None:  # reaped: its PID may belong to someone else now
                continue
            try:
                st = os.stat(f"/proc/{proc.pid}/ns/net")
            except OSError:
                continue
            found.add((st.st_dev, st.st_ino))
        for kind in ("net", "mnt", "user"):
            st = os.stat(f"/proc/self/ns/{kind}")
            found.discard((st.st_dev, st.st_ino))
        return found

    def _kill_inside(self, inodes: set[tuple[int, int]]) -> None:
        """SIGKILL every process (other than us/the holder) living in a sandbox namespace.

        Anything still inside (daemons started by a script, ``ip netns exec`` children)
        would keep the namespaces alive after the holder is gone.
        """
        if not inodes:
            return
        me = os.getpid()
        for _ in range(20):
            killed = False
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                pid = int(entry)
                if pid in (me, self.pid):
                    continue
                for kind in ("net", "mnt", "user"):
                    try:
                        st = os.stat(f"/proc/{pid}/ns/{kind}")
                    except OSError:
                        break
                    if (st.st_dev, st.st_ino) in inodes:
                        try:
                            os.kill(pid, signal.SIGKILL)
                            killed = True
                        except (ProcessLookupError, PermissionError):
                            pass
                        break
            if not killed:
                return
            time.sleep(0.05)

    # -- running things ----------------------------------------------------------------

    def _prefix(self, cwd: str | None) -> list[str]:
        if self._closed:
            raise RuntimeError("sandbox is closed")
        # --wdns resolves the directory inside the sandbox's mount namespace; without it
        # entering a mount namespace would leave the command in "/".
        wd = cwd if cwd is not None else os.getcwd()
        return [self._nsenter, *self.enter_args(), f"--wdns={wd}", "--"]

    def enter_args(self) -> list[str]:
        """nsenter's options that enter this sandbox (a user namespace first, if any)."""
        return [f"--target={self.pid}", *(["--user"] if self.user else []), "--net", "--mount"]

    def command(self, argv: Sequence[str], *, cwd: str | None = None) -> list[str]:
        """``argv`` prefixed so that it runs inside, for a caller that needs a process of
        its own making (an interactive shell on the terminal); not tracked by close()."""
        return self._prefix(cwd) + self._argv(argv)

    @staticmethod
    def _argv(argv: Sequence[str]) -> list[str]:
        if isinstance(argv, str):
            raise TypeError("argv must be a sequence of strings, not a shell string")
        return list(argv)

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the sandbox (root netns), capturing text output.

        ``cwd`` defaults to the caller's current directory (resolved inside the sandbox,
        which shares the host's filesystem apart from the private mounts).
        """
        args = self._argv(argv)
        proc = subprocess.run(
            self._prefix(cwd) + args,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            env=dict(env) if env is not None else None,
        )
        result = subprocess.CompletedProcess(args, proc.returncode, proc.stdout, proc.stderr)
        if check and result.returncode != 0:
            raise SandboxCommandError(result.returncode, args, result.stdout, result.stderr)
        return result

    def sh(
        self, script: str, *, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a bash script (strict mode) inside the sandbox."""
        return self.run(["bash", "-euo", "pipefail", "-c", script], check=check, timeout=timeout)

    def in_netns(
        self,
        netns: str,
        argv: Sequence[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the named netns (``ip netns exec``) inside the sandbox."""
        return self.run(
            ["ip", "netns", "exec", netns, *self._argv(argv)],
            input=input,
            check=check,
            timeout=timeout,
            env=env,
            cwd=cwd,
        )

    def spawn(
        self,
        argv: Sequence[str],
        *,
        netns: str | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        stderr: int | IO[Any] | None = subprocess.PIPE,
    ) -> subprocess.Popen[str]:
        """Start a long-running process inside (optionally in a named netns).

        It gets its own process group and is killed by close(); callers may read its
        (text) stdout, e.g. to wait for a readiness line, or feed it lines on stdin.
        """
        args = self._argv(argv)
        if netns is not None:
            args = ["ip", "netns", "exec", netns, *args]
        proc = subprocess.Popen(
            self._prefix(None) + args,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
        self._spawned.append(proc)
        return proc

    def _run_maybe_netns(
        self, netns: str | None, argv: Sequence[str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        if netns is None:
            return self.run(argv, check=False, timeout=timeout)
        return self.in_netns(netns, argv, check=False, timeout=timeout)

    def ping(self, netns: str | None, address: str, *, count: int = 1, timeout_s: int = 2) -> bool:
        """True if ``address`` answers ICMP echo from ``netns`` (None: sandbox root ns).

        "No reply" and "unreachable" are False; anything else (e.g. a missing netns)
        raises, so a typo cannot masquerade as an unreachable host.
        """
        argv = ["ping", "-n", "-c", str(count), "-W", str(timeout_s), address]
        res = self._run_maybe_netns(netns, argv, timeout=count * (timeout_s + 1) + 10)
        if res.returncode not in (0, 1, 2):
            raise SandboxCommandError(res.returncode, res.args, res.stdout, res.stderr)
        return res.returncode == 0

    def connect(
        self,
        netns: str | None,
        host: str,
        port: int,
        *,
        proto: str = "tcp",
        timeout_s: float = 2,
    ) -> bool:
        """True if a TCP connect (or UDP datagram + reply) to host:port succeeds from netns."""
        if proto not in ("tcp", "udp"):
            raise ValueError(f"proto must be 'tcp' or 'udp', not {proto!r}")
        argv = [sys.executable, "-I", "-c", _CONNECT_SCRIPT, host, str(port), proto, str(timeout_s)]
        res = self._run_maybe_netns(netns, argv, timeout=timeout_s + 15)
        if res.returncode not in (0, _CONNECT_FAILED):
            raise SandboxCommandError(res.returncode, res.args, res.stdout, res.stderr)
        return res.returncode == 0

    # -- state -------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Normalised, deterministic, JSON-serialisable description of the sandbox.

        Layout::

            {"netns": [{"name", "type": bind|symlink|file|dir|mount, "target"?}, ...],
             "etc_netns": {relative path: content, or None for a directory},
             "root": NS, "namespaces": {name: NS}}

        where NS is ``{"links", "macs", "addresses", "routes", "sysctl", "iptables"?,
        "ip6tables"?, "nftables"?}``.  ``macs`` only lists addresses that were not
        randomly generated.  Interface indexes and netns ids never appear; a link's
        peer/parent is given as ``{"netns": name or None (root), "ifname"}``.
        """
        entries = self._netns_entries()
        inside = self._namespace_inodes()
        names: list[str] = []
        foreign: list[str] = []
        for e in entries:
            if e["type"] == "bind":
                names.append(e["name"])
            elif e["type"] == "symlink":
                # Only follow symlinks that resolve (inside the sandbox) to one of its own
                # namespaces; one pointing at e.g. /proc/1/ns/net would be the host's.
                ident = self._stat_inside(f"{NETNS_DIR}/{e['name']}")
                (names if ident in inside else foreign).append(e["name"])
        res = self.run(
            ["bash", "-c", _STATE_DRIVER, "netgen-state", _NS_SCRIPT, *names],
            check=False,
            timeout=120,
        )
        raw = _parse_state_output(res.stdout)
        if None not in raw:
            raise SandboxCommandError(res.returncode, res.args, res.stdout, res.stderr)
        kinds = {e["name"]: e["type"] for e in entries}
        for key in [None, *names]:
            sections = raw.get(key)
            if sections is None:
                raise SandboxCommandError(res.returncode, res.args, res.stdout, res.stderr)
            if key is not None and kinds[key] == "symlink" and "link" not in sections:
                continue  # dangling or foreign symlink: reported as unreachable
            for mandatory in ("link", "addr", "route4"):
                if sections.get(mandatory, (1, ""))[0] != 0:
                    raise SandboxCommandError(res.returncode, res.args, res.stdout, res.stderr)
        return {
            "netns": entries,
            "etc_netns": self._read_tree(ETC_NETNS_DIR),
            "root": _normalise_ns(None, raw),
            "namespaces": {
                **{name: _normalise_ns(name, raw) for name in names},
                **{name: {"outside_sandbox": True} for name in foreign},
            },
        }

    def _stat_inside(self, path: str) -> tuple[int, int] | None:
        """(dev, inode) of ``path`` with symlinks resolved inside the sandbox, or None."""
        res = self.run(["stat", "-L", "--format=%d %i", "--", path], check=False, timeout=30)
        parts = res.stdout.split()
        if res.returncode != 0 or len(parts) != 2:
            return None
        return int(parts[0]), int(parts[1])

    def _netns_entries(self) -> list[dict[str, Any]]:
        """Classify each entry of the sandbox's /run/netns (viewed via /proc/PID/root)."""
        base = f"/proc/{self.pid}/root{NETNS_DIR}"
        mounts: dict[str, str] = {}
        with open(f"/proc/{self.pid}/mountinfo", encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                mounts[_unescape_mount(fields[4])] = fields[sep + 1]
        entries: list[dict[str, Any]] = []
        for name in sorted(os.listdir(base)):
            path = os.path.join(base, name)
            st = os.lstat(path)
            fstype = mounts.get(f"{NETNS_DIR}/{name}")
            if stat.S_ISLNK(st.st_mode):
                entries.append({"name": name, "type": "symlink", "target": os.readlink(path)})
            elif fstype == "nsfs":
                entries.append({"name": name, "type": "bind"})
            elif fstype is not None:
                entries.append({"name": name, "type": "mount", "fstype": fstype})
            elif stat.S_ISDIR(st.st_mode):
                entries.append({"name": name, "type": "dir"})
            else:
                entries.append({"name": name, "type": "file"})
        return entries

    def _read_tree(self, directory: str) -> dict[str, str | None]:
        """Relative path -> content (None for directories, '-> target' for symlinks)."""
        base = f"/proc/{self.pid}/root{directory}"
        out: dict[str, str | None] = {}
        for root, dirs, files in os.walk(base):
            for name in dirs + files:
                path = os.path.join(root, name)
                rel = os.path.relpath(path, base)
                if os.path.islink(path):
                    out[rel] = "-> " + os.readlink(path)
                elif os.path.isdir(path):
                    out[rel + "/"] = None
                else:
                    with open(path, encoding="utf-8", errors="replace") as f:
                        out[rel] = f.read()
        return dict(sorted(out.items()))


#: The simulated underlay (RFC 5737 TEST-NET-1): the controller's bridge, the hosts, outside.
UNDERLAY_BRIDGE = "ul0"
UNDERLAY_ADDRESS = "192.0.2.1"
UNDERLAY_PREFIX = 24
#: A named netns in the underlay sandbox playing a client on the outside of every host.
OUTSIDE_NETNS = "outside"
OUTSIDE_ADDRESS = "192.0.2.100"
#: Host hN gets 192.0.2.(10 + N): h1 = .11, h2 = .12, ... kept below OUTSIDE_ADDRESS.
_MAX_HOSTS = 80
#: sshd's compiled-in privilege-separation directory; a private tmpfs in each host.
SSHD_PRIVSEP_DIR = "/run/sshd"
SSHD = "/usr/sbin/sshd"

_FLEET_UNDERLAY_SCRIPT = """
set -eu
ip link add {bridge} type bridge
ip addr add {address}/{prefix} dev {bridge}
ip link set {bridge} up
ip netns add {outside}
ip link add ul-{outside} type veth peer name eth0 netns {outside}
ip link set ul-{outside} master {bridge} up
ip -n {outside} addr add {outside_address}/{prefix} dev eth0
ip -n {outside} link set eth0 up
ip -n {outside} link set lo up
"""

_SSHD_CONFIG = """\
# sshd of simulated host {host}: root by key only, nothing shared with the real host
ListenAddress {address}
Port 22
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
Subsystem sftp internal-sftp
"""


@dataclass(frozen=True)
class FleetHost:
    """Where one simulated host of :meth:`Fleet.start_hosts` sits on the underlay."""

    name: str
    address: str  # IPv4 or IPv6; every host of a fleet has the same family
    dev: str = "eth0"  # its underlay interface
    mtu: int = 1500  # of that interface (and of its port on the underlay bridge)


class Fleet(Closing):
    """Simulated hosts for multi-host tests: each one its own :class:`Sandbox`.

    Every host (``h1``, ``h2``, ...) is a sibling sandbox, so its ``/run/netns``,
    ``/etc/netns`` and ``/run/netgen`` are its own, as on separate machines.  A further
    sandbox, the *underlay*, holds the bridge ``ul0`` (192.0.2.1/24) that joins them: per
    host a veth pair whose host end is ``eth0`` with 192.0.2.1N/24 (h1 = .11) and a
    default route via 192.0.2.1.  The underlay plays the controller (Ansible runs there)
    and, through its netns ``outside`` (192.0.2.100), the world outside every host.

    Needs root: devices are moved between sandboxes, which a user namespace cannot do
    to a sibling's network namespace.
    """

    def __init__(
        self,
        underlay: Sandbox,
        hosts: dict[str, Sandbox],
        addresses: Mapping[str, str] | None = None,
    ) -> None:
        """Use :meth:`start` or :meth:`start_hosts`; this only wraps sandboxes that are
        already wired. ``addresses``: each host's underlay address (default: hN's)."""
        self.underlay = underlay
        self.hosts = hosts
        self.addresses = dict(addresses or {name: _host_address(name) for name in hosts})
        self._closed = False

    @classmethod
    def start(cls, count: int = 3) -> Fleet:
        """Start the underlay and ``count`` hosts and wire them; SandboxUnavailable if a
        sandbox cannot be made here (anything else that fails is a SandboxCommandError)."""
        if not 1 <= count <= _MAX_HOSTS:
            raise ValueError(f"a fleet has 1 to {_MAX_HOSTS} hosts, not {count}")
        started: list[Sandbox] = []
        try:
            underlay = Sandbox.start()
            started.append(underlay)
            underlay.sh(
                _FLEET_UNDERLAY_SCRIPT.format(
                    bridge=UNDERLAY_BRIDGE,
                    address=UNDERLAY_ADDRESS,
                    prefix=UNDERLAY_PREFIX,
                    outside=OUTSIDE_NETNS,
                    outside_address=OUTSIDE_ADDRESS,
                )
            )
            hosts: dict[str, Sandbox] = {}
            for index in range(1, count + 1):
                name = f"h{index}"
                host = Sandbox.start()
                started.append(host)
                hosts[name] = host
                cls._wire(underlay, name, host, _host_address(name))
        except BaseException:
            for sb in reversed(started):
                sb.close()
            raise
        return cls(underlay, hosts)

    @classmethod
    def start_hosts(cls, hosts: Sequence[FleetHost]) -> Fleet:
        """Hosts at the given underlay addresses (a multi-host spec's own), each with its
        underlay interface named and sized as given.

        The underlay is a bare switch here (no controller address, no ``outside`` netns:
        those are 192.0.2.x, which the given hosts may use). Every host's address is a
        host route (/32, /128) on its interface with a route to each peer on the link, so
        any addresses of one family reach each other, whatever subnets they are from.
        SandboxUnavailable if a sandbox cannot be made here; ValueError for hosts that
        cannot share an underlay (mixed families, duplicates).
        """
        addresses = [ip_address(h.address) for h in hosts]
        if not hosts or len({h.name for h in hosts}) != len(hosts):
            raise ValueError("a fleet needs hosts with distinct names")
        if len(set(addresses)) != len(addresses) or len({a.version for a in addresses}) != 1:
            raise ValueError("a fleet's hosts need distinct addresses of one family")
        started: list[Sandbox] = []
        try:
            underlay = Sandbox.start()
            started.append(underlay)
            underlay.sh(
                f"ip link add {UNDERLAY_BRIDGE} type bridge\nip link set {UNDERLAY_BRIDGE} up\n"
            )
            sandboxes: dict[str, Sandbox] = {}
            for index, h in enumerate(hosts):
                sb = Sandbox.start()
                started.append(sb)
                sandboxes[h.name] = sb
                port = f"ul-{index}"  # host names can be longer than an ifname allows
                underlay.run(
                    ["ip", "link", "add", port, "mtu", str(h.mtu), "type", "veth"]
                    + ["peer", "name", h.dev, "mtu", str(h.mtu), "netns", str(sb.pid)]
                )
                underlay.run(["ip", "link", "set", port, "master", UNDERLAY_BRIDGE, "up"])
                sb.sh(_wiring(h, [p.address for p in hosts if p is not h]))
        except BaseException:
            for sb in reversed(started):
                sb.close()
            raise
        return cls(underlay, sandboxes, {h.name: h.address for h in hosts})

    @staticmethod
    def _wire(underlay: Sandbox, name: str, host: Sandbox, address: str) -> None:
        """The veth pair ul-NAME (on ul0) <-> eth0 (in the host, by its holder's PID)."""
        port = f"ul-{name}"
        underlay.run(
            ["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0"]
            + ["netns", str(host.pid)]
        )
        underlay.run(["ip", "link", "set", port, "master", UNDERLAY_BRIDGE, "up"])
        host.sh(
            f"ip addr add {address}/{UNDERLAY_PREFIX} dev eth0\n"
            "ip link set eth0 up\n"
            f"ip route add default via {UNDERLAY_ADDRESS} dev eth0\n"
        )

    def close(self) -> None:
        """Close every host, then the underlay (each kills only what it started)."""
        if self._closed:
            return
        self._closed = True
        for host in reversed(list(self.hosts.values())):
            host.close()
        self.underlay.close()

    # -- addressing ----------------------------------------------------------------

    def address(self, name: str) -> str:
        """The underlay address of host ``name`` (h1 -> 192.0.2.11 in the test fleet)."""
        self.host(name)
        return self.addresses[name]

    def host(self, name: str) -> Sandbox:
        """The sandbox of host ``name``; KeyError naming the hosts if there is none."""
        try:
            return self.hosts[name]
        except KeyError:
            raise KeyError(
                f"no host {name!r} in this fleet (hosts: {', '.join(self.hosts)})"
            ) from None

    # -- running things ----------------------------------------------------------------

    def run(
        self,
        host: str | None,
        argv: Sequence[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in host ``host``'s root namespace, or in the underlay (None)."""
        sb = self.underlay if host is None else self.host(host)
        return sb.run(argv, input=input, check=check, timeout=timeout, env=env, cwd=cwd)

    def in_netns(
        self,
        host: str | None,
        netns: str,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the named netns of a host (or of the underlay: None)."""
        sb = self.underlay if host is None else self.host(host)
        return sb.in_netns(netns, argv, check=check, timeout=timeout)

    def state(self, host: str) -> dict[str, Any]:
        """Host ``host``'s normalised state (see :meth:`Sandbox.state`)."""
        return self.host(host).state()

    def states(self) -> dict[str, dict[str, Any]]:
        """Every host's normalised state, by host name."""
        return {name: sb.state() for name, sb in self.hosts.items()}

    # -- sshd ------------------------------------------------------------------------

    def start_sshd(
        self, host: str, directory: str | os.PathLike[str], *, host_key: str, authorized_keys: str
    ) -> subprocess.Popen[str]:
        """Run Debian's sshd in host ``host``'s namespaces, listening on its underlay
        address only, root login by key only; it is killed (by PID) when the host closes.

        ``directory`` (the caller's, e.g. a test's tmp dir) receives the config and the
        PID file; ``host_key`` and ``authorized_keys`` are files the caller made (throw-away
        keys).  The privilege-separation directory sshd insists on is a private tmpfs in
        the host, so nothing of it is left on the real machine but an empty mount point.
        Returns once sshd accepts connections; SandboxCommandError if it does not,
        SandboxUnavailable if sshd is not installed.
        """
        if not os.access(SSHD, os.X_OK):
            raise SandboxUnavailable(f"{SSHD} not found: install Debian's openssh-server")
        sb = self.host(host)
        address = self.address(host)
        base = os.fspath(directory)
        config = os.path.join(base, f"sshd-{host}.conf")
        with open(config, "w", encoding="utf-8") as f:
            f.write(
                _SSHD_CONFIG.format(
                    host=host,
                    address=address,
                    host_key=host_key,
                    pid_file=os.path.join(base, f"sshd-{host}.pid"),
                    authorized_keys=authorized_keys,
                )
            )
        os.makedirs(SSHD_PRIVSEP_DIR, mode=0o755, exist_ok=True)  # mount point on the host
        mounted = sb.run(["findmnt", "-n", "-o", "FSTYPE", SSHD_PRIVSEP_DIR], check=False)
        if mounted.stdout.strip() != "tmpfs" or mounted.returncode != 0:
            sb.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "netgen-sshd", SSHD_PRIVSEP_DIR])
        sb.run([SSHD, "-t", "-f", config])  # a bad config fails here, with sshd's message
        proc = sb.spawn([SSHD, "-D", "-e", "-f", config])
        deadline = time.monotonic() + _READY_TIMEOUT
        while not sb.connect(None, address, 22, timeout_s=0.5):
            if proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                _, err = proc.communicate(timeout=10)
                raise SandboxCommandError(proc.returncode or 1, proc.args, "", err)
            time.sleep(0.1)
        return proc


def _wiring(host: FleetHost, peers: Sequence[str]) -> str:
    """The script that puts ``host`` on the underlay: its address, up, a route per peer."""
    dev = shlex.quote(host.dev)
    v6 = ip_address(host.address).version == 6
    ip, prefix, nodad = ("ip -6", 128, " nodad") if v6 else ("ip", 32, "")
    lines = [
        "set -eu",
        f"{ip} addr add {host.address}/{prefix} dev {dev}{nodad}",
        f"ip link set dev {dev} up",
        *(f"{ip} route add {peer}/{prefix} dev {dev}" for peer in peers),
    ]
    return "\n".join(lines) + "\n"


def _host_address(name: str) -> str:
    """hN's underlay address: 192.0.2.(10 + N)."""
    return f"192.0.2.{10 + int(name[1:])}"


_CONNECT_FAILED = 3
_CONNECT_SCRIPT = f"""
import socket, sys
host, port, proto, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
try:
    family, stype, sproto, _, addr = socket.getaddrinfo(host, port, type=kind)[0]
    with socket.socket(family, stype, sproto) as s:
        s.settimeout(timeout)
        s.connect(addr)
        if kind == socket.SOCK_DGRAM:
            s.send(b"netgen-probe\\n")
            s.recv(65535)
except OSError:
    sys.exit({_CONNECT_FAILED})
"""


# -- parsing / normalisation helpers ---------------------------------------------------

_Sections = dict[str, tuple[int, str]]


def _unescape_mount(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _parse_state_output(text: str) -> dict[str | None, _Sections]:
    """Split the state driver's output into {netns name (None = root): {section: (rc, text)}}."""
    result: dict[str | None, _Sections] = {}
    current: _Sections | None = None
    section: str | None = None
    buf: list[str] = []
    for line in text.split("\n"):
        if line == "\x1eROOT":
            current = result.setdefault(None, {})
        elif line.startswith("\x1eNS "):
            current = result.setdefault(line[4:], {})
        elif line.startswith("\x1eNSDONE "):
            current = None
        elif line.startswith("\x1eBEGIN "):
            section, buf = line[7:], []
        elif line.startswith("\x1eEND ") and section is not None:
            _, rc = line[5:].rsplit(" ", 1)
            if current is not None:
                current[section] = (int(rc), "\n".join(buf))
            section = None
        elif section is not None:
            buf.append(line)
    return result


def _json_list(sections: _Sections, name: str) -> list[dict[str, Any]]:
    rc, text = sections.get(name, (1, ""))
    if rc != 0 or not text.strip():
        return []
    data = json.loads(text)
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def _strip_comment_lines(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("#")).strip()


def _top_level_blocks(lines: list[str], starts: str, ends: str) -> list[list[str]]:
    """Split lines into blocks from a line starting with ``starts`` to one equal to ``ends``."""
    blocks: list[list[str]] = []
    for line in lines:
        if line.startswith(starts) or not blocks or blocks[-1][-1] == ends:
            blocks.append([])
        blocks[-1].append(line)
    return blocks


def _drop_idle_iptables_tables(text: str) -> str:
    """iptables-save output without tables that hold only ACCEPT built-in chains."""
    blocks = _top_level_blocks(text.splitlines(), "*", "COMMIT")
    kept = [b for b in blocks if not all(_IPT_IDLE_LINE_RE.fullmatch(line.strip()) for line in b)]
    return "\n".join(line for b in kept for line in b).strip()


def _drop_idle_nft_tables(text: str) -> str:
    """`nft list ruleset` without iptables-nft's built-in tables when they hold no rule."""
    kept = [
        b
        for b in _top_level_blocks(text.splitlines(), "table ", "}")
        if any(line.strip() for line in b) and not _idle_nft_table(b)
    ]
    return "\n".join(line for b in kept for line in b).strip()


def _sort_nft_ruleset(text: str) -> str:
    """`nft list ruleset` with its tables, and the chains and sets of each table, sorted.

    nft lists them in creation order, which says nothing about how packets are filtered
    (base chains run by hook and priority, the others by name). The same rules built
    again where a table or a base chain survived (iptables-nft never removes them) come
    out in another order; sorted, the two states compare equal.
    """
    tables = []
    for block in _top_level_blocks(text.splitlines(), "table ", "}"):
        if len(block) < 2 or not block[0].startswith("table ") or block[-1] != "}":
            tables.append(block)
            continue
        items: list[list[str]] = []
        for line in block[1:-1]:
            if not line.strip():
                continue
            if not items or items[-1][-1] == "\t}":
                items.append([])
            items[-1].append(line)
        body = [line for i, item in enumerate(sorted(items)) for line in [""] * (i > 0) + item]
        tables.append([block[0], *body, block[-1]])
    return "\n".join(line for table in sorted(tables) for line in table)


def _idle_nft_table(block: list[str]) -> bool:
    """A table whose every chain is a bare base chain: its hook line and nothing else."""
    if not _NFT_IDLE_TABLE_RE.fullmatch(block[0]) or block[-1] != "}":
        return False
    body = [line.strip() for line in block[1:-1] if line.strip()]
    chains = [body[i : i + 3] for i in range(0, len(body), 3)]
    return all(
        len(c) == 3
        and _NFT_BASE_CHAIN_RE.fullmatch(c[0]) is not None
        and _NFT_ACCEPT_HOOK_RE.fullmatch(c[1]) is not None
        and c[2] == "}"
        for c in chains
    )


def _normalise_ns(ns: str | None, raw: dict[str | None, _Sections]) -> dict[str, Any]:
    """Turn one namespace's raw sections into the comparable form described in state()."""
    sections = raw.get(ns, {})
    if "link" not in sections:
        return {"unreachable": True}
    raw_links = _json_list(sections, "link")
    assign: dict[str, str] = {}
    for line in sections.get("assign", (0, ""))[1].splitlines():
        name, _, value = line.partition(" ")
        assign[name] = value.strip()

    dropped = {
        str(link.get("ifname"))
        for link in raw_links
        if (link.get("ifname"), (link.get("linkinfo") or {}).get("info_kind")) in _FALLBACK_DEVICES
    }
    links: list[dict[str, Any]] = []
    macs: dict[str, str] = {}
    for link in raw_links:
        ifname = str(link.get("ifname"))
        if ifname in dropped:
            continue
        info = link.get("linkinfo") or {}
        kind = info.get("info_kind")
        entry: dict[str, Any] = {
            "ifname": ifname,
            "kind": kind,
            "master": link.get("master"),
            "mtu": link.get("mtu"),
            "up": "UP" in (link.get("flags") or []),
            "ifalias": link.get("ifalias"),
            "link": _resolve_link(ns, link, raw),
        }
        wanted = _KIND_DETAILS.get(str(kind), ())
        data = info.get("info_data") or {}
        details = {k: data[k] for k in wanted if k in data}
        if details:
            entry["details"] = details
        if info.get("info_slave_kind") == "bridge":
            slave = info.get("info_slave_data") or {}
            entry["port"] = {k: slave[k] for k in _BRIDGE_PORT_DETAILS if k in slave}
        links.append(entry)
        mac = link.get("address")
        # addr_assign_type: 0 permanent, 1 random, 2 stolen, 3 set by user.
        if mac and assign.get(ifname) in ("0", "2", "3"):
            macs[ifname] = mac
    links.sort(key=lambda e: e["ifname"])

    addresses: list[dict[str, Any]] = []
    for link in _json_list(sections, "addr"):
        ifname = str(link.get("ifname"))
        if ifname in dropped:
            continue
        for a in link.get("addr_info") or []:
            if a.get("family") == "inet6" and (
                a.get("scope") == "link" or str(a.get("local", "")).startswith("fe80:")
            ):
                continue
            item: dict[str, Any] = {"ifname": ifname, "family": a.get("family")}
            item.update({k: a[k] for k in _ADDR_KEYS if k in a})
            if a.get("label") not in (None, ifname):
                item["label"] = a["label"]
            addresses.append(item)
    addresses.sort(key=_sort_key)

    routes: list[dict[str, Any]] = []
    for family, name in (("inet", "route4"), ("inet6", "route6")):
        for r in _json_list(sections, name):
            table = str(r.get("table", "main"))
            dst = str(r.get("dst", ""))
            if table == "local" or r.get("type") in ("multicast", "local", "broadcast"):
                continue
            if family == "inet6" and (dst.startswith("fe80:") or dst.startswith("ff00:")):
                continue
            if r.get("dev") in dropped:
                continue
            route: dict[str, Any] = {"family": family}
            route.update({k: r[k] for k in _ROUTE_KEYS if k in r})
            route["table"] = table
            flags = sorted(set(r.get("flags") or []) & _ROUTE_FLAGS)
            if flags:
                route["flags"] = flags
            if r.get("nexthops"):
                route["nexthops"] = sorted(
                    (
                        {k: h[k] for k in ("gateway", "dev", "weight") if k in h}
                        for h in r["nexthops"]
                    ),
                    key=_sort_key,
                )
            routes.append(route)
    routes.sort(key=_sort_key)

    result: dict[str, Any] = {
        "links": links,
        "macs": dict(sorted(macs.items())),
        "addresses": addresses,
        "routes": routes,
        "sysctl": {},
    }
    for key, sysctl in (
        ("ip_forward", "net.ipv4.ip_forward"),
        ("ip6_forward", "net.ipv6.conf.all.forwarding"),
    ):
        rc, text = sections.get(key, (1, ""))
        if rc == 0:
            result["sysctl"][sysctl] = text.strip()
    for key in ("iptables", "ip6tables"):
        if key in sections:
            rc, text = sections[key]
            rules = _COUNTERS_RE.sub("[0:0]", _strip_comment_lines(text))
            result[key] = _drop_idle_iptables_tables(rules) if rc == 0 else None
    if "nftables" in sections:
        rc, text = sections["nftables"]
        nft = _NFT_COUNTER_RE.sub("counter packets 0 bytes 0", _strip_comment_lines(text))
        nft = _sort_nft_ruleset(_drop_idle_nft_tables(nft))
        result["nftables"] = nft if rc == 0 else None
    return result


def _sort_key(item: Mapping[str, Any]) -> str:
    return json.dumps(item, sort_keys=True)


def _resolve_link(
    ns: str | None, link: Mapping[str, Any], raw: dict[str | None, _Sections]
) -> dict[str, Any] | None:
    """Name a link's peer/parent as {netns, ifname} without ifindex or netnsid numbers."""
    if link.get("link"):
        return {"netns": ns, "ifname": link["link"]}
    index = link.get("link_index")
    if index is None:
        return None
    nsid = link.get("link_netnsid")
    if nsid is None:
        return {"netns": ns, "ifname": _ifname_at(raw.get(ns, {}), index)}
    # The netns ids known to this namespace map ids to /run/netns names ...
    id_names = sorted(
        str(e["name"]) for e in _json_list(raw.get(ns, {}), "nsids") if e.get("id") == nsid
    )
    for name in id_names:
        if name in raw:
            return {"netns": name, "ifname": _ifname_at(raw[name], index)}
    # ... but the sandbox root has no name: find the namespace whose link points back.
    my_index = link.get("ifindex")
    candidates: list[str | None] = []
    for other, sections in raw.items():
        if other == ns:
            continue
        for peer in _json_list(sections, "link"):
            if (
                peer.get("ifindex") == index
                and peer.get("link_index") == my_index
                and peer.get("link_netnsid") is not None
            ):
                candidates.append(other)
    if len(candidates) == 1:
        return {"netns": candidates[0], "ifname": _ifname_at(raw[candidates[0]], index)}
    return {"netns": "?", "ifname": None}


def _ifname_at(sections: _Sections, index: int) -> str | None:
    for link in _json_list(sections, "link"):
        if link.get("ifindex") == index:
            return str(link.get("ifname"))
    return None
