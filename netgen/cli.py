"""The command line: wires the pipeline stages together, nothing more.

Only the product (a script, JSON) goes to stdout; diagnostics go to stderr.
Exit codes: 0 done, 1 the host refused a change (rolled back), 2 the spec or
the command line is wrong (nothing rendered or run).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from . import __version__, lower, ops, render, spec
from .errors import NetgenError, SpecError

app = typer.Typer(
    name="netgen",
    help=(
        "Compile a YAML container-network spec into the Linux commands that build it "
        "(bridges, veth pairs, namespaces, routes), as an auditable bash script or run "
        "directly.\n\nExamples:\n\n"
        "  netgen validate specs/walkthrough.yaml\n\n"
        "  netgen render specs/walkthrough.yaml -o setup.sh\n\n"
        "  netgen render specs/walkthrough.yaml --dialect brctl --teardown\n\n"
        "  netgen ops specs/walkthrough.yaml | jq ."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Dialect(str, Enum):
    iproute2 = "iproute2"
    brctl = "brctl"


SpecArg = Annotated[Path, typer.Argument(help="The spec file (YAML).", show_default=False)]


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
    built = lower.lower(s)
    netns = sum(1 for c in s.containers if c.owns_netns)
    veths = sum(1 for op in built if isinstance(op, ops.AddVeth))
    typer.echo(
        f"{s.file}: spec {s.name!r} is valid: {_n(len(s.bridges), 'bridge')}, "
        f"{_n(len(s.containers), 'container')} ({_n(netns, 'namespace')}), "
        f"{_n(len(s.links), 'link')}, {_n(veths, 'veth pair')}, {_n(len(built), 'op')}"
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
        Path | None, typer.Option("-o", "--output", help="Write to FILE (mode 0755), not stdout.")
    ] = None,
) -> None:
    """Print the bash script that builds (or with --teardown, removes) the network."""
    s = spec.load(spec_file)
    built = lower.lower(s)
    todo = ops.teardown(built) if teardown else built
    script = render.render(s, todo, dialect=dialect.value, teardown=teardown)
    if output is None:
        sys.stdout.write(script)
    else:
        _write_atomically(output, script, 0o755)


@app.command("ops")
def ops_cmd(
    spec_file: SpecArg,
    teardown: Annotated[bool, typer.Option("--teardown", help="The teardown ops.")] = False,
) -> None:
    """Print the intermediate ops (the IR) as JSON, for tooling and tests."""
    s = spec.load(spec_file)
    built = lower.lower(s)
    todo = ops.teardown(built) if teardown else built
    json.dump([ops.to_json(op) for op in todo], sys.stdout, indent=2)
    sys.stdout.write("\n")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _write_atomically(path: Path, text: str, mode: int) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main() -> NoReturn:
    """Entry point: click reports usage errors (exit 2); NetgenError is reported here, once."""
    try:
        app()
    except NetgenError as exc:
        print(exc if isinstance(exc, SpecError) else f"netgen: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(0)
