"""Group a dialect's commands into `ip -batch` runs: the plan behind `netgen render --batch`.

Why: a plain script starts one process per command, and each `ip -n NS` or `ip netns
exec NS` copies the whole mount table (one bind mount per namespace), so the cost per
container grows with the number of containers. A batch script starts one `ip -batch`
for the host and one `nsenter --net=/var/run/netns/NS ip -batch` per namespace (nsenter
enters only the network namespace: constant cost), several namespaces at a time.

Nothing here decides command syntax. A batch line is exactly the argv that
`dialects.commands()` gives, without the prefix that picks the namespace (`ip`,
`ip -n NS`, `ip netns exec NS ip`); any other command (brctl, install, iptables, nft)
runs on its own, as in the plain script.

Setup (`stages`): each command runs in one context, the host or a namespace, and
touches resources, (namespace, device) pairs read off its `ip` line, or a whole
namespace when the line names no device. Commands that share a resource keep their
order: within a stage the host's commands run first, then every namespace's batch in
parallel, so a command that depends on another namespace's (a veth created from inside
one namespace into another) goes to a later stage. Commands that share nothing may
run in any order, which keeps a chain of point-to-point links at two stages.

A stage with more than `PART` namespaces runs in parts (`parts`): part k's host commands
are those up to the last one that part k's namespaces need, and they run in the
background while the namespaces of part k-1 are set up. A namespace's job needs nothing
from a later part's host commands, so the two never touch the same thing. Why, measured
at 3,000 containers (the time per container at 3,000 went from 1.28x to 1.04x that at
100): one host `ip` for everything ran alone for 40 % of the script, the other CPU idle;
reading its 1 MB heredoc grew the script's shell by 4 MB, which every later fork (one a
namespace) copied; and every container's eth0 came up only after all the host's
commands, unlike `netgen apply`, and the kernel's link-watch worker (it holds the lock
every `ip` needs) spent 20 times as long as under apply going through links waiting down
(perf).

Teardown (`teardown`): deleting a namespace removes every link in it, and the host
end of each of its veths, in one step of the kernel's, where deleting the links one by
one costs a lock round and an RCU wait each. So the namespaces that carry the spec's
mark go first, in one batch; then everything else runs as in the plain teardown, each
command under its guard.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Generic, TypeVar

from . import ops as o
from .dialects import Cmd, sections
from .model import Loc

#: A (namespace or None for the host, device or None for all of it) a command touches.
Resource = tuple[str | None, str | None]
ANY = None
V = TypeVar("V")

_HOST = "\0host"  # the host as a context key: never a namespace name


@dataclass
class Lines:
    """Batch lines (argv without its prefix) under the spec line that asked for them."""

    comment: str
    lines: list[tuple[str, ...]] = field(default_factory=list)


@dataclass
class Batch:
    """One `ip [OPTS] -batch`: the host's (netns None) or one namespace's, run with nsenter."""

    netns: str | None
    opts: tuple[str, ...] = ()
    groups: list[Lines] = field(default_factory=list)

    def add(self, comment: str, line: tuple[str, ...]) -> None:
        if not self.groups or self.groups[-1].comment != comment:
            self.groups.append(Lines(comment))
        self.groups[-1].lines.append(line)

    @property
    def text(self) -> str:
        """The heredoc's content, to pick a delimiter no line equals."""
        return "\n".join(
            f"# {g.comment}\n" + "\n".join(batch_line(line) for line in g.lines)
            for g in self.groups
        )


@dataclass(frozen=True)
class Single:
    """A command run on its own, exactly as the plain script runs it."""

    comment: str
    cmd: Cmd


@dataclass
class Job:
    """What runs for one namespace in a stage, in order: usually one batch."""

    netns: str
    items: list[Batch | Single] = field(default_factory=list)


@dataclass
class Part:
    """Host commands, in order, then the jobs of the namespaces that need them."""

    host: list[Batch | Single] = field(default_factory=list)
    netns: list[Job] = field(default_factory=list)


@dataclass
class Stage:
    """The host's commands, in order, then every namespace's job, in parallel; in parts
    when there are many namespaces (part k's host commands run alongside the jobs of
    part k-1, see the module docstring)."""

    parts: list[Part] = field(default_factory=list)

    @property
    def host(self) -> list[Batch | Single]:
        return [item for part in self.parts for item in part.host]

    @property
    def netns(self) -> list[Job]:
        return [job for part in self.parts for job in part.netns]


#: Namespaces a part of a stage sets up (at most, unless they need no host command in
#: between). Measured at 100 and 3,000 containers: 32 and 64 alike, 25 with a wait
#: after each part slower; the host's part per 32 namespaces is one `ip` more.
PART = 32


@dataclass  # not frozen: a frozen dataclass is 4x slower to make, and there is one a command
class _Step:
    index: int
    comment: str
    cmd: Cmd
    netns: str | None
    opts: tuple[str, ...]
    line: tuple[str, ...] | None
    stage: int
    needs: int  # a namespace's command: the last host command it needs (its index), or -1


# -- the ip -batch line and its quoting ---------------------------------------------------


# Printable ASCII but blanks, quotes, backslash and `#`: written as is.
_BARE = re.compile(r"[!$%&()*+,\-./0-9:;<=>?@A-Z\[\]^_`a-z{|}~]+")


class BatchSyntaxError(ValueError):
    """A token that `ip -batch` cannot read back as itself."""


def batch_token(token: str) -> str:
    """`token` as ip's batch reader (lib/utils.c: getcmdline, makeargs) reads it back.

    That reader cuts a line at the first `#`, even inside quotes; joins a line ending
    in a backslash to the next; splits on space, tab, CR and LF; and takes a word that
    starts with `'` or `"` up to the next same quote, with no escapes. So a token with
    `#` or a control character (tab, line break) is refused (never the case for a
    validated name), and one with spaces, quotes or a backslash is quoted with the
    quote it does not contain.
    """
    if _BARE.fullmatch(token):
        return token  # the common case (names, addresses, marks), checked in one go
    if "#" in token or not token.isprintable():
        raise BatchSyntaxError(f"ip -batch cannot carry the token {token!r}")
    if token and not any(ch in " '\"\\" for ch in token):
        return token
    for quote in ('"', "'"):
        if quote not in token:
            return f"{quote}{token}{quote}"
    raise BatchSyntaxError(f"ip -batch cannot quote a token with both quotes: {token!r}")


def batch_line(args: tuple[str, ...] | list[str]) -> str:
    return " ".join(map(_batch_token, args))


# A script repeats the same words (link, set, dev, every name) thousands of times, and
# each line is written twice (the heredoc, and its text to pick the delimiter).
_batch_token = cache(batch_token)


#: Options of `ip` that may stand for a whole batch (`ip -6 -batch -`).
BATCH_OPTIONS = ("-4", "-6")


def split(argv: tuple[str, ...]) -> tuple[str | None, tuple[str, ...], tuple[str, ...] | None]:
    """(the namespace a command runs in, None for the host; the options its batch takes;
    its batch line, or None if it runs on its own).

    The line is argv without `ip [-n NS] [-4|-6]` or `ip netns exec NS ip [-4|-6]`, the
    options going to the batch's `ip`. A command that is not such an `ip` (brctl,
    iptables, sysctl, an `ip` with other options) has no line; it runs in the namespace
    an `ip -n NS` or `ip netns exec NS` in its argv names (a wait on `ip -n NS ...`),
    else on the host.
    """
    if argv[:1] != ("ip",):
        return _named_in(argv), (), None
    if argv[1:3] == ("netns", "exec") and len(argv) >= 5:
        netns, inner = argv[3], argv[4:]
        if inner[0] != "ip":
            return netns, (), None
        _, opts, line = _ip(inner[1:], netns_option=False)
        return netns, opts, line
    return _ip(argv[1:], netns_option=True)


def _ip(
    args: tuple[str, ...], netns_option: bool
) -> tuple[str | None, tuple[str, ...], tuple[str, ...] | None]:
    netns: str | None = None
    opts: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] == "-n" and netns_option and i + 1 < len(args):
            netns = args[i + 1]
            i += 2
        elif args[i] in BATCH_OPTIONS:
            opts.append(args[i])
            i += 1
        else:
            return netns, (), None  # -j, -force, ...: belong to one process, not a line
    line = args[i:]
    if not line:
        return netns, (), None
    try:
        batch_line(line)
    except BatchSyntaxError:
        return netns, (), None
    return netns, tuple(opts), line


def _named_in(argv: tuple[str, ...]) -> str | None:
    """The namespace of the first `ip -n NS` or `ip netns exec NS` inside argv."""
    for i, word in enumerate(argv):
        if word != "ip":
            continue
        if argv[i + 1 : i + 2] == ("-n",) and i + 2 < len(argv):
            return argv[i + 2]
        if argv[i + 1 : i + 3] == ("netns", "exec") and i + 3 < len(argv):
            return argv[i + 3]
    return None


# -- what a command touches ----------------------------------------------------------------

_TAKES_DEVICE = ("name", "dev", "master")
_TAKES_VALUE = (
    "mtu",
    "type",
    "address",
    "alias",
    "addrgenmode",
    "mcast_snooping",
    "group",
    "txqueuelen",
    "broadcast",
)
_FLAGS = ("up", "down")
_TAKES_ARGUMENT = frozenset((*_TAKES_DEVICE, "netns", *_TAKES_VALUE))  # word then its value


def touches(
    netns: str | None, line: tuple[str, ...] | None, op: o.Op, argv: tuple[str, ...] = ()
) -> set[Resource]:
    """The resources a command reads or changes; more than it needs is safe, fewer is not.

    An `ip` line names its devices (`name`, `dev`, `master`, the bare device of
    `link set X netns NS`) and the namespaces it reaches (`netns NS`); `sysctl -w
    net.ipv6.conf.DEV.KEY=VALUE` names its device. Anything else, or another command,
    touches every device of its context and of the namespaces its op is about.
    """
    if line is None:
        devices = _sysctl_devices(argv)
        if devices:
            return {(netns, dev) for dev in devices}
        return {(netns, ANY)} | {(n, ANY) for n in _op_netns(op)}
    if line[0] == "netns" and len(line) == 3 and line[1] in ("add", "delete", "del"):
        return {(line[2], ANY)}
    if line[0] == "link" and len(line) > 2 and line[1] in ("add", "set", "delete", "del"):
        found = _link_devices(netns, line[1], line[2:])
        if found is not None:
            return found
    if line[0] in ("addr", "address", "route") and "dev" in line[:-1]:
        return {(netns, line[line.index("dev") + 1])}
    return {(netns, ANY)} | {(n, ANY) for n in _named_netns(line)}


def _link_devices(netns: str | None, verb: str, args: tuple[str, ...]) -> set[Resource] | None:
    """Devices of `link add/set/delete` per side (before/after `peer`); None: unsure."""
    sides: list[tuple[list[str], list[str]]] = [([], [])]  # per side: devices, namespaces
    out: set[Resource] = set()
    i = 0
    if verb == "set" and args and args[0] not in _TAKES_DEVICE:
        sides[0][0].append(args[0])  # `link set X netns NS`: the device comes bare
        i = 1
    while i < len(args):
        word = args[i]
        if word == "peer" and verb == "add":
            sides.append(([], []))
            i += 1
        elif word in _TAKES_ARGUMENT and i + 1 < len(args):
            value = args[i + 1]
            if word == "master":
                out.add((netns, value))
            elif word == "netns":
                sides[-1][1].append(value)
            elif word in ("name", "dev"):
                sides[-1][0].append(value)
            i += 2
        elif word in _FLAGS:
            i += 1
        else:
            return None
    for devices, namespaces in sides:
        # `link add ... netns NS` creates the side in NS; `link set X netns NS` moves X
        # there, so it is in both.
        where = namespaces if verb == "add" and namespaces else [netns, *namespaces]
        out |= {(ns, dev) for ns in where for dev in devices}
    return out


_SYSCTL_CONF = re.compile(r"net\.ipv[46]\.conf\.([^.=]+)\.[^=]+=.*")


def _sysctl_devices(argv: tuple[str, ...]) -> set[str] | None:
    """The devices of a `[ip netns exec NS] sysctl [-q] -w net.ipv6.conf.DEV.KEY=V ...`."""
    if "sysctl" not in argv:
        return None
    devices = set()
    for word in argv[argv.index("sysctl") + 1 :]:
        if word.startswith("-"):
            continue
        m = _SYSCTL_CONF.fullmatch(word)
        if m is None or m[1] in ("all", "default"):
            return None
        devices.add(m[1].replace("/", "."))  # sysctl writes a dot in a name as a slash
    return devices


def _named_netns(line: tuple[str, ...]) -> set[str]:
    return {line[i + 1] for i, word in enumerate(line[:-1]) if word == "netns"}


def _op_netns(op: o.Op) -> set[str]:
    """The namespaces an op is about (its `netns` and `peer_netns`, the name of one it
    makes), for commands whose argv does not say."""
    names = {getattr(op, f, None) for f in ("netns", "peer_netns")}
    if isinstance(op, o.AddNetns | o.AdoptNetns):
        names.add(op.name)
    return {n for n in names if isinstance(n, str)}


# -- setup: stages --------------------------------------------------------------------------


def stages(ops: list[o.Op], dialect: str = "iproute2", firewall: str = "iptables") -> list[Stage]:
    """The setup ops' commands as stages: the host's in order, then the namespaces' batches.

    A command goes to the earliest stage that runs it after every earlier command it
    shares a resource with: later in the same stage if that one ran on the host or in
    the same context, in the next stage if it ran in another namespace (or if this one
    runs on the host after a namespace's). Host commands after the last namespace
    command (the firewall, sysctls) go last, where the plain script has them.
    """
    steps: list[_Step] = []
    clock = _Clock()
    host = _LastTouch()
    last: Loc | str | None = None  # most ops share their `where` with the op before
    comment = ""
    for op in ops:
        for where, cmds in sections(op, dialect, firewall):
            if where is not last:
                comment, last = describe(where), where
            for cmd in cmds:
                netns, opts, line = split(cmd.argv)
                if cmd.stdin is not None or cmd.guard is not None:
                    line = None  # a heredoc or an `if`: the plain script's form
                here = _HOST if netns is None else netns
                res = touches(netns, line, op, cmd.argv)
                stage = clock.earliest(here, res)
                clock.mark(here, res, stage)
                # Only an earlier host command can share a resource with a namespace's in
                # the same stage: a later one goes to a later stage.
                if netns is None:
                    host.mark(len(steps), res)
                    needs = -1
                else:
                    needs = host.of(res)
                steps.append(_Step(len(steps), comment, cmd, netns, opts, line, stage, needs))
    last_in_netns = max((s.index for s in steps if s.netns is not None), default=-1)
    final = max((s.stage for s in steps), default=0) + 1
    steps = [s if s.netns is not None or s.index < last_in_netns else _at(s, final) for s in steps]
    return _layout(steps)


class _ByResource(Generic[V]):
    """A value kept per resource, and the one rule of which resources share: a device
    with itself and with the whole of its namespace."""

    def __init__(self) -> None:
        self.device: dict[Resource, V] = {}
        self.whole: dict[str | None, V] = {}  # the whole namespace
        self.any_device: dict[str | None, V] = {}  # any one device in it

    def sharing(self, res: set[Resource]) -> Iterator[V]:
        """The values kept for every resource that shares one of `res`."""
        for ns, dev in res:
            whole = self.whole.get(ns)
            part = self.any_device.get(ns) if dev is ANY else self.device.get((ns, dev))
            if whole is not None:
                yield whole
            if part is not None:
                yield part

    def update(self, res: set[Resource], change: Callable[[V | None], V]) -> None:
        """Set the value of each of `res` (and of its namespace's any-device entry) to
        `change` of what it was."""
        for ns, dev in res:
            if dev is ANY:
                self.whole[ns] = change(self.whole.get(ns))
            else:
                self.device[(ns, dev)] = change(self.device.get((ns, dev)))
                self.any_device[ns] = change(self.any_device.get(ns))


class _Clock(_ByResource[dict[str, int]]):
    """The latest stage, per context, that touched each resource."""

    def earliest(self, here: str, res: set[Resource]) -> int:
        stage = 1
        for table in self.sharing(res):
            for ctx, at in table.items():
                stage = max(stage, at + _after(ctx, here))
        return stage

    def mark(self, here: str, res: set[Resource], stage: int) -> None:
        def later(table: dict[str, int] | None) -> dict[str, int]:
            table = {} if table is None else table
            if table.get(here, 0) < stage:
                table[here] = stage
            return table

        self.update(res, later)


def _after(earlier: str, later: str) -> int:
    """0: `later` may run in the same stage as `earlier`; 1: it needs the next one."""
    return 0 if earlier == later or earlier == _HOST else 1


def _at(step: _Step, stage: int) -> _Step:
    return replace(step, stage=stage)


def _layout(steps: list[_Step]) -> list[Stage]:
    """Stages in order, skipping empty ones; within one, commands in spec order."""
    by_stage: dict[int, list[_Step]] = {}
    for s in steps:
        by_stage.setdefault(s.stage, []).append(s)
    return [Stage(_parts(by_stage[number])) for number in sorted(by_stage)]


def _parts(steps: list[_Step]) -> list[Part]:
    """One stage's steps as parts: namespaces `PART` at a time, in order, each part with
    the host commands up to the last one its namespaces need and the rest of that spec
    line's (the last part: all the rest). A part whose namespaces need no further host
    command joins the one before.

    Safe as laid out in the template: a part's host commands run after the host
    commands of every part before, and alongside (or after) the jobs of those parts,
    none of which touches anything they touch: a job's part ends after the last host
    command sharing a resource with it."""
    host: list[_Step] = []
    jobs: dict[str, Job] = {}
    needs: dict[str, int] = {}  # per job: the last host command (by index) it needs
    for s in steps:
        if s.netns is None:
            host.append(s)
            continue
        job = jobs.get(s.netns)
        if job is None:
            job = jobs[s.netns] = Job(s.netns)
        _append(job.items, s)
        if s.needs > needs.get(s.netns, -1):
            needs[s.netns] = s.needs
    at = [s.index for s in host]  # a step's index -> (bisect) how many of `host` run up to it
    cuts: list[tuple[int, list[Job]]] = []  # per part: where its host commands end, its jobs
    end = 0
    ordered = list(jobs.values())
    for i in range(0, len(ordered), PART):
        group = ordered[i : i + PART]
        end = max(end, bisect_right(at, max(needs.get(job.netns, -1) for job in group)))
        while 0 < end < len(host) and host[end].comment == host[end - 1].comment:
            end += 1  # the rest of that spec line's host commands too, for the reader
        if cuts and cuts[-1][0] == end:
            cuts[-1][1].extend(group)
        else:
            cuts.append((end, group))
    if not cuts:
        cuts.append((len(host), []))
    cuts[-1] = (len(host), cuts[-1][1])
    out: list[Part] = []
    start = 0
    for end, group in cuts:
        part = Part(netns=group)
        for s in host[start:end]:
            _append(part.host, s)
        out.append(part)
        start = end
    return out


class _LastTouch(_ByResource[int]):
    """Which command (by index) last touched each resource."""

    def mark(self, index: int, res: set[Resource]) -> None:
        self.update(res, lambda _: index)

    def of(self, res: set[Resource]) -> int:
        """The last command sharing any of `res`, -1 if none did."""
        return max(self.sharing(res), default=-1)


def _append(items: list[Batch | Single], step: _Step) -> None:
    """Add a step to the last batch if it is one with the same options, else start one."""
    if step.line is None:
        items.append(Single(step.comment, step.cmd))
        return
    tail = items[-1] if items else None
    if not isinstance(tail, Batch) or tail.opts != step.opts:
        tail = Batch(step.netns, step.opts)
        items.append(tail)
    tail.add(step.comment, step.line)


def describe(where: Loc | str) -> str:
    """The comment naming the spec line (as the plain script writes it)."""
    if isinstance(where, str):
        return where
    return f"{where.file}:{where.line} {where.path}" if where.line else "netgen"


# -- teardown ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drop:
    """A namespace deleted in the one batch if `guard` passes; `host_links` go with it."""

    comment: str
    netns: str
    guard: tuple[str, ...]
    line: tuple[str, ...]
    host_links: tuple[str, ...]


@dataclass(frozen=True)
class Kept:
    """A command deleting a veth between namespaces, run (before the batch) unless both
    are deleted: a veth whose other end stays must go now, not whenever the kernel
    gets to the deleted namespace."""

    comment: str
    netns: tuple[str, ...]
    cmd: Cmd


@dataclass
class Teardown:
    drops: list[Drop] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    rest: list[tuple[str, list[Cmd]]] = field(default_factory=list)


def teardown(ops: list[o.Op], dialect: str = "iproute2", firewall: str = "iptables") -> Teardown:
    """Plan the removal of what `ops` (the setup ops) build; see the module docstring.

    The setup ops, not their inverses, because deleting by namespace needs to know
    which host link is the end of a veth into which namespace.
    """
    host_links: dict[str, list[str]] = {}
    peer_netns: dict[tuple[str | None, str], str | None] = {}
    for op in ops:
        if isinstance(op, o.AddVeth):
            peer_netns[(op.netns, op.name)] = op.peer_netns
            for end, here, there in (
                (op.name, op.netns, op.peer_netns),
                (op.peer, op.peer_netns, op.netns),
            ):
                if here is None and there is not None:
                    host_links.setdefault(there, []).append(end)
    drops: list[Drop] = []
    others: list[Kept | tuple[str, Cmd]] = []  # in teardown order
    for op in o.teardown(ops):
        for where, cmds in sections(op, dialect, firewall):
            comment = describe(where)
            drop = _drop(op, cmds, comment, host_links)
            if drop is not None:
                drops.append(drop)
            elif isinstance(op, o.DelVeth) and op.netns is not None:
                ends = (op.netns, peer_netns.get((op.netns, op.name)))
                netns = tuple(n for n in ends if n is not None)
                others += [Kept(comment, netns, fast_guard(c)) for c in cmds]
            else:
                others += [(comment, fast_guard(c)) for c in cmds]
    if not drops:  # no namespace goes: every link is deleted in teardown order
        return Teardown(
            rest=_grouped([(x.comment, x.cmd) if isinstance(x, Kept) else x for x in others])
        )
    kept = [x for x in others if isinstance(x, Kept)]
    return Teardown(drops, kept, _grouped([x for x in others if not isinstance(x, Kept)]))


def _grouped(cmds: list[tuple[str, Cmd]]) -> list[tuple[str, list[Cmd]]]:
    out: list[tuple[str, list[Cmd]]] = []
    for comment, cmd in cmds:
        if out and out[-1][0] == comment:
            out[-1][1].append(cmd)
        else:
            out.append((comment, [cmd]))
    return out


def _drop(op: o.Op, cmds: list[Cmd], comment: str, host_links: dict[str, list[str]]) -> Drop | None:
    if not isinstance(op, o.DelNetns) or len(cmds) != 1:
        return None
    (cmd,) = cmds
    netns, opts, line = split(cmd.argv)
    if netns is not None or opts or line is None or cmd.guard is None or cmd.stdin is not None:
        return None
    guard = fast_guard(cmd).guard
    assert guard is not None
    return Drop(comment, op.name, guard, line, tuple(host_links.get(op.name, ())))


def fast_guard(cmd: Cmd) -> Cmd:
    """`cmd` with its ownership check done without a process (or mount namespace) per object.

    The dialects check a mark with `grep -qsxF MARK /sys/class/net/DEV/ifalias`, in a
    namespace through `ip netns exec`, whose cost grows with the number of namespaces.
    The script's helpers do the same check: `netgen_marked FILE MARK` reads the file in
    bash; `netgen_marked_in NETNS DEV MARK` reads DEV's alias through `nsenter` and
    `ip -j`. Both compare the whole line, as -x does (and, unlike grep's regex, take a
    `.` in the mark literally).
    """
    guard = cmd.guard
    if guard is None:
        return cmd
    match guard:
        case ("grep", "-qsxF", mark, path) if _alias_dev(path):
            new: tuple[str, ...] = ("netgen_marked", path, mark)
        case ("ip", "netns", "exec", netns, "grep", "-qsxF", mark, path) if _alias_dev(path):
            new = ("netgen_marked_in", netns, _alias_dev(path), mark)
        case _:
            return cmd
    return cmd._replace(guard=new)


def _alias_dev(path: str) -> str:
    """DEV of /sys/class/net/DEV/ifalias, or ''."""
    head, tail = "/sys/class/net/", "/ifalias"
    if path.startswith(head) and path.endswith(tail):
        dev = path[len(head) : -len(tail)]
        if dev and "/" not in dev:
            return dev
    return ""
