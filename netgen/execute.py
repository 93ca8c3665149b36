"""Run ops on this host: plan against the live state, run the commands, roll back on failure.

Commands come from `dialects.commands()`, the mapping the rendered script uses,
and run as argv lists (never through a shell). A `Runner` decides what running
means: `RealRunner` (subprocess), `DryRunRunner` (prints each command, changes
nothing) and `RecordingRunner` (for tests: records, can fail at the k-th
command). Guards are read-only probes, evaluated by the real and dry-run
runners alike, so `destroy --dry-run` lists exactly what destroy would run.

All or nothing: when a command fails (or SIGINT/SIGTERM arrives) the ops done
so far are undone in reverse: what this run created is deleted without the
ownership guards (it is ours, even half-built, before its mark was set), and
what it removed is rebuilt from the record. The host-wide lock in the state
dir makes concurrent applies and destroys take turns.

The fast path (the default; `fast=False` or the CLI's `--subprocess` turns it off)
changes how commands run, not which: `fastpath.NetlinkRunner` sends the dialect's
`ip` commands as netlink requests from this process, the snapshot is read with
netlink dumps, and a namespace's deletion takes the host ends of its veths along.
Everything else here (plan, guards, failure handling, rollback) is shared.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Protocol, TextIO

from . import fastpath, netlink, state
from . import model as m
from . import ops as o
from . import plan as p
from .dialects import Cmd, commands, scratch_names
from .errors import HostError

#: Debian packages that provide the commands netgen runs, for the "not found" message.
PACKAGES = {
    "ip": "iproute2",
    "bridge": "iproute2",  # the VXLAN flood entries (bridge fdb)
    "brctl": "bridge-utils",
    "iptables": "iptables",
    "ip6tables": "iptables",
    "iptables-save": "iptables",
    "nft": "nftables",
    "sysctl": "procps",
    "grep": "grep",
}

Progress = Callable[[int, int], None]  # (commands done, commands in all)


# -- runners ------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    returncode: int
    stderr: str = ""


class Runner(Protocol):
    """How commands run. `changes_host` False: netgen's record is left alone too."""

    @property
    def changes_host(self) -> bool: ...

    def probe(self, argv: Sequence[str]) -> bool:
        """Run a read-only guard; True when it exits 0."""
        ...

    def run(self, cmd: Cmd) -> Result: ...


class RealRunner:
    """subprocess, each command in its own session so a terminal's ^C reaches only netgen
    (which then rolls back) and never kills a command halfway."""

    changes_host = True

    def probe(self, argv: Sequence[str]) -> bool:
        try:
            res = subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                check=False,
            )
        except OSError:
            return False
        return res.returncode == 0

    def run(self, cmd: Cmd) -> Result:
        try:
            res = subprocess.run(
                list(cmd.argv),
                input=cmd.stdin,
                stdin=subprocess.DEVNULL if cmd.stdin is None else None,
                capture_output=True,
                text=True,
                start_new_session=True,
                check=False,
            )
        except OSError as exc:
            return Result(127, f"{cmd.argv[0]}: {exc.strerror}")
        return Result(res.returncode, (res.stderr or res.stdout).strip())


class DryRunRunner:
    """Prints each command that would run, one per line; guards are still evaluated
    (`fast`: ownership guards through netlink, as the fast path evaluates them)."""

    changes_host = False

    def __init__(self, out: TextIO | None = None, *, fast: bool = False) -> None:
        self.out = out
        self.fast = fast

    def probe(self, argv: Sequence[str]) -> bool:
        if self.fast and fastpath.parse_alias_guard(argv) is not None:
            prober = fastpath.NetlinkRunner()
            try:
                return prober.probe(argv)
            finally:
                prober.close()
        return RealRunner().probe(argv)

    def run(self, cmd: Cmd) -> Result:
        print(format_command(cmd), file=self.out or sys.stdout, flush=True)
        return Result(0)


class RecordingRunner:
    """For tests: records each command; fails the `fail_at`-th (1-based) without running it.

    With `inner` (e.g. RealRunner()) commands really run; `before(k, cmd)` is called
    before the k-th, to change the world under netgen's feet.
    """

    def __init__(
        self,
        inner: Runner | None = None,
        *,
        fail_at: int | None = None,
        before: Callable[[int, Cmd], None] | None = None,
    ) -> None:
        self.inner = inner
        self.fail_at = fail_at
        self.before = before
        self.commands: list[Cmd] = []

    @property
    def changes_host(self) -> bool:
        return self.inner is not None and self.inner.changes_host

    def release(self) -> None:
        _release(self.inner)

    def probe(self, argv: Sequence[str]) -> bool:
        return self.inner.probe(argv) if self.inner is not None else True

    def run(self, cmd: Cmd) -> Result:
        self.commands.append(cmd)
        k = len(self.commands)
        if self.before is not None:
            self.before(k, cmd)
        if k == self.fail_at:
            return Result(1, f"injected failure at command {k}")
        return self.inner.run(cmd) if self.inner is not None else Result(0)


def format_command(cmd: Cmd) -> str:
    """One line per command; a file's content (stdin) is summarised, not inlined."""
    line = shlex.join(cmd.argv)
    if cmd.stdin is not None:
        line += f"  # stdin: {len(cmd.stdin.encode())} bytes"
    return line


# -- entry points ---------------------------------------------------------------------


@dataclass
class Outcome:
    commands: int  # commands run (or, dry, printed)
    steps: list[p.Step]
    notes: list[str] = field(default_factory=list)


def apply(
    spec: m.Spec,
    ops: list[o.Op],
    *,
    dialect: str = "iproute2",
    firewall: str = "iptables",
    runner: Runner | None = None,
    progress: Progress | None = None,
    fast: bool = True,
) -> Outcome:
    """Make the host match `ops`, removing what the spec's last apply built and no longer needs.

    `fast`: the fast path (see the module docstring); it applies to the iproute2
    dialect only (the brctl dialect's commands are not `ip` requests).
    """
    job = _Job("apply", spec, dialect, firewall, runner, progress, fast)
    return job.converge(ops, extra_old=[])


def destroy(
    spec: m.Spec,
    ops: list[o.Op],
    *,
    dialect: str = "iproute2",
    firewall: str = "iptables",
    runner: Runner | None = None,
    progress: Progress | None = None,
    fast: bool = True,
) -> Outcome:
    """Remove what apply built for this spec (per its record, else per `ops`), and only that."""
    job = _Job("destroy", spec, dialect, firewall, runner, progress, fast)
    return job.converge([], extra_old=ops)


def preview(spec: m.Spec, ops: list[o.Op], *, firewall: str = "iptables") -> p.Plan:
    """What apply would do now, without doing it (for `netgen plan`)."""
    job = _Job("plan", spec, "iproute2", firewall, DryRunRunner(fast=True), None, True)
    _preflight("plan")
    with state.locked(shared=True):
        return job.plan(ops, extra_old=[])[0]


def step_commands(step: p.Step, dialect: str = "iproute2", firewall: str = "iptables") -> list[Cmd]:
    cmds = commands(step.op, dialect, step.firewall or firewall)
    return cmds if step.guarded else [c._replace(guard=None) for c in cmds]


# -- the job ----------------------------------------------------------------------------


@dataclass
class _Started:
    step: p.Step
    created: bool = False  # a command that makes something succeeded: undo it on rollback
    finished: bool = False


class _Failed(Exception):
    def __init__(self, what: str, step: p.Step | None) -> None:
        super().__init__(what)
        self.what = what
        self.step = step


#: How long a destroy waits for the kernel to free deleted namespaces (and the host
#: ends of their veths) before deleting what is left of them one by one.
SETTLE_TIMEOUT = 30.0


class _Job:
    def __init__(
        self,
        verb: str,
        spec: m.Spec,
        dialect: str,
        firewall: str,
        runner: Runner | None,
        progress: Progress | None,
        fast: bool = False,
    ) -> None:
        self.verb = verb
        self.spec = spec
        self.dialect = dialect
        self.firewall = firewall
        self.fast = fast and dialect == "iproute2"
        self.own_runner: fastpath.NetlinkRunner | None = None
        if runner is None:
            if self.fast:
                runner = self.own_runner = fastpath.NetlinkRunner()
            else:
                runner = RealRunner()
        self.runner = runner
        self.progress = progress
        self.owner = spec.name

    def read(
        self,
        netns: set[str],
        paths: set[str],
        probes: list[tuple[str, ...]],
        links_only: bool = False,
    ) -> state.Host:
        """The snapshot; on the fast path each namespace is read with netlink dumps, by
        sockets closed right after (an open one would keep a deleted namespace alive);
        `links_only` (a plan that only removes) skips the namespaces' addresses and routes."""
        if not self.fast:
            return state.read(netns, paths, probes)
        with netlink.Namespaces() as nss:
            reader = fastpath.Reader(nss, netns, links_only)
            return state.read(netns, paths, probes, reader=reader)

    def plan(
        self, desired: list[o.Op], extra_old: list[o.Op]
    ) -> tuple[p.Plan, state.Record | None, list[o.Op]]:
        record = state.load_record(self.owner)
        recorded = record.ops if record is not None else []
        old_firewall = record.firewall if record is not None else None
        if not desired and old_firewall is not None:
            self.firewall = old_firewall  # destroy: with the firewall dialect that built it
        old = _union(recorded, extra_old)
        host = self.read(
            p.namespaces([*desired, *old]),
            p.paths([*desired, *old]),
            p.probes(desired, old, self.firewall, old_firewall),
            links_only=not desired,
        )
        result = p.plan(
            desired,
            old,
            host,
            self.owner,
            crashed=record is not None and not record.complete,
            recorded=recorded,
            firewall=self.firewall,
            old_firewall=old_firewall,
        )
        return result, record, old

    def converge(self, desired: list[o.Op], extra_old: list[o.Op]) -> Outcome:
        try:
            return self._converge(desired, extra_old)
        finally:
            if self.own_runner is not None:
                self.own_runner.close()

    def _converge(self, desired: list[o.Op], extra_old: list[o.Op]) -> Outcome:
        writes = self.runner.changes_host
        _preflight(self.verb)
        with state.locked(shared=not writes), _Signals() as signals:
            planned, record, old = self.plan(desired, extra_old)
            if planned.refusals:
                raise HostError(
                    f"{self.verb} refused, nothing was changed:\n"
                    + "\n".join(f"  {r}" for r in planned.refusals)
                )
            steps, absorbed = planned.steps, fastpath.Absorbed()
            if self.fast:
                busy = fastpath.pinned(fastpath.deleted_netns(steps))
                steps, absorbed = fastpath.absorb_veths(steps, busy)
            batches = [(s, step_commands(s, self.dialect, self.firewall)) for s in steps]
            _require_commands(
                argv[0] for _, cmds in batches for c in cmds for argv in (c.argv, c.guard) if argv
            )
            final = self._record(desired, complete=True)
            if not batches:
                if writes:
                    self._save(final if desired else None, record)
                return Outcome(0, [], planned.notes)
            if signals.caught:
                raise HostError(f"{self.verb} interrupted by {signals.name}; nothing was changed")
            if writes:  # a crash from here on leaves a record naming everything involved
                state.save_record(self._record(_union(old, desired), complete=False))
            started: list[_Started] = []
            try:
                if absorbed and writes:
                    # the kernel frees the deleted namespaces (and the ports they take off
                    # a bridge) before the steps after the last of them, as if the veths
                    # had been deleted one by one first
                    last = max(absorbed.by) + 1
                    total = sum(len(cmds) for _, cmds in batches)
                    count = self._run(batches[:last], started, signals, 0, total)
                    count += self._settle(absorbed, started, signals, count)
                    count += self._run(batches[last:], started, signals, count, total)
                else:
                    count = self._run(batches, started, signals)
            except _Failed as failure:
                if not writes:  # nothing was changed: nothing to roll back
                    raise HostError(f"{self.verb} of spec {self.owner!r}: {failure.what}") from None
                _release(self.runner)
                if absorbed:  # rebuilding needs the names the kernel is still freeing
                    fastpath.wait_gone(self._taken_along(absorbed, started)[0], SETTLE_TIMEOUT)
                problems = self._rollback(started)
                if writes and not problems:
                    self._save(record, None)
                raise HostError(self._failure_message(failure, problems)) from None
            if writes:
                self._save(final if desired else None, None)
            return Outcome(count, planned.steps, planned.notes)

    def _record(self, ops: list[o.Op], *, complete: bool) -> state.Record:
        return state.Record(
            self.owner,
            os.path.abspath(self.spec.file),
            self.spec.sha256,
            self.dialect,
            self.firewall,
            complete,
            list(ops),
        )

    def _save(self, record: state.Record | None, current: state.Record | None) -> None:
        if record is None:
            state.remove_record(self.owner)
        elif record != current:
            state.save_record(record)

    def _taken_along(
        self, absorbed: fastpath.Absorbed, started: list[_Started]
    ) -> tuple[set[str], list[p.Step]]:
        """Host veth ends whose namespace was deleted (the kernel frees them), and the
        removal steps of those whose namespace was not (its guard said not ours)."""
        gone: set[str] = set()
        stay: list[p.Step] = []
        for i, steps in absorbed.by.items():
            deleted = i < len(started) and started[i].created
            for step in steps:
                if deleted:
                    gone.add(_link_name(step.op))
                else:
                    stay.append(step)
        return gone, stay

    def _settle(
        self, absorbed: fastpath.Absorbed, started: list[_Started], signals: _Signals, done: int
    ) -> int:
        """Wait until the kernel has freed the deleted namespaces' veths; remove the
        ones it did not free (a namespace kept alive by a process, or left alone) as
        the slow path does, one by one under their ownership guard."""
        gone, stay = self._taken_along(absorbed, started)
        _release(self.runner)
        left = fastpath.wait_gone(gone, SETTLE_TIMEOUT)
        stay += [s for steps in absorbed.by.values() for s in steps if _link_name(s.op) in left]
        if not stay:
            return 0
        batches = [(s, step_commands(s, self.dialect, self.firewall)) for s in stay]
        return self._run(batches, started, signals, done, done)  # extra: the bar stays full

    def _run(
        self,
        batches: list[tuple[p.Step, list[Cmd]]],
        started: list[_Started],
        signals: _Signals,
        done: int = 0,
        total: int | None = None,
    ) -> int:
        """Run the batches in order; returns the number of commands. `done` and `total`
        place them in a longer run, for the progress bar."""
        count = sum(len(cmds) for _, cmds in batches)
        total = count if total is None else total
        for step, cmds in batches:
            entry = _Started(step)
            started.append(entry)
            for i, cmd in enumerate(cmds):
                if signals.caught:
                    raise _Failed(f"interrupted by {signals.name}", None)
                if cmd.guard is None or self.runner.probe(cmd.guard):
                    result = self.runner.run(cmd)
                    if result.returncode != 0:
                        detail = result.stderr or "(no message)"
                        raise _Failed(
                            f"command failed: {shlex.join(cmd.argv)}\n"
                            f"  exit code {result.returncode}: {detail}",
                            step,
                        )
                    entry.created = entry.created or not _prepares(cmd, cmds[i + 1 :])
                done += 1
                if self.progress is not None:
                    self.progress(min(done, total), total)
            entry.finished = True
        return count

    # -- rollback ---------------------------------------------------------------------

    def _rollback(self, started: list[_Started]) -> list[str]:
        """Undo what this run did; returns what could not be undone (empty: all of it)."""
        undone: list[o.Op] = []
        restore: list[o.Op] = []
        for entry in reversed(started):
            step = entry.step
            if step.action == "+" and entry.created:
                if step.op.inverse() is not None:
                    self._undo(step.op)
                    undone.append(step.op)
            elif step.action == "-" and (entry.created or entry.finished):
                restore += step.restore  # removals ran in reverse: this rebuilds in order
        if not undone and not restore:
            return []
        ops = [*undone, *restore]
        probes = p.probes(ops, [], self.firewall)
        host = self.read(p.namespaces(ops), p.paths(ops), probes)
        problems = [
            f"still there: {what}"
            for what in p.leftovers(undone, host, self.owner, firewall=self.firewall)
        ]
        if restore:
            again = p.plan(restore, [], host, self.owner, recorded=restore, firewall=self.firewall)
            problems += [f"cannot rebuild: {r}" for r in again.refusals]
            for step in again.steps:
                for cmd in step_commands(step, self.dialect, self.firewall):
                    if cmd.guard is not None and not self.runner.probe(cmd.guard):
                        continue
                    result = self.runner.run(cmd)
                    if result.returncode != 0:
                        problems.append(
                            f"cannot rebuild {p.describe(step.op)}: {shlex.join(cmd.argv)}: "
                            f"{result.stderr}"
                        )
                        return problems
        return problems

    def _undo(self, op: o.Op) -> None:
        """Remove what a "+" step created, without the ownership guard, tolerating "gone".

        A veth is deleted through any one of its names (the pair goes with it): the
        brctl dialect's temporary names first, so a name that was in the way is
        never mistaken for ours.
        """
        if isinstance(op, o.AddVeth):
            temp = scratch_names(op)
            candidates = [
                o.DelVeth(name, ns, op.owner)
                for name, places in ((temp[0], (None, op.netns)), (temp[1], (None, op.peer_netns)))
                for ns in dict.fromkeys(places)
            ]
            candidates += [
                o.DelVeth(op.name, op.netns, op.owner),
                o.DelVeth(op.peer, op.peer_netns, op.owner),
            ]
            for candidate in candidates:
                if self._run_quietly(candidate):
                    return
            return
        inverse = op.inverse()
        if inverse is not None:
            self._run_quietly(inverse)

    def _run_quietly(self, op: o.Op) -> bool:
        ok = True
        for cmd in commands(op, self.dialect, self.firewall):
            ok = self.runner.run(cmd._replace(guard=None)).returncode == 0 and ok
        return ok

    def _failure_message(self, failure: _Failed, problems: list[str]) -> str:
        lines = [f"{self.verb} of spec {self.owner!r} failed: {failure.what}"]
        if failure.step is not None:
            op = failure.step.undoes if failure.step.action == "-" else failure.step.op
            loc = (op or failure.step.op).loc
            if loc.line:
                lines.append(f"  from {loc.file}:{loc.line}:{loc.col} {loc.path}")
        if problems:
            lines.append("rollback incomplete:")
            lines += [f"  {problem}" for problem in problems]
            lines.append(
                f"netgen's record keeps what this run touched: run `netgen destroy` "
                f"(or apply again) on {self.spec.file} to clean up"
            )
        else:
            lines.append("rolled back: the host is as it was before")
        return "\n".join(lines)


def _release(runner: Runner | None) -> None:
    """Let the kernel free the namespaces the fast path deleted (it holds them until
    asked, so that it frees them all in one batch)."""
    if isinstance(runner, (fastpath.NetlinkRunner, RecordingRunner)):
        runner.release()


def _link_name(op: o.Op) -> str:
    return op.name if isinstance(op, o.DelVeth) else ""


def _prepares(cmd: Cmd, rest: list[Cmd]) -> bool:
    """A `mkdir -p` ahead of an op's real work (AdoptNetns: /var/run/netns) only makes
    sure a directory is there: if what follows fails, there is nothing to undo."""
    return cmd.argv[:2] == ("mkdir", "-p") and bool(rest)


def _union(first: Iterable[o.Op], second: Iterable[o.Op]) -> list[o.Op]:
    out = list(first)
    seen = set(out)
    out += [op for op in second if op not in seen]
    return out


def _preflight(verb: str) -> None:
    """Before the state dir or the host is touched at all."""
    _require_root(verb)
    _require_commands(["ip"])


def _require_root(verb: str) -> None:
    if os.geteuid() != 0:
        raise HostError(
            f"netgen {verb} must run as root: it reads and changes network namespaces "
            f"and links (try: sudo netgen {verb} ...)"
        )


def _require_commands(names: Iterable[str]) -> None:
    missing = sorted(n for n in set(names) if shutil.which(n) is None)
    if missing:
        raise HostError(
            "required commands not found: "
            + ", ".join(
                f"{n} (install the Debian package {PACKAGES.get(n, 'coreutils')})" for n in missing
            )
        )


class _Signals:
    """SIGINT/SIGTERM set a flag the executor checks between commands, so a command
    never stops halfway and the rollback runs to the end."""

    def __init__(self) -> None:
        self.caught: int | None = None
        self._saved: dict[int, object] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.caught).name if self.caught is not None else "?"

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.caught = signum

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
