"""Golden scripts: a rendered script kept in the repository next to its spec.

`netgen render SPEC --check FILE` fails (with a unified diff) as soon as FILE is not
byte for byte what netgen renders now, so a spec change, or a netgen upgrade, that
changes the commands shows up in a pull request as a diff of the audited script.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from . import lower, render
from . import model as m
from . import ops as o
from .errors import UsageError

NO_NEWLINE = "\\ No newline at end of file\n"


def script(
    s: m.Spec,
    *,
    dialect: str = "iproute2",
    firewall: str = "iptables",
    teardown: bool = False,
    batch: bool = False,
    host: str | None = None,
) -> str:
    """The script `netgen render` prints (and `--check` compares) for these options;
    with `hosts:`, `host`'s part (see lower.pick_host)."""
    here = lower.pick_host(s, host)
    built = lower.lower(s, here)
    if batch:  # takes the setup ops either way: see render.render_batch
        return render.render_batch(
            s, built, dialect=dialect, firewall=firewall, teardown=teardown, host=here
        )
    todo = o.teardown(built) if teardown else built
    return render.render(s, todo, dialect=dialect, firewall=firewall, teardown=teardown, host=here)


def read(path: Path) -> bytes | None:
    """The golden file's bytes; None if it does not exist yet (a diff from nothing)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror}") from exc


def diff(old: bytes | None, new: str, name: str) -> str:
    """A unified diff that turns the file `name` (holding `old`) into `new`; "" if equal.

    `patch -p0` applies it: the new side carries the same name, its label after a tab.
    Lines without a final newline are marked the way diff(1) marks them, so a lost or
    added last newline shows; bytes that diff cannot show are named rather than hidden.
    """
    new_bytes = new.encode()
    if old == new_bytes:
        return ""
    before = _lines(old.decode(errors="replace")) if old is not None else []
    out = []
    for line in difflib.unified_diff(
        before,
        _lines(new),
        name if old is not None else "/dev/null",
        name,
        "(committed)" if old is not None else "",
        "(netgen render, now)",
        lineterm="\n",
    ):
        out.append(line if line.endswith("\n") else line + "\n" + NO_NEWLINE)
    if not out:  # same text once decoded: the difference is in bytes that are not UTF-8
        return f"Binary files {name} and rendered script differ (not UTF-8)\n"
    return "".join(out)


def _lines(text: str) -> list[str]:
    """Split on newlines only (str.splitlines would also split on \\f, \\x1c, ...)."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    return lines + [parts[-1]] if parts[-1] else lines
