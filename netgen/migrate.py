"""Migration: the ops that turn a host built from one version of a spec into the next.

A migration is what `netgen apply NEW` would do on a host where OLD was applied
and nothing else happened. So the planner that apply uses computes it, with the
same units (an object and the ops that configure it) and the same rules: a unit
OLD has and NEW does not is removed; one NEW changed in a way that cannot be
done in place is removed and built again (an address change replaces the veth;
a namespace or bridge that goes takes its children along, and what NEW still
wants of those is built again); then NEW's ops that the host lacks are added.
The host it plans against is a model, OLD's ops run on an empty host, not a
snapshot of this machine: the comparison is offline and pure.
"""

from __future__ import annotations

from . import model as m
from . import ops as o
from . import plan as p
from .errors import UsageError
from .lower import lower, pick_host
from .state import Host, Link


def migrate(
    old: m.Spec, new: m.Spec, *, firewall: str = "iptables", host: str | None = None
) -> p.Plan:
    """The steps from a host built from `old` to one built from `new` (same spec name);
    with `hosts:`, on `host` (its part of `old`: none if `old` did not name it).

    Removals come first, each guarded (it runs only on what carries the spec's
    mark), in reverse order; then additions and rewrites, in `new`'s order.
    """
    if old.name != new.name:
        raise UsageError(
            f"cannot migrate from spec {old.name!r} ({old.file}) to spec {new.name!r} "
            f"({new.file}): netgen marks what it builds with the spec's name, so a host "
            f"built from {old.name!r} has nothing of {new.name!r} to change; give both "
            "the same name"
        )
    here = pick_host(new, host)
    if not old.hosts:
        before = lower(old)  # the one local host
    elif here is None or here in {h.name for h in old.hosts}:
        before = lower(old, here)  # here None: old's only host (or an error naming them)
    else:
        before = []  # a host `old` did not span: it had nothing of the spec
    after = lower(new, here)
    model = p.simulated(before, new.name, _given(old, new), firewall=firewall)
    result = p.plan(
        after, before, model, new.name, recorded=before, firewall=firewall, offline=True
    )
    if result.refusals:
        raise UsageError(
            f"cannot migrate from {old.file} to {new.file}:\n"
            + "\n".join(f"  {r}" for r in result.refusals)
        )
    return result


def ops(result: p.Plan) -> list[o.Op]:
    """The ops to render, in order."""
    return [step.op for step in result.steps]


def _given(*specs: m.Spec) -> Host:
    """What netgen attaches to but never creates: external bridges, uplinks. A host built
    from either spec has them (apply refuses to build without them)."""
    host = Host()
    for spec in specs:
        for bridge in spec.bridges:
            if bridge.external:
                host.links.setdefault(bridge.name, Link(bridge.name, "bridge", None))
            for uplink in bridge.uplinks:
                host.links.setdefault(uplink, Link(uplink, None, None))
    return host
