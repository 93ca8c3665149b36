#!/usr/bin/env python3
"""How long it takes to build (and remove) N containers on Linux bridges, several ways.

Run as root from anywhere (it finds the repository it sits in):

    sudo python3 benchmarks/bench.py                      # 100, 300, 1000: about 6 minutes
    sudo python3 benchmarks/bench.py --quick              # 100 and 300: about a minute
    sudo python3 benchmarks/bench.py --sizes 100,300,1000,3000 --json results.json

Every build runs in a FRESH private network + mount namespace (netgen.sandbox), so
the host's network is never touched and no run inherits another's leftovers. A build
counts only once verified: on each bridge, the first container pings its gateway and
the bridge's last container. Each way of building:

- netgen apply                   `netgen apply SPEC`, then `netgen destroy SPEC`
- netgen script                  `netgen render SPEC` run with bash (one command a line)
- netgen script --batch          `netgen render SPEC --batch`: one `ip -batch` for the
                                 host, one per namespace (nsenter), 2 at a time
- ... --batch, no mcast snooping the same, the spec's bridges with `mcast_snooping: false`
- chapter style                  `netgen render SPEC --dialect brctl`: one ip / ip netns
                                 exec / brctl process a step, each veth moved into its
                                 namespace and renamed there
- CNI bridge plugin              /usr/lib/cni/bridge + host-local IPAM, one ADD per
                                 container (namespaces made with `ip netns add`, counted);
                                 IPAM state on the sandbox's own tmpfs; removal: one DEL
                                 per container, then `ip netns delete`

Render (compile) times are not part of a script's time, as a script is rendered once
and run many times; they are reported on their own, with the peak memory of rendering
a 10,000-container spec over 10 bridges. Plain Python and public tools only (iproute2,
bash, nsenter, the CNI plugins); no wall-clock assertion anywhere, numbers are for
people.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netgen.sandbox import Sandbox, unavailable_reason  # noqa: E402

PYTHON = sys.executable
CNI_DIR = Path("/usr/lib/cni")
CNI_STATE = "/run/netgen/cni"  # a tmpfs private to each sandbox (see netgen.sandbox)
SPEC_NAME = "bench"
PER_BRIDGE = 1000  # a Linux bridge takes at most 1023 ports
TIMEOUT = 900  # seconds, per build or teardown

METHODS = {
    "apply": "netgen apply",
    "script": "netgen script",
    "batch": "netgen script --batch",
    "batch-nosnoop": "netgen --batch, mcast_snooping off",
    "chapter": "chapter style (brctl dialect)",
    "cni": "CNI bridge + host-local",
}
SLOW = ("script", "chapter", "cni")  # one process or more per step: capped by --slow-max


class BenchError(Exception):
    """A build or teardown failed or did not verify: reported loudly, never counted."""


@dataclass
class Result:
    method: str
    containers: int
    bridges: int
    setup_s: float | None = None
    teardown_s: float | None = None
    ms_per_container: float | None = None
    ratio: float | None = None  # setup time / the reference method's at the same size
    growth: float | None = None  # ms/container / the same method's at the run's smallest size
    note: str = ""
    runs: list[tuple[float, float | None]] = field(default_factory=list)  # (setup, teardown)


# -- specs --------------------------------------------------------------------------------


def bridges_for(n: int) -> int:
    return max(1, -(-n // PER_BRIDGE))


def subnet(i: int) -> IPv4Network:
    return IPv4Network(f"10.{88 + i}.0.0/16")  # room for every container of a bridge


def write_spec(path: Path, n: int, *, snooping: bool | None = None) -> Path:
    """N containers over as few bridges as hold them, in YAML (netgen's own format)."""
    k = bridges_for(n)
    lines = ["version: 1", f"name: {SPEC_NAME}", "bridges:"]
    for i in range(k):
        lines += [f"  br{i}:", f"    subnet: {subnet(i)}"]
        if snooping is not None:
            lines.append(f"    mcast_snooping: {str(snooping).lower()}")
    lines.append("containers:")
    for c in range(n):
        lines += [f"  c{c}:", f"    network: br{c * k // n}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def members(n: int) -> list[tuple[int, str, str]]:
    """(bridge index, first container, last container) per bridge, as write_spec lays out."""
    k = bridges_for(n)
    out = []
    for i in range(k):
        cs = [c for c in range(n) if c * k // n == i]
        out.append((i, f"c{cs[0]}", f"c{cs[-1]}"))
    return out


# -- running things -----------------------------------------------------------------------


def netgen(*args: str, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "netgen", *args],
        cwd=ROOT,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )


def timed(sb: Sandbox, argv: list[str], what: str) -> float:
    start = time.perf_counter()
    res = sb.run(argv, check=False, timeout=TIMEOUT, cwd=str(ROOT))
    took = time.perf_counter() - start
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-5:]
        raise BenchError(f"{what} failed (exit {res.returncode}): " + " | ".join(tail))
    return took


def address(sb: Sandbox, netns: str) -> str:
    out = sb.run(["ip", "-n", netns, "-j", "-4", "addr", "show", "dev", "eth0"]).stdout
    (link,) = json.loads(out)
    return str(link["addr_info"][0]["local"])


def verify_built(sb: Sandbox, n: int) -> None:
    """On each bridge the first container reaches its gateway and the last container."""
    for i, first, last in members(n):
        gateway = str(subnet(i).network_address + 1)
        for target in (gateway, address(sb, last)):
            if not sb.ping(first, target, timeout_s=3):
                raise BenchError(f"{first} cannot ping {target} on br{i}")


def verify_removed(sb: Sandbox) -> None:
    left = json.loads(sb.run(["ip", "-j", "link", "show"]).stdout)
    names = [link["ifname"] for link in left if link["ifname"] != "lo"]
    netns = sb.run(["ip", "netns", "list"]).stdout.split()
    if names or netns:
        raise BenchError(f"teardown left {len(names)} links, {len(netns)} namespaces")


# -- the ways of building -----------------------------------------------------------------


def run_script_method(
    work: Path, n: int, down: bool, render_args: list[str], snooping: bool | None = None
) -> tuple[float, float | None]:
    spec = write_spec(work / "spec.yaml", n, snooping=snooping)
    setup, teardown = work / "setup.sh", work / "teardown.sh"
    for path, extra in ((setup, []), (teardown, ["--teardown"])):
        res = netgen("render", str(spec), *render_args, *extra, "-o", str(path))
        if res.returncode != 0:
            raise BenchError(f"netgen render failed: {res.stderr.strip()}")
    with Sandbox.start() as sb:
        up = timed(sb, ["bash", str(setup)], "setup script")
        verify_built(sb, n)
        if not down:
            return up, None
        took = timed(sb, ["bash", str(teardown)], "teardown script")
        verify_removed(sb)
    return up, took


def run_apply(work: Path, n: int, down: bool) -> tuple[float, float | None]:
    spec = str(write_spec(work / "spec.yaml", n))
    with Sandbox.start() as sb:
        up = timed(sb, [PYTHON, "-m", "netgen", "apply", spec], "netgen apply")
        verify_built(sb, n)
        if not down:
            return up, None
        took = timed(sb, [PYTHON, "-m", "netgen", "destroy", spec], "netgen destroy")
        verify_removed(sb)
    return up, took


CNI_SETUP = """set -euo pipefail
export CNI_PATH={cni_dir} CNI_IFNAME=eth0
for i in $(seq 0 $(({n} - 1))); do ip netns add "c$i"; done
for i in $(seq 0 $(({n} - 1))); do
\tCNI_COMMAND=ADD CNI_CONTAINERID="c$i" CNI_NETNS="/var/run/netns/c$i" \\
\t\t{cni_dir}/bridge <"{state}/br$((i * {k} / {n})).conf" >/dev/null
done
"""
CNI_TEARDOWN = """set -euo pipefail
export CNI_PATH={cni_dir} CNI_IFNAME=eth0
for i in $(seq 0 $(({n} - 1))); do
\tCNI_COMMAND=DEL CNI_CONTAINERID="c$i" CNI_NETNS="/var/run/netns/c$i" \\
\t\t{cni_dir}/bridge <"{state}/br$((i * {k} / {n})).conf" >/dev/null
\tip netns delete "c$i"
done
for i in $(seq 0 $(({k} - 1))); do ip link delete dev "br$i"; done
"""


def run_cni(work: Path, n: int, down: bool) -> tuple[float, float | None]:
    k = bridges_for(n)
    fields = {"cni_dir": CNI_DIR, "n": n, "k": k, "state": CNI_STATE}
    setup, teardown = work / "cni-setup.sh", work / "cni-teardown.sh"
    setup.write_text(CNI_SETUP.format(**fields))
    teardown.write_text(CNI_TEARDOWN.format(**fields))
    with Sandbox.start() as sb:
        sb.run(["mkdir", "-p", f"{CNI_STATE}/ipam"])
        for i in range(k):
            conf = {
                "cniVersion": "1.0.0",
                "name": f"bench-br{i}",
                "type": "bridge",
                "bridge": f"br{i}",
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "dataDir": f"{CNI_STATE}/ipam",  # never the host's /var/lib/cni
                    "ranges": [[{"subnet": str(subnet(i))}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }
            sb.run(["tee", f"{CNI_STATE}/br{i}.conf"], input=json.dumps(conf))
        up = timed(sb, ["bash", str(setup)], "CNI ADD loop")
        verify_built(sb, n)
        if not down:
            return up, None
        took = timed(sb, ["bash", str(teardown)], "CNI DEL loop")
        verify_removed(sb)
    return up, took


Runner = Callable[[Path, int, bool], tuple[float, float | None]]  # (work, n, tear down?)
RUNNERS: dict[str, Runner] = {
    "apply": run_apply,
    "script": lambda w, n, d: run_script_method(w, n, d, []),
    "batch": lambda w, n, d: run_script_method(w, n, d, ["--batch"]),
    "batch-nosnoop": lambda w, n, d: run_script_method(w, n, d, ["--batch"], snooping=False),
    "chapter": lambda w, n, d: run_script_method(w, n, d, ["--dialect", "brctl"]),
    "cni": run_cni,
}


# -- rendering a big spec -----------------------------------------------------------------

_MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
with open(sys.argv[1], "w") as out:
    rc = subprocess.run(sys.argv[2:], stdout=out).returncode
took = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": rc, "seconds": took, "peak_kib": peak}))
"""


COMPILE_RUNS = 3  # rendering is deterministic work: the median of a few runs, and their range


def compile_cost(work: Path, n: int, extra: list[str]) -> dict[str, Any]:
    """Time and peak RSS of `netgen render`, each run measured by a fresh parent process
    once the CPUs are idle (the kernel may still be freeing the last sandbox's namespaces)."""
    spec = write_spec(work / f"spec-{n}.yaml", n)
    out = work / "rendered.sh"
    argv = [PYTHON, "-c", _MEASURE, str(out), PYTHON, "-m", "netgen", "render", str(spec), *extra]
    runs = []
    for _ in range(COMPILE_RUNS):
        quiesce()
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
        run = json.loads(done.stdout)
        if run["rc"] != 0 or out.stat().st_size == 0:
            raise BenchError(f"netgen render {' '.join(extra)} of {n} containers failed")
        runs.append(run)
    return {
        "containers": n,
        "bridges": bridges_for(n),
        "args": " ".join(["render", *extra]),
        "seconds": statistics.median(r["seconds"] for r in runs),
        "runs_s": [r["seconds"] for r in runs],
        "peak_kib": max(r["peak_kib"] for r in runs),
        "script_lines": sum(1 for _ in out.open()),
    }


# -- the machine --------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ip = subprocess.run(["ip", "-V"], capture_output=True, text=True).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "iproute2": re.sub(r"^ip utility, (iproute2-)?", "", ip).split(",")[0],
        "python": platform.python_version(),
    }


def cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


def quiesce(limit: float = 3.0) -> None:
    """Wait (at most `limit` s) for the CPUs to be mostly idle: the kernel frees a
    deleted namespace in the background, and that work must not land in the next run."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        idle0, total0 = cpu_times()
        time.sleep(0.25)
        idle1, total1 = cpu_times()
        if total1 > total0 and (idle1 - idle0) / (total1 - total0) > 0.9:
            return


def apply_available() -> bool:
    return netgen("apply", "--help").returncode == 0


# -- reporting ----------------------------------------------------------------------------


def table(results: list[Result], reference: str, smallest: int) -> str:
    head = (
        "method",
        "N",
        "bridges",
        "setup s",
        "ms/ctr",
        f"x {reference}",
        f"ms/ctr x N={smallest}",
        "teardown s",
    )
    rows = [head]
    for r in results:
        rows.append(
            (
                METHODS[r.method],
                str(r.containers),
                str(r.bridges),
                _num(r.setup_s, 2),
                _num(r.ms_per_container, 2),
                _num(r.ratio, 1),
                _num(r.growth, 2),
                _num(r.teardown_s, 2) if r.teardown_s is not None else r.note or "n/a",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for j, row in enumerate(rows):
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _num(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run: --sizes 100,300 --compile-size 1000 (about a minute)",
    )
    parser.add_argument(
        "--sizes",
        default="100,300,1000",
        help="container counts, up to 1000 a bridge (default: %(default)s; add 3000 for "
        "three bridges: 2 to 3 minutes more)",
    )
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"any of {', '.join(METHODS)} (default: all)"
    )
    parser.add_argument(
        "--slow-max",
        type=int,
        default=1000,
        help="largest size for the one-process-a-step ways: "
        f"{', '.join(SLOW)} (default: %(default)s)",
    )
    parser.add_argument(
        "--slow-teardown-max",
        type=int,
        default=300,
        help="largest size at which their removal is timed too (default: %(default)s)",
    )
    parser.add_argument(
        "--compile-size",
        type=int,
        default=10000,
        help="containers in the spec to render (0: skip; default: %(default)s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per way and size, each in a fresh sandbox; the median counts (default: 1)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.compile_size = "100,300", 1000

    sizes = [int(s) for s in args.sizes.split(",") if s]
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown method(s): {', '.join(sorted(unknown))}")
    reason = unavailable_reason()
    if reason is not None:
        print(f"bench: cannot make a sandbox: {reason}", file=sys.stderr)
        return 2
    if "cni" in methods and not (CNI_DIR / "bridge").exists():
        print(
            f"bench: no {CNI_DIR}/bridge (apt install containernetworking-plugins): skipping CNI",
            file=sys.stderr,
        )
        methods.remove("cni")
    has_apply = apply_available()
    reference = "apply" if has_apply and "apply" in methods else "batch"

    info = machine()
    info["load_before"] = load_average()
    print(
        f"# {info['cpus']} CPUs ({info['cpu']}), kernel {info['kernel']}, "
        f"iproute2 {info['iproute2']}, Python {info['python']}",
        file=sys.stderr,
    )
    results: list[Result] = []
    failed = False
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="netgen-bench-") as tmp:
        work = Path(tmp)
        for n in sizes:
            todo: list[Result] = []
            for method in methods:
                r = Result(method, n, bridges_for(n))
                results.append(r)
                if method == "apply" and not has_apply:
                    r.note = "n/a (no netgen apply)"
                elif method in SLOW and n > args.slow_max:
                    r.note = f"skipped (> --slow-max {args.slow_max})"
                else:
                    todo.append(r)
            # Repeats go round the ways, so a burst of load elsewhere hits them all alike.
            for _ in range(args.repeat):
                for r in todo:
                    if r.note == "FAILED":
                        continue
                    # Removal costs as much as building for the slow ways: timed up to a size.
                    down = r.method not in SLOW or n <= args.slow_teardown_max
                    print(f"# {METHODS[r.method]}, {n} containers ...", file=sys.stderr, flush=True)
                    quiesce()
                    try:
                        r.runs.append(RUNNERS[r.method](work, n, down))
                    except (BenchError, subprocess.SubprocessError) as exc:
                        failed = True
                        r.note = "FAILED"
                        print(f"bench: {METHODS[r.method]}, {n}: {exc}", file=sys.stderr)
            for r in todo:
                if r.note == "FAILED" or not r.runs:
                    continue
                r.setup_s = statistics.median(up for up, _ in r.runs)
                r.ms_per_container = r.setup_s * 1000 / n
                downs = [down for _, down in r.runs if down is not None]
                r.teardown_s = statistics.median(downs) if downs else None
                if not downs:
                    r.note = f"(> --slow-teardown-max {args.slow_teardown_max})"
        for r in results:
            ref = next(
                (x for x in results if x.method == reference and x.containers == r.containers),
                None,
            )
            if r.setup_s is not None and ref is not None and ref.setup_s:
                r.ratio = r.setup_s / ref.setup_s
            first = next(
                (x for x in results if x.method == r.method and x.containers == min(sizes)),
                None,
            )
            if r.ms_per_container is not None and first is not None and first.ms_per_container:
                r.growth = r.ms_per_container / first.ms_per_container
        compiled = []
        if args.compile_size:
            for extra in ([], ["--batch"]):
                compiled.append(compile_cost(work, args.compile_size, extra))
    elapsed = time.perf_counter() - started
    info["load_after"] = load_average()

    print(
        f"# {info['cpus']} CPUs ({info['cpu']}), kernel {info['kernel']}, "
        f"iproute2 {info['iproute2']}, Python {info['python']}; load average "
        f"{info['load_before']} before, {info['load_after']} after ({elapsed:.0f} s)"
    )
    print(table(results, "apply" if reference == "apply" else "batch", min(sizes)))
    for c in compiled:
        print(
            f"netgen {c['args']}: {c['containers']} containers over {c['bridges']} bridges: "
            f"{c['seconds']:.2f} s (median of {len(c['runs_s'])}: "
            f"{min(c['runs_s']):.2f} to {max(c['runs_s']):.2f}), "
            f"peak RSS {c['peak_kib'] / 1024:.0f} MiB, "
            f"{c['script_lines']} lines"
        )
    print(f"# whole run: {elapsed:.0f} s", file=sys.stderr)
    if args.json:
        doc = {
            "machine": info,
            "reference": reference,
            "results": [asdict(r) for r in results],
            "compile": compiled,
            "elapsed_s": elapsed,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
