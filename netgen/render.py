"""Render ops as a bash script through the jinja2 templates in `templates/`.

The templates lay the script out (header, one commented group per spec line,
error trap); the commands themselves come from `dialects.commands`, the same
mapping the executor runs, so a script and an apply never disagree.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import jinja2

from . import __version__, batch
from . import model as m
from . import ops as o
from .dialects import NETNS_DIR, Cmd, each_section

HEREDOC_END = "NETGEN_EOF"


@dataclass(frozen=True)
class Group:
    comment: str
    cmds: list[Cmd]


def render(
    spec: m.Spec,
    ops: list[o.Op],
    *,
    dialect: str = "iproute2",
    firewall: str = "iptables",
    teardown: bool = False,
    preamble: Iterable[str] = (),
    host: str | None = None,
) -> str:
    """The whole script for `ops` (already inverted by the caller for a teardown);
    `host`: the spec's host these ops are the part of (named in the header)."""
    kind = "teardown" if teardown else "setup"
    intro = [
        "Run as root. Same spec, same bytes: review this file, commit it, diff it.",
        *preamble,
    ]
    on = f" --host {host}" if host is not None and spec.hosts else ""
    if teardown:
        intro.append("Removes only what carries this spec's mark (netgen:NAME); safe to re-run.")
    else:
        intro.append(f"Undo with: netgen render SPEC{on} --teardown (or netgen destroy SPEC{on}).")
    title = f"netgen {kind} script for spec {spec.name!r}{_on(spec, host)}"
    return _plain(title, spec, ops, intro, dialect, firewall, host)


def render_migration(
    old: m.Spec,
    new: m.Spec,
    ops: list[o.Op],
    *,
    dialect: str = "iproute2",
    firewall: str = "iptables",
    host: str | None = None,
) -> str:
    """The script of a migration (see migrate.py): removals, then additions."""
    intro = [
        f"Migration from {old.file} (sha256 {old.sha256[:12]}) "
        f"to {new.file} (sha256 {new.sha256[:12]}):",
        "only the changes that turn a host built from the first (by netgen apply or its",
        "script) into the second. Removals come first, each guarded: only what carries",
        f"this spec's mark (netgen:{new.name}) is removed. On a host in another state,",
        "use netgen apply, which compares with the host itself.",
        f"Old spec sha256: {old.sha256}",
    ]
    title = f"netgen migration script for spec {new.name!r}{_on(new, host)}"
    return _plain(title, new, ops, intro, dialect, firewall, host)


def _on(spec: m.Spec, host: str | None) -> str:
    return f" on host {host!r}" if host is not None and spec.hosts else ""


def host_line(spec: m.Spec, host: str | None) -> str:
    """The header's `host:` line: the host and its underlay ("" without `hosts:`)."""
    if host is None or not spec.hosts:
        return ""
    h = spec.host(host)
    dev = f", dev {h.dev}" if h.dev is not None else ""
    return f"{h.name} (underlay {h.address}{dev}, mtu {h.mtu}; one of {len(spec.hosts)} hosts)"


def _plain(
    title: str,
    spec: m.Spec,
    ops: list[o.Op],
    intro: list[str],
    dialect: str,
    firewall: str,
    host: str | None = None,
) -> str:
    """The one-command-per-line script (script.sh.j2), shared by setup, teardown, migration."""
    return (
        _env()
        .get_template("script.sh.j2")
        .render(
            title=title,
            spec=spec,
            version=__version__,
            dialect=dialect,
            preamble=intro,
            groups=group(ops, dialect, firewall),
            host=host_line(spec, host),
        )
    )


def render_batch(
    spec: m.Spec,
    ops: list[o.Op],
    *,
    dialect: str = "iproute2",
    firewall: str = "iptables",
    teardown: bool = False,
    preamble: Iterable[str] = (),
    host: str | None = None,
) -> str:
    """The script in batch style (see batch.py): `ip -batch` per host and per namespace.

    `ops` are the setup ops even for a teardown: deleting by namespace needs to know
    which host link is the end of a veth into which namespace.
    """
    kind = "teardown" if teardown else "setup"
    intro = [
        "Run as root. Same spec, same bytes: review this file, commit it, diff it.",
        "Batch style: the commands of `netgen render` without --batch, grouped for speed",
        f"into `ip -batch` runs: the host's, for {batch.PART} namespaces at a time (each in the",
        "background while the namespaces before it are set up), and one per namespace",
        "(run with nsenter).",
        *preamble,
    ]
    on = f" --host {host}" if host is not None and spec.hosts else ""
    if teardown:
        intro.append("Removes only what carries this spec's mark (netgen:NAME); safe to re-run.")
    else:
        intro.append(
            f"Undo with: netgen render SPEC{on} --batch --teardown (or netgen destroy SPEC{on})."
        )
    return (
        _env()
        .get_template("script-batch.sh.j2")
        .render(
            title=f"netgen {kind} script for spec {spec.name!r}{_on(spec, host)}",
            host=host_line(spec, host),
            spec=spec,
            version=__version__,
            dialect=dialect,
            preamble=intro,
            netns_dir=NETNS_DIR,
            stages=None if teardown else batch.stages(ops, dialect, firewall),
            plan=batch.teardown(ops, dialect, firewall) if teardown else None,
        )
    )


def group(ops: list[o.Op], dialect: str, firewall: str = "iptables") -> list[Group]:
    """Consecutive commands from the same spec element share one comment."""
    groups: list[Group] = []
    last: m.Loc | str | None = None  # the `where` of the last group: most ops repeat it
    for where, cmds in each_section(ops, dialect, firewall):
        if where is last:
            groups[-1].cmds.extend(cmds)
            continue
        comment = where if isinstance(where, str) else _where(where)
        if groups and groups[-1].comment == comment:
            groups[-1].cmds.extend(cmds)
        else:
            groups.append(Group(comment, list(cmds)))
        last = where
    return groups


def _where(loc: m.Loc) -> str:
    return f"{loc.file}:{loc.line} {loc.path}" if loc.line else "netgen"


def shell(value: str | Iterable[str]) -> str:
    """The one quoting filter: every value in a command goes through shlex.quote."""
    if isinstance(value, str):
        return _quote(value)
    return " ".join(map(_quote, map(str, value)))


# A script repeats the same words (ip, link, dev, every name) thousands of times.
_quote = cache(shlex.quote)


# shlex.quote's own test for a word it leaves alone, with the space between words added
_UNSAFE_LINE = re.compile(r"[^\w@%+=:,./ -]", re.ASCII).search


def _words(argv: tuple[str, ...]) -> str:
    """`shell` of a command's argv, whose words are already strings (no `str` of each).
    Nearly every command is all safe words (names, addresses, marks), which shlex.quote
    returns as they are: one look at the whole line, not a quote call per word."""
    line = " ".join(argv)
    if _UNSAFE_LINE(line) is None and all(argv):
        return line
    return " ".join(map(_quote, argv))


def command(cmd: Cmd) -> str:
    """One command as the script writes it: under its guard, fed its heredoc, quoted by
    `shell`. A filter rather than a template macro: a macro call costs more than the
    formatting, and a script has one per command."""
    text = _words(cmd.argv)
    if cmd.guard:
        text = f"if {_words(cmd.guard)} 2>/dev/null; then {text}; fi"
    if cmd.stdin is not None:
        end = heredoc_end(cmd.stdin)
        text += f" <<'{end}'\n{heredoc(cmd.stdin)}{end}"
    return text


def commands(cmds: Iterable[Cmd]) -> str:
    """`command` of each, one a line (a group's lines; a template loop per command would
    cost more than the commands)."""
    return "\n".join(map(command, cmds))


def comment(value: object) -> str:
    """Comments are not quoted but must stay one line of printable text."""
    text = str(value)
    if text.isprintable():  # nearly always: no need to look at each character
        return text
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def heredoc(value: str) -> str:
    return value if value.endswith("\n") else value + "\n"


def heredoc_end(value: str) -> str:
    """NETGEN_EOF, unless a line of the content is exactly that (`hostname: NETGEN_EOF`)."""
    lines = set(value.splitlines())
    end, n = HEREDOC_END, 1
    while end in lines:
        n += 1
        end = f"{HEREDOC_END}_{n}"
    return end


def templates_dir() -> Path:
    """Inside the wheel: netgen/templates; in a source checkout: ../templates."""
    packaged = Path(str(resources.files("netgen"))) / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(
        shell=shell,
        command=command,
        commands=commands,
        comment=comment,
        heredoc=heredoc,
        heredoc_end=heredoc_end,
    )
    env.filters["ipbatch"] = batch.batch_line  # ip's own batch-file quoting
    return env
