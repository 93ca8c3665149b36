"""The command line: wires the pipeline stages together, nothing more.

Only the product (a script, JSON) goes to stdout; diagnostics go to stderr.
Exit codes: 0 done, 1 the host refused a change (rolled back), 2 the spec or
the command line is wrong (nothing rendered or run).
"""

from __future__ import annotations

import gc
import json
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

# Only what `render` and `validate` need is imported up front: the other commands import
# their modules (netlink, the sandbox, ...) when they run, so rendering starts sooner.
from . import __version__, batch, check, golden, lower, model, ops, render, spec
from .errors import HostError, NetgenError, SpecError, UsageError

if TYPE_CHECKING:
    from . import execute
    from .fleettrial import FleetTrial

app = typer.Typer(
    name="netgen",
    help=(
        "Compile a YAML container-network spec into the Linux commands that build it "
        "(bridges, veth pairs, namespaces, routes), as an auditable bash script or run "
        "directly.\n\nExamples:\n\n"
        "  netgen validate specs/walkthrough.yaml\n\n"
        "  netgen render specs/walkthrough.yaml -o setup.sh\n\n"
        "  netgen render specs/walkthrough.yaml --dialect brctl --teardown\n\n"
        "  netgen render --from old.yaml new.yaml -o migrate.sh\n\n"
        "  netgen check specs/walkthrough.yaml\n\n"
        "  netgen try specs/walkthrough.yaml\n\n"
        "  netgen render specs/walkthrough.yaml --check scripts/setup.sh\n\n"
        "  netgen ops specs/walkthrough.yaml | jq ."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Dialect(str, Enum):
    iproute2 = "iproute2"
    brctl = "brctl"


class Firewall(str, Enum):
    iptables = "iptables"
    nftables = "nftables"


FirewallOpt = Annotated[
    Firewall,
    typer.Option(help="iptables (the chapter's) or nftables: ports, masquerade, icc, links."),
]


SpecArg = Annotated[
    Path, typer.Argument(metavar="SPEC", help="The spec file (YAML).", show_default=False)
]

HostOpt = Annotated[
    str | None,
    typer.Option(
        "--host",
        metavar="NAME",
        help="With hosts: in the spec, that host's part (required with 2 or more hosts).",
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"netgen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """netgen: container networks from a YAML spec."""


@app.command()
def validate(spec_file: SpecArg) -> None:
    """Check the spec; print a one-line summary."""
    s = spec.load(spec_file)
    parts: list[str | None] = [h.name for h in s.hosts] or [None]
    built = [op for part in parts for op in lower.lower(s, part)]
    netns = sum(1 for c in s.containers if c.owns_netns)
    veths = sum(1 for op in built if isinstance(op, ops.AddVeth))
    hosts = vxlans = ""
    if s.hosts:
        names = ", ".join(h.name for h in s.hosts)
        hosts = f"{_n(len(s.hosts), 'host')} ({names}), "
        vxlans = f", {_n(sum(isinstance(op, ops.AddVxlan) for op in built), 'VXLAN device')}"
    typer.echo(
        f"{s.file}: spec {s.name!r} is valid: {hosts}{_n(len(s.bridges), 'bridge')}, "
        f"{_n(len(s.containers), 'container')} ({_n(netns, 'namespace')}), "
        f"{_n(len(s.links), 'link')}, {_n(veths, 'veth pair')}{vxlans}, {_n(len(built), 'op')}"
    )


@app.command("render")
def render_cmd(
    spec_file: SpecArg,
    dialect: Annotated[
        Dialect, typer.Option(help="iproute2 (modern ip) or brctl (the chapter's style).")
    ] = Dialect.iproute2,
    teardown: Annotated[
        bool, typer.Option("--teardown", help="Render the script that removes the network.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", metavar="FILE", help="Write to FILE (mode 0755), not stdout."
        ),
    ] = None,
    firewall: FirewallOpt = Firewall.iptables,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch",
            help="Group the commands for speed: `ip -batch` for the host "
            f"({batch.PART} namespaces' worth at a time, in the background), one per namespace, "
            "namespaces in parallel (NETGEN_JOBS at a time).",
        ),
    ] = False,
    from_spec: Annotated[
        Path | None,
        typer.Option(
            "--from",
            metavar="OLD",
            help="Render a migration: only the changes that turn a host built from OLD "
            "(same spec name) into SPEC; removals first. Not with --teardown or --batch.",
        ),
    ] = None,
    golden_file: Annotated[
        Path | None,
        typer.Option(
            "--check",
            metavar="FILE",
            help="Golden mode: exit 0 if FILE is byte for byte the script rendered now "
            "(same options), else print a unified diff and exit 1.",
        ),
    ] = None,
    update: Annotated[
        bool,
        typer.Option("--update", help="With --check: rewrite FILE (mode 0755) if it differs."),
    ] = False,
    host: HostOpt = None,
) -> None:
    """Print the bash script that builds (or with --teardown, removes) the network."""
    _golden_usage(golden_file, update, output, from_spec)
    if from_spec is not None:
        _render_migration(from_spec, spec_file, dialect, firewall, output, teardown, batch, host)
        return
    script = golden.script(
        spec.load(spec_file),
        dialect=dialect.value,
        firewall=firewall.value,
        teardown=teardown,
        batch=batch,
        host=host,
    )
    if golden_file is not None:
        flags = [f"--host={host}"] * (host is not None)
        flags += [f"--dialect={dialect.value}"] * (dialect != Dialect.iproute2)
        flags += [f"--firewall={firewall.value}"] * (firewall != Firewall.iptables)
        flags += ["--teardown"] * teardown + ["--batch"] * batch
        _golden(golden_file, script, update, [str(spec_file), *flags])
        return
    if output is None:
        sys.stdout.write(script)
    else:
        _write_atomically(output, script, 0o755)


def _golden_usage(
    golden_file: Path | None, update: bool, output: Path | None, from_spec: Path | None
) -> None:
    if golden_file is None:
        if update:
            raise UsageError("--update rewrites the file given to --check: give --check FILE")
        return
    if output is not None:
        raise UsageError("--check compares with FILE, -o writes one: give only one of them")
    if from_spec is not None:
        raise UsageError("--check does not take --from: a migration script is not kept")


def _golden(path: Path, script: str, update: bool, args: list[str]) -> None:
    """Golden mode: the diff is the product (stdout); exit 1 while FILE is stale."""
    changes = golden.diff(golden.read(path), script, str(path))
    if not changes:
        print(f"netgen: {path} is up to date", file=sys.stderr)
        return
    if update:
        _write_atomically(path, script, 0o755)
        print(f"netgen: updated {path}", file=sys.stderr)
        return
    sys.stdout.write(changes)
    again = shlex.join(["netgen", "render", *args, "--check", str(path), "--update"])
    print(
        f"netgen: {path} is not what netgen renders now (diff above); if the change is "
        f"meant, update it with: {again}",
        file=sys.stderr,
    )
    raise typer.Exit(1)


def _render_migration(
    old_file: Path,
    new_file: Path,
    dialect: Dialect,
    firewall: Firewall,
    output: Path | None,
    teardown: bool,
    batch: bool,
    host: str | None = None,
) -> None:
    for flag, given in (("--teardown", teardown), ("--batch", batch)):
        if given:
            raise UsageError(
                f"--from and {flag} cannot be combined: a migration is its own script "
                f"(to remove the network, render {new_file} --teardown)"
            )
    from . import migrate

    old, new = spec.load(old_file), spec.load(new_file)
    result = migrate.migrate(old, new, firewall=firewall.value, host=host)
    script = render.render_migration(
        old,
        new,
        migrate.ops(result),
        dialect=dialect.value,
        firewall=firewall.value,
        host=lower.pick_host(new, host),
    )
    if not result.steps:
        print(f"netgen: nothing to do: {old.file} and {new.file} build the same", file=sys.stderr)
    if output is None:
        sys.stdout.write(script)
    else:
        _write_atomically(output, script, 0o755)


@app.command("ops")
def ops_cmd(
    spec_file: SpecArg,
    teardown: Annotated[bool, typer.Option("--teardown", help="The teardown ops.")] = False,
    host: HostOpt = None,
) -> None:
    """Print the intermediate ops (the IR) as JSON, for tooling and tests."""
    s = spec.load(spec_file)
    built = lower.lower(s, host)
    todo = ops.teardown(built) if teardown else built
    json.dump([ops.to_json(op) for op in todo], sys.stdout, indent=2)
    sys.stdout.write("\n")


DryRun = Annotated[
    bool,
    typer.Option("--dry-run", help="Print the commands it would run, one a line; change nothing."),
]


Subprocess = Annotated[
    bool,
    typer.Option(
        "--subprocess",
        help="Run every command as its own process, as the rendered script does, instead "
        "of sending the `ip` commands as netlink requests from netgen itself (the "
        "default, and much faster). The same commands, the same result.",
    ),
]


@app.command("apply")
def apply_cmd(
    spec_file: SpecArg,
    dry_run: DryRun = False,
    dialect: Annotated[
        Dialect, typer.Option(help="iproute2 (modern ip) or brctl (the chapter's style).")
    ] = Dialect.iproute2,
    firewall: FirewallOpt = Firewall.iptables,
    run_checks: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Then run the spec's checks (as netgen check does) and print their table; "
            "exit 1 if one fails. The network stays applied either way.",
        ),
    ] = False,
    use_subprocess: Subprocess = False,
    host: HostOpt = None,
) -> None:
    """Build the network on this host (root): only what is missing; all or nothing."""
    if run_checks and dry_run:
        raise UsageError("--check needs a real apply: it probes the network; not with --dry-run")
    from . import execute

    s = spec.load(spec_file)
    built = lower.lower(s, host)
    runner = execute.DryRunRunner(fast=not use_subprocess) if dry_run else None
    with _progress(f"apply {s.name}", not dry_run) as progress:
        done = execute.apply(
            s,
            built,
            dialect=dialect.value,
            firewall=firewall.value,
            runner=runner,
            progress=progress,
            fast=not use_subprocess,
        )
    _report(done, dry_run, f"spec {s.name!r} applied", f"spec {s.name!r} is already applied")
    if run_checks:
        _check(s, implied=True, as_json=False, timeout=check.TIMEOUT, host=host)


@app.command("check")
def check_cmd(
    spec_file: SpecArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    no_implied: Annotated[
        bool,
        typer.Option(
            "--no-implied",
            help="Only the spec's own checks:, not those netgen derives (gateways, links, "
            "icc, exposed and published ports).",
        ),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(min=0.1, max=30, help="Seconds each probe waits for an answer."),
    ] = check.TIMEOUT,
    host: HostOpt = None,
) -> None:
    """Probe the applied network (root): does each container reach what it should, and only
    that? Prints a table (from, to, what, expected, got, ok); exit 1 if a check fails."""
    s = spec.load(spec_file)
    _check(s, implied=not no_implied, as_json=as_json, timeout=timeout, host=host)


def _check(
    s: model.Spec, *, implied: bool, as_json: bool, timeout: float, host: str | None = None
) -> None:
    probes = check.compile(s, implied=implied, host=host)  # an unknown --host: exit 2 first
    if os.geteuid() != 0:
        raise HostError("netgen check must run as root: its probes enter network namespaces")
    results = check.run(probes, timeout=timeout)
    if as_json:
        json.dump(check.to_json(s, results), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(check.table(results))
    sys.stdout.flush()
    print(f"netgen: spec {s.name!r}: {check.summary(results)}", file=sys.stderr)
    if check.failed(results):
        raise typer.Exit(1)


@app.command("destroy")
def destroy_cmd(
    spec_file: SpecArg,
    dry_run: DryRun = False,
    firewall: FirewallOpt = Firewall.iptables,
    use_subprocess: Subprocess = False,
    host: HostOpt = None,
) -> None:
    """Remove what apply built for this spec, and nothing else.

    What apply recorded decides (including its --firewall); the spec and --firewall
    only matter for a host built without netgen's record (by the rendered script).
    """
    from . import execute

    s = spec.load(spec_file)
    built = lower.lower(s, host)
    runner = execute.DryRunRunner(fast=not use_subprocess) if dry_run else None
    with _progress(f"destroy {s.name}", not dry_run) as progress:
        done = execute.destroy(
            s,
            built,
            firewall=firewall.value,
            runner=runner,
            progress=progress,
            fast=not use_subprocess,
        )
    _report(done, dry_run, f"spec {s.name!r} destroyed", f"spec {s.name!r} is not applied")


@app.command("plan")
def plan_cmd(
    spec_file: SpecArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    firewall: FirewallOpt = Firewall.iptables,
    host: HostOpt = None,
) -> None:
    """Show what apply would create (+), change (~) or remove (-) on this host."""
    from . import execute
    from . import plan as planner

    s = spec.load(spec_file)
    result = execute.preview(s, lower.lower(s, host), firewall=firewall.value)
    lines = planner.lines(result)
    if as_json:
        out = {
            "spec": s.name,
            "changes": [
                {
                    "action": "~" if sign == " " else sign,  # " ": re-creating a replaced one
                    "object": text,
                    "op": ops.to_json(step.op),
                    "commands": [
                        execute.format_command(c)
                        for c in execute.step_commands(step, firewall=firewall.value)
                    ],
                }
                for sign, text, step in lines
            ],
            "refusals": result.refusals,
            "notes": result.notes,
        }
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for sign, text, _ in lines:
            if sign != " ":
                typer.echo(f"{sign} {text}")
        for note in result.notes:
            print(f"netgen: {note}", file=sys.stderr)
    if result.refusals:
        raise HostError("apply would refuse:\n" + "\n".join(f"  {r}" for r in result.refusals))


@app.command("try")
def try_cmd(
    spec_file: SpecArg,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep",
            help="After the checks, keep the sandbox until Enter (or Ctrl-C) here; "
            "prints the nsenter command that enters it.",
        ),
    ] = False,
    shell: Annotated[
        bool,
        typer.Option(
            "--shell",
            help="After the checks, open a shell inside the sandbox, the network built "
            "(`ip netns exec web ...` works); leaving it tears everything down.",
        ),
    ] = False,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Listen in each container on the ports the spec names (expose, published "
            "ports, declared port checks): tcp accepts, udp echoes. Port checks then prove "
            "the firewall, DNAT and links, instead of finding nothing listening.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    dialect: Annotated[
        Dialect, typer.Option(help="iproute2 (modern ip) or brctl (the chapter's style).")
    ] = Dialect.iproute2,
    firewall: FirewallOpt = Firewall.iptables,
    timeout: Annotated[
        float,
        typer.Option(min=0.1, max=30, help="Seconds each probe waits for an answer."),
    ] = check.TIMEOUT,
) -> None:
    """Build the spec in a throw-away sandbox, prove it with its checks, tear it all down.

    The sandbox is a private network + mount namespace (as root, or in an unprivileged
    user namespace): this host's interfaces, namespaces and firewall are never touched.
    Uplinks, external bridges and the checks' outside host are played by stand-ins.
    A spec with 2+ hosts gets one sandbox per host (root only), on an underlay at the
    hosts' own addresses; apply, check and destroy run in each with --host.
    Exit 0 if every check passed, 1 if one failed (or apply or destroy did), 2 if the
    spec is wrong.
    """
    if keep and shell:
        raise UsageError("--keep or --shell, not both: --shell keeps it while the shell runs")
    if shell and as_json:
        raise UsageError("--json and --shell do not mix: the shell would write into the JSON")

    def log(text: str) -> None:
        print(f"netgen: {text}", file=sys.stderr, flush=True)

    from .fleettrial import FleetTrial
    from .sandbox import SandboxUnavailable
    from .trial import Trial

    kind = FleetTrial if len(spec.load(spec_file).hosts) >= 2 else Trial
    try:
        trial = kind.start(spec_file, dialect=dialect.value, firewall=firewall.value, log=log)
    except SandboxUnavailable as exc:
        raise HostError(f"netgen try cannot make its sandbox here: {exc}") from exc
    with trial:
        for started in trial.serve() if serve else []:
            log(f"listening in {started}")
        report = trial.check(timeout=timeout)
        if as_json:
            json.dump({**report.to_json(), **trial.sandbox_json()}, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            sys.stdout.write(report.table)
        sys.stdout.flush()
        log(f"spec {trial.spec.name!r}: {report.summary}")
        if isinstance(trial, FleetTrial):
            _try_hosts(trial, shell=shell, keep=keep, log=log)
        elif shell:
            some = next((c.netns for c in trial.spec.containers if c.netns), "NETNS")
            log(f"this is a shell in the netgen sandbox of spec {trial.spec.name!r}: its own")
            log("network, /run/netns and /etc/netns; this host's are out of reach. Try:")
            log(f"  ip netns exec {some} ip addr")
            log("exit (or Ctrl-D) tears it all down.")
            trial.shell()
        elif keep:
            log(f"the sandbox stays up; enter it with: {trial.enter_command()}")
            log("press Enter (or Ctrl-C) here to tear it down")
            try:
                sys.stdin.readline()
            except KeyboardInterrupt:
                print(file=sys.stderr)  # past the ^C the terminal echoed
    log("sandbox closed; nothing of this host was changed")
    if not report.ok:
        raise typer.Exit(1)


def _try_hosts(trial: FleetTrial, *, shell: bool, keep: bool, log: Callable[[str], None]) -> None:
    """`netgen try --shell/--keep` of a multi-host spec: one sandbox per host to enter."""
    first, others = trial.hosts[0], trial.hosts[1:]
    enter = trial.enter_commands()
    if shell:
        some = next(
            (c.netns for c in trial.spec.containers if c.host == first and c.netns), "NETNS"
        )
        log(f"this is a shell on host {first} of the netgen sandboxes of spec {trial.spec.name!r}:")
        log("its own network, /run/netns and /etc/netns; this host's are out of reach. Try:")
        log(f"  ip netns exec {some} ip addr")
        for host in others:
            log(f"  {enter[host]}    # enters host {host} from here")
        log("exit (or Ctrl-D) tears it all down.")
        trial.shell()
    elif keep:
        log("the sandboxes stay up; enter a host with:")
        for host in trial.hosts:
            log(f"  {host}: {enter[host]}")
        log("press Enter (or Ctrl-C) here to tear them down")
        try:
            sys.stdin.readline()
        except KeyboardInterrupt:
            print(file=sys.stderr)


@contextmanager
def _progress(label: str, wanted: bool = True) -> Iterator[execute.Progress | None]:
    """A progress bar on stderr when it is a terminal; silent otherwise."""
    if not wanted or not sys.stderr.isatty():
        yield None
        return
    bar: list[Any] = []

    def update(done: int, total: int) -> None:
        if not bar:
            bar.append(typer.progressbar(length=total, label=label, file=sys.stderr))
            bar[0].__enter__()
        bar[0].update(done - bar[0].pos)

    try:
        yield update
    finally:
        if bar:
            bar[0].__exit__(None, None, None)


def _report(done: execute.Outcome, dry_run: bool, did: str, nothing: str) -> None:
    for note in done.notes:
        print(f"netgen: {note}", file=sys.stderr)
    if not dry_run:
        summary = f"{did} ({_n(done.commands, 'command')})" if done.commands else nothing
        print(f"netgen: {summary}", file=sys.stderr)


class GraphFormat(str, Enum):
    mermaid = "mermaid"
    dot = "dot"
    svg = "svg"
    png = "png"


@app.command("graph")
def graph_cmd(
    spec_file: SpecArg,
    fmt: Annotated[
        GraphFormat,
        typer.Option(
            "--format",
            help="mermaid or dot (text), or svg or png (drawn by Graphviz's dot; "
            "exit 2 if it is not installed).",
        ),
    ] = GraphFormat.mermaid,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", metavar="FILE", help="Write to FILE, not stdout."),
    ] = None,
) -> None:
    """Draw the network: bridges, containers, veths, links, uplinks, published ports."""
    from . import graph

    if fmt.value in graph.IMAGE_FORMATS and output is None and sys.stdout.isatty():
        raise UsageError(f"not writing {fmt.value} to a terminal: give -o FILE, or redirect")
    data = graph.draw(spec.load(spec_file), fmt.value)
    if output is None:
        _write_stdout(data)
    else:
        _write_bytes(output, data, 0o644)


@app.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of the spec format, for editors (yaml-language-server)."""
    from . import schema

    _write_stdout(schema.dumps().encode())


STARTER_FILE = Path("netgen.yaml")


@app.command("init")
def init_cmd(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Where to write the spec.")] = (
        STARTER_FILE
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE if it exists.")] = False,
) -> None:
    """Write a commented starter spec (a bridge, two containers) to edit from."""
    if not force and (file.exists() or file.is_symlink()):
        raise UsageError(f"{str(file)!r} already exists; use --force to overwrite it")
    starter = (render.templates_dir() / "starter.yaml").read_text()
    _write_bytes(file, starter.encode(), 0o644, exclusive=not force)
    typer.echo(f"wrote {file}; next: netgen validate {file}", err=True)


export_app = typer.Typer(
    help="Export the spec for a deployment engine (the rendered scripts stay the artefact).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(export_app, name="export")


@export_app.command("ansible")
def export_ansible_cmd(
    spec_file: SpecArg,
    output: Annotated[
        Path,
        typer.Option("-o", "--output", metavar="DIR", help="Write the files into DIR."),
    ],
    dialect: Annotated[
        Dialect, typer.Option(help="iproute2 (modern ip) or brctl (the chapter's style).")
    ] = Dialect.iproute2,
    firewall: FirewallOpt = Firewall.iptables,
) -> None:
    """Write an Ansible inventory, site.yml and teardown.yml that deliver and run each
    host's rendered script (idempotently: a second run changes nothing)."""
    from . import export

    files = export.ansible(spec.load(spec_file), dialect=dialect.value, firewall=firewall.value)
    export.write(files, output)
    typer.echo(
        f"wrote {_n(len(files), 'file')} to {output}; next: "
        f"ansible-playbook -i {output / 'inventory.yml'} {output / 'site.yml'}",
        err=True,
    )


def _write_stdout(data: bytes) -> None:
    """Bytes, not text: graphs hold UTF-8 (and PNG is binary) whatever the locale."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _write_bytes(path: Path, data: bytes, mode: int, *, exclusive: bool = False) -> None:
    """Like _write_atomically, for bytes; `exclusive` never replaces an existing file.

    The new file appears whole or not at all: written aside, then renamed (or, when
    exclusive, hard-linked, which fails if the name was taken meanwhile).
    """
    directory = path.parent if str(path.parent) else Path(".")
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    except FileExistsError as exc:
        raise UsageError(f"{str(path)!r} already exists; use --force to overwrite it") from exc
    except OSError as exc:
        raise UsageError(f"cannot write {str(path)!r}: {exc.strerror}") from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _write_atomically(path: Path, text: str, mode: int) -> None:
    """Readers see the old file or the whole new one; a wrong -o is a usage error (2)."""
    directory = path.parent if str(path.parent) else Path(".")
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"cannot write {str(path)!r}: {exc.strerror}") from exc
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def main() -> NoReturn:
    """Entry point: click reports usage errors (exit 2); NetgenError is reported here, once."""
    # A short-lived process that builds large acyclic structures (a spec's node tree, its
    # ops, the script): reference counting frees them, and the cyclic collector would only
    # walk them again and again (40 % of the time rendering 10,000 containers).
    gc.disable()
    try:
        app()
    except NetgenError as exc:
        print(exc if isinstance(exc, SpecError) else f"netgen: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(0)
