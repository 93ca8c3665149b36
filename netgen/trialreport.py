"""What a trial found: the results of `netgen check --json` run in its sandbox(es).

A trial (netgen/trial.py, netgen/fleettrial.py) runs `netgen check --json` inside, and
this module turns its output back into :class:`check.Result` rows of the spec's own
probes, so the table is printed by check.table exactly as `netgen check` prints it. A
multi-host trial gets one :class:`Report` per host, grouped by a :class:`FleetReport`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import check
from . import model as m
from .errors import HostError


class TrialError(HostError):
    """A trial could not build, check or remove the network (exit 1)."""


@dataclass(frozen=True)
class Report:
    """The spec's checks, run in the sandbox: what `netgen check` would print there."""

    spec: m.Spec
    results: tuple[check.Result, ...]

    @property
    def ok(self) -> bool:
        """No check failed (skipped ones do not count against it)."""
        return not check.failed(self.results)

    @property
    def failures(self) -> list[check.Result]:
        return [r for r in self.results if r.ok is False]

    @property
    def table(self) -> str:
        return check.table(self.results)

    @property
    def summary(self) -> str:
        return check.summary(self.results)

    def to_json(self) -> dict[str, Any]:
        return check.to_json(self.spec, self.results)

    def __iter__(self) -> Iterator[check.Result]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __repr__(self) -> str:
        """Short: pytest prints it under a failed `assert report.ok`."""
        return f"<Report of spec {self.spec.name!r}: {self.summary}>"


def results_from_json(
    s: m.Spec, data: dict[str, Any], *, implied: bool, host: str | None = None
) -> Report:
    """`netgen check [--host HOST] --json` output, back as Results of this spec's own
    probes (those that start on `host`, for a spec with hosts).

    The probes are compiled here (it is pure) and matched row by row, so the table is
    printed by check.table exactly as `netgen check` prints it.
    """
    where = "in the sandbox" if host is None else f"on host {host}"
    probes = check.compile(s, implied=implied, host=host)
    rows = data.get("checks")
    if not isinstance(rows, list) or len(rows) != len(probes):
        raise TrialError(f"netgen check {where} reported other checks than the spec has")
    results = []
    for probe, row in zip(probes, rows, strict=True):
        if (row.get("from"), row.get("address"), row.get("what")) != (
            probe.src,
            str(probe.address),
            probe.what,
        ):
            raise TrialError(f"netgen check {where} reported an unexpected check: {row}")
        results.append(check.Result(probe, str(row.get("got")), row.get("ok")))
    return Report(s, tuple(results))


@dataclass(frozen=True)
class FleetReport:
    """A multi-host spec's checks: per host (in `hosts:` order), those that start there."""

    spec: m.Spec
    hosts: Mapping[str, Report]

    @property
    def results(self) -> tuple[check.Result, ...]:
        return tuple(r for report in self.hosts.values() for r in report)

    @property
    def ok(self) -> bool:
        return not check.failed(self.results)

    @property
    def failures(self) -> list[check.Result]:
        return [r for r in self.results if r.ok is False]

    @property
    def summary(self) -> str:
        return check.summary(self.results)

    @property
    def table(self) -> str:
        """One section per host, headed by the host, its address and its summary; the
        columns line up across sections (one table, cut where the host changes)."""
        lines = check.table(self.results).splitlines()
        header, rows = lines[0], iter(lines[1:])
        out: list[str] = []
        for name, report in self.hosts.items():
            if out:
                out.append("")
            out.append(f"== host {name} ({self.spec.host(name).address}): {report.summary}")
            if len(report):
                out.append(header)
                out.extend(next(rows) for _ in range(len(report)))
            else:
                out.append("(no check starts on this host)")
        return "\n".join(out) + "\n"

    def to_json(self) -> dict[str, Any]:
        """As `netgen check --json`, each check with its `host`; `hosts` sums them up."""
        return {
            "spec": self.spec.name,
            "ok": self.ok,
            "summary": self.summary,
            "hosts": {
                name: {
                    "address": str(self.spec.host(name).address),
                    "ok": report.ok,
                    "summary": report.summary,
                }
                for name, report in self.hosts.items()
            },
            "checks": [
                {"host": name, **row}
                for name, report in self.hosts.items()
                for row in report.to_json()["checks"]
            ],
        }

    def __iter__(self) -> Iterator[check.Result]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __repr__(self) -> str:
        return f"<FleetReport of spec {self.spec.name!r}: {self.summary}>"
