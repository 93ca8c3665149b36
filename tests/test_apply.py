"""`netgen apply / destroy / plan` against a real kernel, always inside the sandbox.

netgen itself runs inside the sandbox (`python -m netgen ...`, or a small driver
that calls `netgen.execute` with a RecordingRunner to inject failures), so
every change it makes lands in the sandbox's private network and mount
namespaces. Addresses come from private ranges that only exist in there.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from scriptcheck import single_host_specs

from netgen import lower, render, spec
from netgen import model as m
from netgen import ops as o
from netgen.sandbox import Sandbox
from netgen.state import decode_op, encode_op

SPECS = single_host_specs(Path(__file__).resolve().parent.parent / "specs")
NETGEN = [sys.executable, "-m", "netgen"]

kernel = pytest.mark.kernel

# Runs inside the sandbox: apply/destroy through a RecordingRunner around the real
# runner, one run per word VERB[:FAIL_AT[:ACTION:AT[:ARG]]], printing one JSON line
# per run. The runs come from the command line, or line by line on stdin (one
# long-lived process for a loop: a Python start costs more than a run). ACTION
# happens just before command AT: crash (stop dead: no rollback, the record left
# as a killed process leaves it), kill (SIGKILL ourselves), term (SIGTERM
# ourselves), link NAME (someone makes a bridge NAME after pre-flight), pid PID
# (the adopted process dies).
DRIVER = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys
    from netgen import execute, lower, spec
    from netgen.errors import HostError

    class Crash(BaseException):
        pass

    path, dialect, *runs = sys.argv[1:]
    s = spec.load(path)
    ops = lower.lower(s)

    def do(run):
        parts = run.split(":")
        verb, fail_at, action, at, arg = parts + ["", "0", "none", "0", ""][len(parts) :]

        def before(k, cmd):
            if k != int(at):
                return
            if action == "crash":
                raise Crash()
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if action == "term":
                os.kill(os.getpid(), signal.SIGTERM)
            if action == "link":
                subprocess.run(["ip", "link", "add", "name", arg, "type", "bridge"], check=True)
            if action == "pid":
                os.kill(int(arg), signal.SIGKILL)

        runner = execute.RecordingRunner(
            execute.RealRunner(), fail_at=int(fail_at) or None, before=before
        )
        out = {"run": run, "rc": 0, "error": "", "commands": 0}
        try:
            getattr(execute, verb)(s, ops, dialect=dialect, runner=runner)
        except HostError as exc:
            out.update(rc=1, error=str(exc))
        except Crash:
            out.update(rc=-9)
        out["commands"] = len(runner.commands)
        print(json.dumps(out), flush=True)

    """
)
# The drivers' main loop (here and in test_fastpath): the runs come from the command
# line, or with `--serve` a line at a time on stdin until EOF. The runs' own children
# get /dev/null as stdin, so none of them can read the next run.
SERVE = textwrap.dedent(
    """
    if runs[:1] == ["--serve"]:
        requests = os.fdopen(os.dup(0))
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        for line in requests:
            for run in line.split():
                do(run)
    else:
        for run in runs:
            do(run)
    """
)
DRIVER += SERVE

# A spec with everything apply handles: two bridges, a container on both,
# files, a point-to-point link and a route over it.
FULL = """\
version: 1
name: full
bridges:
  brf1:
    subnet: 10.81.0.0/24
  brf2:
    subnet: 10.82.0.0/24
    mtu: 1400
containers:
  web:
    interfaces:
      - bridge: brf1
      - bridge: brf2
        mac: 02:00:0a:52:00:0a
    hostname: web.test
    dns:
      nameservers: [10.81.0.1]
    link: [db]
  db:
    network: brf1
    hosts:
      web.test: 10.81.0.2
  solo:
    network: none
links:
  - endpoints: [web:p2p0, solo:p2p0]
    addresses: [10.83.0.1/32, 10.83.0.2/32]
"""


def netgen(sb: Sandbox, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return sb.run([*NETGEN, *args], check=check, timeout=300)


def drive(sb: Sandbox, path: Path, *runs: str, dialect: str = "iproute2") -> list[dict[str, Any]]:
    """Run the driver; one result per run (fewer if it killed itself)."""
    res = sb.run([sys.executable, "-c", DRIVER, str(path), dialect, *runs], check=False)
    assert res.returncode in (0, -signal.SIGKILL), res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def drive1(sb: Sandbox, path: Path, run: str, dialect: str = "iproute2") -> dict[str, Any]:
    (result,) = drive(sb, path, run, dialect=dialect)
    return result


class Driver:
    """A driver program as one long-lived process in the sandbox, fed runs on its stdin
    (`--serve`): a run's JSON line is read before the next is sent, and a driver that
    died fails the test instead of blocking it."""

    def __init__(self, sb: Sandbox, argv: list[str]) -> None:
        self.proc = sb.spawn([*argv, "--serve"], stdin=subprocess.PIPE)

    def __call__(self, *runs: str) -> list[dict[str, Any]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(" ".join(runs) + "\n")
        self.proc.stdin.flush()
        out = []
        for _ in runs:
            line = self.proc.stdout.readline()
            assert line, f"driver died: {self.proc.stderr.read() if self.proc.stderr else ''}"
            out.append(json.loads(line))
        return out

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait() == 0, self.proc.stderr.read() if self.proc.stderr else ""


def apply_driver(sb: Sandbox, path: Path, dialect: str = "iproute2") -> Driver:
    """DRIVER (apply/destroy through a RecordingRunner) for the spec at `path`."""
    return Driver(sb, [sys.executable, "-c", DRIVER, str(path), dialect])


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def commands(sb: Sandbox, path: Path, *extra: str) -> list[str]:
    res = netgen(sb, "apply", "--dry-run", *extra, str(path), check=True)
    return res.stdout.splitlines()


def prepare(sb: Sandbox, s: m.Spec) -> None:
    """What a spec expects to find: uplink NICs (up, as a real NIC is), external bridges,
    and, for a firewall, iptables' nat and filter tables (iptables cannot delete them, so
    on a host without them destroy would leave empty ones; every real host has them)."""
    if any(isinstance(op, o.AddFirewall) for op in lower.lower(s)):
        for table in ("nat", "filter"):
            sb.run(["iptables", "-w", "-t", table, "-N", "NETGEN-TEST-PREP"])
            sb.run(["iptables", "-w", "-t", table, "-X", "NETGEN-TEST-PREP"])
    for bridge in s.bridges:
        if bridge.external:
            sb.run(["ip", "link", "add", "name", bridge.name, "type", "bridge"])
        for up in bridge.uplinks:
            # a dummy NIC; this kernel may lack the dummy module, then a tap stands in
            made = sb.run(["ip", "link", "add", "name", up, "type", "dummy"], check=False)
            if made.returncode != 0:
                sb.run(["ip", "tuntap", "add", "dev", up, "mode", "tap"])
            sb.run(["ip", "link", "set", "dev", up, "up"])


def gateways(s: m.Spec) -> list[tuple[str, str]]:
    """(netns, bridge address) for every container leg on a bridge netgen builds."""
    out = []
    for c in s.containers:
        if c.owns_netns and c.netns is not None:
            for leg in c.interfaces:
                out.append((c.netns, str(s.bridge(leg.bridge).address)))
    return out


def assert_pings(sb: Sandbox, s: m.Spec) -> None:
    for netns, gateway in gateways(s):
        assert sb.ping(netns, gateway), f"{netns} cannot reach its gateway {gateway}"


def link_names(sb: Sandbox, netns: str | None = None) -> set[str]:
    argv = ["ip", "-j", "link", "show"] if netns is None else ["ip", "-n", netns, "-j", "link"]
    return {link["ifname"] for link in json.loads(sb.run(argv).stdout)}


def record(sb: Sandbox, name: str) -> dict[str, Any] | None:
    res = sb.run(["cat", f"/run/netgen/specs/{name}.json"], check=False)
    return json.loads(res.stdout) if res.returncode == 0 else None


# -- every example spec ------------------------------------------------------------


@kernel
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_apply_matches_script_and_destroy_restores(sandbox: Sandbox, path: Path) -> None:
    s = spec.load(path)
    if any(c.pid is not None for c in s.containers):
        pytest.skip("adopts a process of a particular host (see test_pid_adoption)")
    prepare(sandbox, s)
    before = sandbox.state()

    netgen(sandbox, "apply", str(path), check=True)
    applied = sandbox.state()
    assert_pings(sandbox, s)
    assert record(sandbox, s.name) is not None

    # a second apply runs nothing and changes nothing
    assert commands(sandbox, path) == []
    assert "already applied" in netgen(sandbox, "apply", str(path), check=True).stderr
    assert sandbox.state() == applied

    with Sandbox.start() as other:
        # the rendered script (`netgen render SPEC | bash`) builds exactly the same host;
        # netgen takes it as its own and destroys it
        prepare(other, s)
        other_before = other.state()
        other.run(["bash"], input=render.render(s, lower.lower(s)))
        assert other.state() == applied
        assert commands(other, path) == []
        netgen(other, "destroy", str(path), check=True)
        assert other.state() == other_before
        other.run(["bash"], input=render.render(s, lower.lower(s), dialect="brctl"))
        by_brctl_script = other.state()

    netgen(sandbox, "destroy", str(path), check=True)
    assert sandbox.state() == before
    assert record(sandbox, s.name) is None

    # the brctl dialect, likewise: the same host as its script, and a clean destroy
    netgen(sandbox, "apply", "--dialect", "brctl", str(path), check=True)
    assert sandbox.state() == by_brctl_script
    assert commands(sandbox, path, "--dialect", "brctl") == []
    netgen(sandbox, "destroy", str(path), check=True)
    assert sandbox.state() == before


# -- ownership -------------------------------------------------------------------


def small(name: str, bridge: str, octet: int, container: str) -> str:
    return f"""\
    version: 1
    name: {name}
    bridges:
      {bridge}:
        subnet: 10.{octet}.0.0/24
    containers:
      {container}:
        network: {bridge}
    """


@kernel
def test_two_specs_side_by_side(sandbox: Sandbox, tmp_path: Path) -> None:
    a = write(tmp_path, "a", small("a", "bra", 71, "ca"))
    b = write(tmp_path, "b", small("b", "brb", 72, "cb"))
    before = sandbox.state()
    netgen(sandbox, "apply", str(a), check=True)
    netgen(sandbox, "apply", str(b), check=True)
    netgen(sandbox, "destroy", str(a), check=True)
    assert sandbox.ping("cb", "10.72.0.1")
    assert "bra" not in link_names(sandbox)
    assert "ca" not in sandbox.run(["ip", "netns", "list"]).stdout

    # a third spec naming b's bridge is refused, and its destroy leaves b alone
    intruder = write(tmp_path, "intruder", small("intruder", "brb", 73, "ci"))
    applied_b = sandbox.state()
    res = netgen(sandbox, "apply", str(intruder))
    assert res.returncode == 1
    assert "brb" in res.stderr and "belongs to netgen spec 'b'" in res.stderr
    res = netgen(sandbox, "destroy", str(intruder), check=True)
    assert "left alone: bridge brb" in res.stderr
    assert sandbox.state() == applied_b
    assert sandbox.ping("cb", "10.72.0.1")

    netgen(sandbox, "destroy", str(b), check=True)
    assert sandbox.state() == before


@kernel
def test_pre_existing_bridge_is_refused_and_never_destroyed(sandbox: Sandbox) -> None:
    path = SPECS[[p.stem for p in SPECS].index("walkthrough")]
    sandbox.run(["ip", "link", "add", "name", "docker0", "type", "bridge"])
    before = sandbox.state()
    res = netgen(sandbox, "apply", str(path))
    assert res.returncode == 1
    assert res.stdout == ""
    assert "bridge docker0" in res.stderr and "not created by netgen" in res.stderr
    assert "walkthrough.yaml:6 bridges.docker0" in res.stderr
    assert sandbox.state() == before
    assert netgen(sandbox, "plan", str(path)).returncode == 1
    assert netgen(sandbox, "destroy", "--dry-run", str(path), check=True).stdout == ""
    netgen(sandbox, "destroy", str(path), check=True)
    assert sandbox.state() == before


@kernel
def test_external_bridge_must_exist_and_is_never_deleted(sandbox: Sandbox, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ext",
        """\
        version: 1
        name: ext
        bridges:
          docker0:
            subnet: 10.74.0.0/24
            external: true
        containers:
          web: {}
        """,
    )
    before = sandbox.state()
    res = netgen(sandbox, "apply", str(path))
    assert res.returncode == 1 and "bridge docker0 does not exist" in res.stderr
    assert sandbox.state() == before

    sandbox.sh("ip link add name docker0 type bridge && ip addr add 10.74.0.1/24 dev docker0")
    sandbox.run(["ip", "link", "set", "dev", "docker0", "up"])
    before = sandbox.state()
    netgen(sandbox, "apply", str(path), check=True)
    assert sandbox.ping("web", "10.74.0.1")
    netgen(sandbox, "destroy", str(path), check=True)
    assert sandbox.state() == before


@kernel
def test_changed_spec_removes_what_the_old_version_built(sandbox: Sandbox, tmp_path: Path) -> None:
    v1 = """\
        version: 1
        name: evolving
        bridges:
          brv:
            subnet: 10.75.0.0/24
        containers:
          web:
            address: 10.75.0.10
          old:
            host_ifname: vold-web
            dns:
              nameservers: [10.75.0.1]
        """
    v2 = """\
        version: 1
        name: evolving
        bridges:
          brv:
            subnet: 10.75.0.0/24
        containers:
          web:
            address: 10.75.0.11
            hosts:
              db: 10.75.0.12
          db:
            address: 10.75.0.12
        """
    path = write(tmp_path, "evolving", v1)
    before = sandbox.state()
    netgen(sandbox, "apply", str(path), check=True)
    path.write_text(textwrap.dedent(v2))
    lines = netgen(sandbox, "plan", str(path), check=True).stdout.splitlines()
    assert "- veth vold-web <-> old:eth0" in lines
    assert "- netns old" in lines
    assert "- file /etc/netns/old/resolv.conf" in lines
    assert any(line.startswith("~ veth") and "web:eth0" in line for line in lines)
    assert "+ netns db" in lines
    assert "+ file /etc/netns/web/hosts" in lines
    plan_json = json.loads(netgen(sandbox, "plan", "--json", str(path), check=True).stdout)
    assert {c["action"] for c in plan_json["changes"]} >= {"+", "-", "~"}

    netgen(sandbox, "apply", str(path), check=True)
    changed = sandbox.state()
    assert commands(sandbox, path) == []
    assert "old" not in sandbox.run(["ip", "netns", "list"]).stdout
    assert sandbox.ping("web", "10.75.0.12")

    with Sandbox.start() as fresh:  # the same host as a clean apply of v2
        netgen(fresh, "apply", str(path), check=True)
        assert fresh.state() == changed

    # destroy goes by the record, even with the spec file changed back since
    path.write_text(textwrap.dedent(v1))
    netgen(sandbox, "destroy", str(path), check=True)
    assert sandbox.state() == before


# -- all or nothing ------------------------------------------------------------


@kernel
def test_failure_at_every_command_rolls_back(sandbox: Sandbox, tmp_path: Path) -> None:
    path = write(tmp_path, "full", FULL)
    before = sandbox.state()
    total = len(commands(sandbox, path))
    assert total > 40
    drive = apply_driver(sandbox, path)
    for k in range(1, total + 1):
        (res,) = drive(f"apply:{k}")
        assert res["rc"] == 1 and res["commands"] >= k, f"k={k}: {res}"
        assert f"injected failure at command {k}" in res["error"]
        assert "rolled back: the host is as it was before" in res["error"], f"k={k}: {res}"
        assert sandbox.state() == before, f"k={k}: state differs after rollback"
        assert record(sandbox, "full") is None

    # destroy is all or nothing too: a failure rebuilds what it had removed
    (res,) = drive("apply")
    assert res["rc"] == 0
    applied = sandbox.state()
    removals = netgen(sandbox, "destroy", "--dry-run", str(path), check=True).stdout.splitlines()
    for k in range(1, len(removals) + 1):
        (res,) = drive(f"destroy:{k}")
        assert res["rc"] == 1 and "rolled back" in res["error"], f"k={k}: {res}"
        assert sandbox.state() == applied, f"k={k}: destroy's rollback did not rebuild"
    drive.close()
    assert commands(sandbox, path) == []
    netgen(sandbox, "destroy", str(path), check=True)
    assert sandbox.state() == before


@kernel
def test_kernel_refusal_rolls_back_and_names_the_spec_line(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "refused",
        """\
        version: 1
        name: refused
        bridges:
          brr:
            subnet: 10.76.0.0/24
        containers:
          web:
            dns:
              nameservers: [10.76.0.1]
            routes:
              - to: 10.9.0.0/24
                via: 10.99.99.1
        """,
    )
    before = sandbox.state()
    res = netgen(sandbox, "apply", str(path))
    assert res.returncode == 1
    assert res.stdout == ""
    assert "ip -n web route add 10.9.0.0/24 via 10.99.99.1" in res.stderr
    assert "Nexthop has invalid gateway" in res.stderr
    assert f"{path}:11:" in res.stderr and "containers.web.routes[0]" in res.stderr
    assert "rolled back" in res.stderr
    assert sandbox.state() == before
    assert record(sandbox, "refused") is None


@kernel
def test_conflict_appearing_after_preflight_rolls_back(sandbox: Sandbox, tmp_path: Path) -> None:
    path = write(tmp_path, "full", FULL)
    last = [c for c in spec.load(path).containers if c.interfaces][-1]
    name = last.interfaces[-1].host_ifname
    before = sandbox.state()
    res = drive1(sandbox, path, f"apply:0:link:1:{name}")
    assert res["rc"] == 1
    assert f"ip link add name {name}" in res["error"] and "File exists" in res["error"]
    assert "rolled back" in res["error"]
    assert name in link_names(sandbox)  # theirs: untouched by the rollback
    sandbox.run(["ip", "link", "delete", "dev", name])
    assert sandbox.state() == before


@kernel
def test_sigterm_rolls_back(sandbox: Sandbox, tmp_path: Path) -> None:
    path = write(tmp_path, "full", FULL)
    before = sandbox.state()
    res = drive1(sandbox, path, "apply:0:term:20")
    assert res["rc"] == 1 and res["commands"] > 20
    assert "interrupted by SIGTERM" in res["error"] and "rolled back" in res["error"]
    assert sandbox.state() == before


# -- crashes and concurrency -----------------------------------------------------


# Smaller than FULL, for the crash loops (each crash point costs a destroy and two
# applies): a bridge, a container with files, and a link into a `none` container.
CRASHY = """\
version: 1
name: crashy
bridges:
  brc:
    subnet: 10.84.0.0/24
containers:
  web:
    dns:
      nameservers: [10.84.0.1]
  solo:
    network: none
links:
  - endpoints: [web:p2p0, solo:p2p0]
    addresses: [10.85.0.1/32, 10.85.0.2/32]
"""


@kernel
@pytest.mark.parametrize("dialect", ["iproute2", "brctl"])
def test_apply_after_crash_at_every_command_converges(
    sandbox: Sandbox, tmp_path: Path, dialect: str
) -> None:
    """A run that stops dead at command k (no rollback) is finished by the next apply."""
    path = write(tmp_path, "crashy", CRASHY)
    before = sandbox.state()
    total = len(commands(sandbox, path, "--dialect", dialect))
    netgen(sandbox, "apply", "--dialect", dialect, str(path), check=True)
    built = sandbox.state()
    drive = apply_driver(sandbox, path, dialect)
    for k in range(1, total + 1):
        gone, crashed, again, third = drive("destroy", f"apply:0:crash:{k}", "apply", "apply")
        assert gone["rc"] == 0, gone
        assert crashed["rc"] == -9 and crashed["commands"] == k
        assert again["rc"] == 0, f"k={k}: {again}"
        assert third == {"run": "apply", "rc": 0, "error": "", "commands": 0}, f"k={k}"
        assert sandbox.state() == built, f"k={k}: apply after the crash did not converge"
    drive.close()
    netgen(sandbox, "destroy", str(path), check=True)
    assert sandbox.state() == before


@kernel
def test_apply_after_sigkill_converges(sandbox: Sandbox, tmp_path: Path) -> None:
    path = write(tmp_path, "full", FULL)
    before = sandbox.state()
    for k in (9, 17, 40):  # inside a veth (alias pending), a netns, the link
        assert drive(sandbox, path, f"apply:0:kill:{k}") == []  # died: no output
        assert record(sandbox, "full")["complete"] is False  # type: ignore[index]
        netgen(sandbox, "apply", str(path), check=True)
        assert commands(sandbox, path) == []
        assert_pings(sandbox, spec.load(path))
        netgen(sandbox, "destroy", str(path), check=True)
        assert sandbox.state() == before


@kernel
def test_kill_9_midway_then_apply_converges(sandbox: Sandbox, tmp_path: Path) -> None:
    names = [f"c{i}" for i in range(24)]
    text = "version: 1\nname: many\nbridges:\n  brm:\n    subnet: 10.77.0.0/24\ncontainers:\n"
    text += "".join(f"  {n}: {{}}\n" for n in names)
    path = tmp_path / "many.yaml"
    path.write_text(text)
    before = sandbox.state()
    proc = sandbox.spawn([*NETGEN, "apply", str(path)])
    for _ in range(100_000):  # until it is midway (a few namespaces made) or done
        made = sandbox.run(["ls", "/run/netns"]).stdout.split()
        if len(made) >= 3 or proc.poll() is not None:
            break
    midway = proc.poll() is None
    proc.kill()
    proc.wait()
    if midway:  # (else it finished first: the re-apply below must then run nothing)
        assert record(sandbox, "many")["complete"] is False  # type: ignore[index]
    netgen(sandbox, "apply", str(path), check=True)
    assert commands(sandbox, path) == []
    assert_pings(sandbox, spec.load(path))
    netgen(sandbox, "destroy", str(path), check=True)
    assert sandbox.state() == before


@kernel
def test_concurrent_applies_of_different_specs(sandbox: Sandbox, tmp_path: Path) -> None:
    specs = [
        write(tmp_path, name, small(name, f"br{name}", octet, f"c{name}"))
        for name, octet in (("p", 78), ("q", 79))
    ]
    procs = [sandbox.spawn([*NETGEN, "apply", str(p)]) for p in specs]
    for proc in procs:
        _, err = proc.communicate()
        assert proc.returncode == 0, err
    assert sandbox.ping("cp", "10.78.0.1")
    assert sandbox.ping("cq", "10.79.0.1")
    procs = [sandbox.spawn([*NETGEN, "destroy", str(p)]) for p in specs]
    for proc in procs:
        _, err = proc.communicate()
        assert proc.returncode == 0, err
    assert sandbox.run(["ip", "netns", "list"]).stdout == ""


# -- pre-flight and pid adoption ---------------------------------------------------


def pid_spec(tmp_path: Path, pid: int) -> Path:
    return write(
        tmp_path,
        "adopt",
        f"""\
        version: 1
        name: adopt
        bridges:
          bra:
            subnet: 10.80.0.0/24
        containers:
          web:
            pid: {pid}
            address: 10.80.0.5
        """,
    )


def spawn_sleeper(sb: Sandbox) -> subprocess.Popen[str]:
    proc = sb.spawn(["unshare", "-n", "sleep", "600"])
    for _ in range(100_000):  # until unshare has exec'd sleep in its new namespace
        comm = sb.run(["cat", f"/proc/{proc.pid}/comm"], check=False).stdout.strip()
        if comm == "sleep":
            return proc
    raise AssertionError("unshare -n sleep did not start")


@kernel
def test_pid_adoption(sandbox: Sandbox, tmp_path: Path) -> None:
    sleeper = spawn_sleeper(sandbox)
    try:
        path = pid_spec(tmp_path, sleeper.pid)
        before = sandbox.state()
        netgen(sandbox, "apply", str(path), check=True)
        target = sandbox.run(["readlink", "/var/run/netns/web"]).stdout.strip()
        assert target == f"/proc/{sleeper.pid}/ns/net"
        addr = json.loads(sandbox.run(["ip", "-n", "web", "-j", "addr", "show", "eth0"]).stdout)
        assert "10.80.0.5" in {a["local"] for a in addr[0]["addr_info"]}
        assert sandbox.ping("web", "10.80.0.1")
        assert commands(sandbox, path) == []
        veth = spec.load(path).containers[0].interfaces[0].host_ifname
        netgen(sandbox, "destroy", str(path), check=True)
        assert sandbox.run(["test", "-e", "/var/run/netns/web"], check=False).returncode == 1
        assert veth not in link_names(sandbox)
        assert sandbox.state() == before
    finally:
        sleeper.kill()
        sleeper.wait()


@kernel
def test_adopted_process_exiting_midway_rolls_back(sandbox: Sandbox, tmp_path: Path) -> None:
    sleeper = spawn_sleeper(sandbox)
    path = pid_spec(tmp_path, sleeper.pid)
    before = sandbox.state()
    res = drive1(sandbox, path, f"apply:0:pid:1:{sleeper.pid}")
    sleeper.wait()
    assert res["rc"] == 1
    assert "Cannot open network namespace" in res["error"] and "rolled back" in res["error"]
    assert "containers.web" in res["error"]
    assert sandbox.state() == before

    # and with the process gone before apply starts: refused before anything changes
    res = netgen(sandbox, "apply", str(path))
    assert res.returncode == 1 and f"no process {sleeper.pid}" in res.stderr
    assert sandbox.state() == before


@kernel
def test_missing_ip_command_names_the_package(sandbox: Sandbox) -> None:
    res = sandbox.run(
        ["env", "PATH=/nonexistent", sys.executable, "-m", "netgen", "apply", str(SPECS[0])],
        check=False,
    )
    assert res.returncode == 1
    assert "ip (install the Debian package iproute2)" in res.stderr


def test_non_root_is_refused_before_anything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In-process on the real host, so the runner only records: nothing could change."""
    from netgen import execute
    from netgen.errors import HostError

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setenv("NETGEN_STATE_DIR", str(tmp_path / "state"))
    s = spec.load(SPECS[0])
    runner = execute.RecordingRunner()
    with pytest.raises(HostError, match="must run as root"):
        execute.apply(s, lower.lower(s), runner=runner)
    assert runner.commands == []
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_record_round_trips_every_op(path: Path) -> None:
    for op in lower.lower(spec.load(path)):
        again = decode_op(json.loads(json.dumps(encode_op(op))))
        assert again == op and again.loc == op.loc
