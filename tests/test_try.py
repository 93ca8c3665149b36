"""`netgen try`: build a spec in a throw-away sandbox, prove it, tear it down; the host
is never touched.

The host is only *read* here (`ip -j link`, `ip -j addr`, `/run/netns`, `iptables-save`,
`nft list ruleset`), before and after, to prove that. The second half is netgen's own
kernel tests written with the plugin's `netgen_sandbox` fixture, as a user would write
them: the machinery `netgen try` uses, so there is one sandbox implementation, not two.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from scriptcheck import single_host_specs

from netgen import cli, fleettrial, sandbox, trial
from netgen.errors import UsageError
from netgen.pytest_plugin import NetgenSandbox, sandbox_unavailable

ROOT = Path(__file__).resolve().parent.parent
SPECS = single_host_specs(ROOT / "specs")
NETGEN = [sys.executable, "-m", "netgen"]

kernel = pytest.mark.kernel

BROKEN = """\
version: 1
name: broken
bridges:
  br0:
    subnet: 10.99.0.0/24
    external: true               # played by a stand-in
containers:
  web: {}
  db: {}
checks:
  - {from: web, to: db}
  - {from: web, to: db, port: 5432, expect: open}   # nothing listens: refused
"""

REFUSED = """\
version: 1
name: refused
bridges:
  br0:
    subnet: 10.98.0.0/24
containers:
  web:
    routes:
      - {to: 10.9.0.0/16, via: 192.0.2.1}   # not on any link: the kernel refuses it
"""

BROKEN_FLEET = """\
version: 1
name: broken-fleet
hosts:
  h1: {address: 192.0.2.11}
  h2: {address: 192.0.2.12}
bridges:
  br0: {subnet: 10.97.0.0/24}
containers:
  a: {host: h1, network: br0}
  b: {host: h2, network: br0}
checks:
  - {from: a, to: b}                    # across the overlay: holds
  - {from: b, to: a, expect: blocked}   # cannot hold: br0 joins them
"""

REFUSED_FLEET = """\
version: 1
name: refused-fleet
hosts:
  h1: {address: 192.0.2.11}
  h2: {address: 192.0.2.12}
bridges:
  br0: {subnet: 10.96.0.0/24}
containers:
  a: {host: h1, network: br0}
  b:
    host: h2
    network: br0
    routes:
      - {to: 10.9.0.0/16, via: 192.0.2.1}   # not on any link of b: the kernel refuses it
"""

# An IPv6 underlay in two subnets, an underlay NIC of its own name, a jumbo MTU on one
# host: the simulated hosts are what the spec says.
SIX = """\
version: 1
name: six
hosts:
  left: {address: "2001:db8:1::11", dev: ens3, mtu: 9000}
  right: {address: "2001:db8:2::12"}
bridges:
  br0: {subnet: 10.95.0.0/24, vni: 300}
containers:
  x: {host: left, network: br0}
  y: {host: right, network: br0}
checks:
  - {from: x, to: y}
"""

# Stand-ins per host: the uplink where its bridge is (h2), the outside behind each host.
STAND_IN_FLEET = """\
version: 1
name: stand-in-fleet
outside: 198.51.100.7
hosts:
  h1: {address: 192.0.2.11}
  h2: {address: 192.0.2.12}
bridges:
  br0: {subnet: 10.93.0.0/24, masquerade: true}
  lan: {subnet: 10.92.0.0/24, uplinks: [em1]}
containers:
  a: {host: h1, network: br0}
  b: {host: h2, network: br0}
  c: {host: h2, network: lan}
checks:
  - {from: a, to: outside}
  - {from: b, to: outside}
  - {from: c, to: b}
"""

LISTEN = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen()\n"
    "print('ready', flush=True); time.sleep(300)\n"
)


# -- the host, read only ----------------------------------------------------------------


def _read(argv: list[str]) -> str | None:
    """A command's output, or None where the tool is missing (then it changed nothing)."""
    if shutil.which(argv[0]) is None:
        return None
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _without_lifetimes(addr_json: str) -> list[Any]:
    """`ip -j addr` minus what ticks by itself (address lifetimes)."""
    links = json.loads(addr_json)
    for link in links:
        for a in link.get("addr_info", []):
            a.pop("valid_life_time", None)
            a.pop("preferred_life_time", None)
    return list(links)


def host_state() -> dict[str, Any]:
    """What a leaking sandbox would change on the host."""
    iptables = _read(["iptables-save"]) or ""
    nft = _read(["nft", "list", "ruleset"]) or ""
    try:
        netns = sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        netns = []
    rules = "\n".join(line for line in iptables.splitlines() if not line.startswith("#"))
    return {
        "link": json.loads(_read(["ip", "-j", "link", "show"]) or "[]"),
        "addr": _without_lifetimes(_read(["ip", "-j", "addr", "show"]) or "[]"),
        "netns": netns,
        "iptables": re.sub(r"\[\d+:\d+\]", "", rules),  # counters tick by themselves
        "nft": re.sub(r"packets \d+ bytes \d+", "", nft),
    }


@pytest.fixture
def host() -> Any:
    """Asserts, after the test, that the host is as it was before."""
    before = host_state()
    yield before
    assert host_state() == before


def netgen_try(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NETGEN, "try", *args],
        cwd=ROOT,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=300,
    )


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def tried(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`netgen try` of every spec and of a few made for the occasion, concurrently (each
    in its own sandbox): {name: (completed process, spec path)}. The host must be the
    same afterwards."""
    if os.geteuid() != 0 or sandbox.unavailable_reason() is not None:
        pytest.skip("netgen try as root needs root and namespaces")  # kernel: CI has them
    tmp = tmp_path_factory.mktemp("try")
    outside = (ROOT / "specs/walkthrough.yaml").read_text() + (
        "outside: 198.51.100.7\n"
        "checks:\n"
        "  - {from: web, to: outside}\n"
        "  - {from: web, to: outside, port: 9/tcp, expect: blocked}\n"
    )
    runs: dict[str, list[str]] = {p.stem: [str(p.relative_to(ROOT))] for p in SPECS}
    runs["nftables+brctl"] = [
        "specs/access-control.yaml",
        "--firewall",
        "nftables",
        "--dialect",
        "brctl",
    ]
    runs["broken"] = [write(tmp / "broken.yaml", BROKEN)]
    runs["broken --json"] = [runs["broken"][0], "--json"]
    runs["outside"] = [write(tmp / "out.yaml", outside)]
    runs["refused"] = [write(tmp / "refused.yaml", REFUSED)]
    runs["multihost"] = ["specs/multihost.yaml", "--serve"]
    runs["multihost nftables+brctl"] = [
        "specs/multihost.yaml",
        "--firewall",
        "nftables",
        "--dialect",
        "brctl",
    ]
    runs["broken-fleet"] = [write(tmp / "broken-fleet.yaml", BROKEN_FLEET)]
    runs["broken-fleet --json"] = [runs["broken-fleet"][0], "--json"]
    runs["refused-fleet"] = [write(tmp / "refused-fleet.yaml", REFUSED_FLEET)]
    runs["stand-in-fleet"] = [write(tmp / "stand-in-fleet.yaml", STAND_IN_FLEET)]
    before = host_state()
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = dict(zip(runs, pool.map(lambda a: netgen_try(*a), runs.values()), strict=True))
    yield {name: (done[name], runs[name][0]) for name in runs}
    assert host_state() == before


def rows(table: str) -> list[str]:
    """The table's rows with single spaces between the words."""
    return [" ".join(line.split()) for line in table.splitlines()]


def is_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def holders_of(netns_link: str) -> list[int]:
    """PIDs on this machine whose network namespace is `net:[INODE]`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/net") == netns_link:
                    found.append(int(entry))
            except OSError:
                pass
    return found


# -- netgen try -------------------------------------------------------------------------


@kernel
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_spec_passes_and_leaves_the_host_alone(tried: dict[str, Any], path: Path) -> None:
    res, _ = tried[path.stem]
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("FROM ")
    assert " FAIL " not in res.stdout
    err = res.stderr.splitlines()
    assert err[0] == "netgen: sandbox: a private network + mount namespace (as root)"
    assert re.fullmatch(rf"netgen: spec '{path.stem}' destroyed \(\d+ commands?\)", err[-3])
    assert err[-2:] == [
        "netgen: destroy left the sandbox as apply found it",
        "netgen: sandbox closed; nothing of this host was changed",
    ]
    if path.stem == "uplink":
        assert "netgen: stand-in: uplink em1 (of bridge br0): one end of a veth pair, up" in err


@kernel
def test_nftables_and_brctl(tried: dict[str, Any]) -> None:
    res, _ = tried["nftables+brctl"]
    assert res.returncode == 0, res.stdout + res.stderr
    assert "7 checks: 5 passed, 0 failed, 2 skipped" in res.stderr


@kernel
def test_a_check_that_cannot_hold_fails_with_a_readable_table(tried: dict[str, Any]) -> None:
    res, spec = tried["broken"]
    assert res.returncode == 1
    assert rows(res.stdout) == [
        "FROM TO WHAT EXPECT GOT OK WHY",
        "web br0 gateway (10.99.0.1) ping open reply ok implied: a container reaches its bridge",
        "db br0 gateway (10.99.0.1) ping open reply ok implied: a container reaches its bridge",
        f"web db (10.99.0.3) ping open reply ok {spec}:11 checks[0]",
        f"web db (10.99.0.3) tcp/5432 open refused FAIL {spec}:12 checks[1]",
    ]
    assert "netgen: stand-in: external bridge br0: a bridge with 10.99.0.1/24, up" in res.stderr
    assert "netgen: spec 'broken': 4 checks: 3 passed, 1 failed" in res.stderr
    assert "netgen: sandbox closed; nothing of this host was changed" in res.stderr


@kernel
def test_json(tried: dict[str, Any]) -> None:
    res, _ = tried["broken --json"]
    assert res.returncode == 1
    data = json.loads(res.stdout)
    assert (data["spec"], data["ok"], data["sandbox"]) == ("broken", False, "root")
    assert data["stand_ins"] == ["external bridge br0: a bridge with 10.99.0.1/24, up"]
    assert [(c["what"], c["got"], c["status"]) for c in data["checks"]][2:] == [
        ("ping", "reply", "ok"),
        ("tcp/5432", "refused", "FAIL"),
    ]


@kernel
def test_outside_is_played_by_a_stand_in(tried: dict[str, Any]) -> None:
    res, spec = tried["outside"]
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"web outside (198.51.100.7) ping open reply ok {spec}:16 checks[0]" in rows(res.stdout)
    assert (
        "netgen: stand-in: outside 198.51.100.7: a namespace behind the sandbox, which "
        "forwards (net.ipv4.ip_forward=1) as a router does"
    ) in res.stderr


@kernel
def test_an_apply_the_kernel_refuses_is_exit_1(tried: dict[str, Any]) -> None:
    res, spec = tried["refused"]
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr.splitlines()[1:] == [
        "netgen: error: netgen apply failed in the sandbox: apply of spec 'refused' failed: "
        "command failed: ip -n web route add 10.9.0.0/16 via 192.0.2.1",
        "  exit code 2: Error: Nexthop has invalid gateway.",
        f"  from {spec}:9:9 containers.web.routes[0]",
        "rolled back: the host is as it was before",
    ]


@kernel
def test_destroy_must_leave_the_sandbox_as_apply_found_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """What apply did not build, destroy does not remove: a trial says so, with the diff."""
    monkeypatch.chdir(ROOT)
    t = trial.Trial.start("specs/walkthrough.yaml")
    try:
        t.run(None, ["ip", "link", "add", "name", "stray0", "type", "bridge"])
        with pytest.raises(trial.TrialError) as info:
            t.destroy()
        message = str(info.value)
        assert message.startswith(
            "netgen destroy did not leave the sandbox as apply found it:\n"
            "--- before apply\n+++ after destroy\n"
        )
        assert '+    "ifname": "stray0",' in message.splitlines()
    finally:
        t.sandbox.close()
    with trial.Trial.start("specs/walkthrough.yaml", verify_destroy=False) as t:
        t.run(None, ["ip", "link", "add", "name", "stray0", "type", "bridge"])
    # (no error: this test changed the sandbox's host side itself, and said so)


@kernel
def test_shell_runs_inside_and_leaving_it_tears_down(host: Any) -> None:
    script = (
        "ip netns exec web ip -br -4 addr show dev eth0\n"
        "echo sandbox=$NETGEN_SANDBOX\n"
        "readlink /proc/self/ns/net\n"
        "ls /run/netns\n"
    )
    res = netgen_try("specs/walkthrough.yaml", "--shell", stdin=script)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("FROM ") and " ok " in lines[1]  # the checks, then the shell
    eth0, tag, netns, listing = lines[2:]
    assert eth0.split()[0].startswith("eth0") and eth0.split()[2] == "172.17.42.99/16"
    assert tag == "sandbox=walkthrough"
    assert listing == "web"
    assert netns != os.readlink("/proc/self/ns/net")  # not the host's network
    assert holders_of(netns) == []  # and nothing is left in it
    err = res.stderr
    assert "shell in the netgen sandbox of spec 'walkthrough'" in err
    assert "  ip netns exec web ip addr" in err
    assert err.index("exit (or Ctrl-D) tears it all down.") < err.index("destroyed")


@kernel
def test_keep_waits_for_enter_and_says_how_to_enter(host: Any) -> None:
    proc = subprocess.Popen(
        [*NETGEN, "try", "specs/walkthrough.yaml", "--keep"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stderr is not None
    try:
        pid = None
        while pid is None:  # blocking reads: it either says it, or ends (EOF)
            line = proc.stderr.readline()
            assert line, "netgen try --keep ended early"
            found = re.fullmatch(r"netgen: the sandbox stays up; enter it with: (.*)\n", line)
            if found:
                command = found.group(1).split()
                assert command[:2] == ["nsenter", "-t"] and command[3:] == ["-n", "-m"]
                pid = int(command[2])
        assert proc.stderr.readline() == "netgen: press Enter (or Ctrl-C) here to tear it down\n"
        inside = subprocess.run(
            [*command, "ip", "netns", "list"], capture_output=True, text=True, check=True
        )
        assert inside.stdout.split()[0] == "web"
        assert proc.poll() is None  # still waiting
        out, err = proc.communicate("\n", timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "destroy left the sandbox as apply found it" in err
    assert is_gone(pid)


@kernel
def test_user_namespace_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mode a user without root gets, played here as root: the same trial, in a user
    namespace of its own; `--keep` says to enter that too."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(trial, "mode", lambda: "user")
    logged: list[str] = []
    with trial.Trial.start("specs/access-control.yaml", log=logged.append) as t:
        assert t.sandbox.user
        own = os.readlink(f"/proc/{t.sandbox.pid}/ns/user")
        assert own != os.readlink("/proc/self/ns/user")
        report = t.check()
        assert report.ok and report.summary == "7 checks: 5 passed, 0 failed, 2 skipped"
        assert t.enter_command() == f"nsenter -t {t.sandbox.pid} -U -n -m"
        assert t.run("web", ["id", "-u"]).stdout == "0\n"  # root, in there only
    assert logged[0] == (
        "sandbox: a private network + mount namespace in an unprivileged user namespace"
    )
    assert logged[-1] == "destroy left the sandbox as apply found it"


# -- netgen try of a multi-host spec: one sandbox per host ------------------------------


@kernel
def test_multihost_passes_grouped_by_host(tried: dict[str, Any]) -> None:
    res, _ = tried["multihost"]
    assert res.returncode == 0, res.stdout + res.stderr
    out = rows(res.stdout)
    heads = [line for line in out if line.startswith("== host ")]
    assert heads == [
        "== host h1 (192.0.2.11): 3 checks: 3 passed, 0 failed",
        "== host h2 (192.0.2.12): 2 checks: 2 passed, 0 failed",  # --serve: b listens on 80
        "== host h3 (192.0.2.13): 2 checks: 2 passed, 0 failed",
    ]
    assert out[out.index(heads[1]) + 1 :][:3] == [
        "FROM TO WHAT EXPECT GOT OK WHY",
        "b br0 gateway (10.10.0.2) ping open reply ok implied: a container reaches its bridge",
        "host b:80 via host (10.10.0.2) tcp/8080 open open ok implied: published port",
    ]
    # the point-to-point link between h1 and h3 is a VXLAN pair over the underlay
    assert "a c (10.20.0.2) ping open reply ok implied: link peers reach each other" in out
    assert "c a (10.20.0.1) ping open reply ok implied: link peers reach each other" in out
    err = res.stderr.splitlines()
    assert err[0] == (
        "netgen: sandbox: 3 hosts (h1 192.0.2.11, h2 192.0.2.12, h3 192.0.2.13), each a "
        "private network + mount namespace (as root), on one underlay switch"
    )
    assert [line.split(" applied")[0] for line in err if " applied (" in line] == [
        f"netgen: {h}: spec 'multihost'" for h in ("h1", "h2", "h3")
    ]
    assert "netgen: listening in b (host h2): tcp/80" in err
    assert "netgen: spec 'multihost': 7 checks: 7 passed, 0 failed" in err
    assert err[-2:] == [
        "netgen: destroy left each host (h1, h2, h3) as apply found it",
        "netgen: sandbox closed; nothing of this host was changed",
    ]


@kernel
def test_multihost_nftables_and_brctl(tried: dict[str, Any]) -> None:
    res, _ = tried["multihost nftables+brctl"]
    assert res.returncode == 0, res.stdout + res.stderr
    assert "netgen: spec 'multihost': 7 checks: 6 passed, 0 failed, 1 skipped" in res.stderr


@kernel
def test_a_broken_multihost_spec_fails_with_a_readable_table(tried: dict[str, Any]) -> None:
    res, spec = tried["broken-fleet"]
    assert res.returncode == 1, res.stderr
    assert rows(res.stdout) == [
        "== host h1 (192.0.2.11): 2 checks: 2 passed, 0 failed",
        "FROM TO WHAT EXPECT GOT OK WHY",
        "a br0 gateway (10.97.0.1) ping open reply ok implied: a container reaches its bridge",
        f"a b (10.97.0.4) ping open reply ok {spec}:12 checks[0]",
        "",
        "== host h2 (192.0.2.12): 2 checks: 1 passed, 1 failed",
        "FROM TO WHAT EXPECT GOT OK WHY",
        "b br0 gateway (10.97.0.2) ping open reply ok implied: a container reaches its bridge",
        f"b a (10.97.0.3) ping blocked reply FAIL {spec}:13 checks[1]",
    ]
    assert "netgen: spec 'broken-fleet': 4 checks: 3 passed, 1 failed" in res.stderr
    assert "netgen: destroy left each host (h1, h2) as apply found it" in res.stderr


@kernel
def test_multihost_json(tried: dict[str, Any]) -> None:
    res, _ = tried["broken-fleet --json"]
    assert res.returncode == 1, res.stderr
    data = json.loads(res.stdout)
    assert (data["spec"], data["ok"], data["sandbox"]) == ("broken-fleet", False, "root")
    assert data["hosts"] == {
        "h1": {"address": "192.0.2.11", "ok": True, "summary": "2 checks: 2 passed, 0 failed"},
        "h2": {"address": "192.0.2.12", "ok": False, "summary": "2 checks: 1 passed, 1 failed"},
    }
    assert data["stand_ins"] == {"h1": [], "h2": []}
    assert [(c["host"], c["from"], c["to"], c["status"]) for c in data["checks"]] == [
        ("h1", "a", "br0 gateway", "ok"),
        ("h1", "a", "b", "ok"),
        ("h2", "b", "br0 gateway", "ok"),
        ("h2", "b", "a", "FAIL"),
    ]


@kernel
def test_multihost_stand_ins_per_host(tried: dict[str, Any]) -> None:
    res, spec = tried["stand-in-fleet"]
    assert res.returncode == 0, res.stdout + res.stderr
    out = rows(res.stdout)
    assert f"a outside (198.51.100.7) ping open reply ok {spec}:15 checks[0]" in out
    assert f"b outside (198.51.100.7) ping open reply ok {spec}:16 checks[1]" in out
    assert f"c b (10.93.0.4) ping open reply ok {spec}:17 checks[2]" in out  # lan -> br0 on h2
    outside = (
        "stand-in: outside 198.51.100.7: a namespace behind the sandbox, which forwards "
        "(net.ipv4.ip_forward=1) as a router does"
    )
    assert [line for line in res.stderr.splitlines() if ": stand-in: " in line] == [
        f"netgen: h1: {outside}",
        "netgen: h2: stand-in: uplink em1 (of bridge lan): one end of a veth pair, up",
        f"netgen: h2: {outside}",
    ]


@kernel
def test_an_apply_one_host_refuses_is_exit_1(tried: dict[str, Any]) -> None:
    res, spec = tried["refused-fleet"]
    assert (res.returncode, res.stdout) == (1, "")
    err = res.stderr.splitlines()
    assert "netgen: h1: spec 'refused-fleet' applied (" in res.stderr  # h1's part was fine
    assert err[-4:] == [
        "netgen: error: netgen apply failed on host h2: apply of spec 'refused-fleet' failed: "
        "command failed: ip -n b route add 10.9.0.0/16 via 192.0.2.1",
        "  exit code 2: Error: Nexthop has invalid gateway.",
        f"  from {spec}:14:9 containers.b.routes[0]",
        "rolled back: the host is as it was before",
    ]


@kernel
def test_multihost_ipv6_underlay_own_nic_and_mtu(tmp_path: Path) -> None:
    """The simulated hosts sit at the spec's own addresses (two IPv6 subnets), on an
    underlay NIC named and sized as the spec says; the overlay runs over them."""
    logged: list[str] = []
    path = write(tmp_path / "six.yaml", SIX)
    try:
        t = fleettrial.FleetTrial.start(path, log=logged.append)
    except sandbox.SandboxUnavailable as exc:
        sandbox_unavailable(str(exc))  # skipped here, failed in CI
    with t:
        left = t.sandbox("left")
        nic = json.loads(left.run(["ip", "-j", "addr", "show", "dev", "ens3"]).stdout)[0]
        assert nic["mtu"] == 9000
        assert "2001:db8:1::11" in [a["local"] for a in nic["addr_info"]]
        vx = json.loads(left.run(["ip", "-d", "-j", "link", "show", "vx300"]).stdout)[0]
        data = vx["linkinfo"]["info_data"]
        assert (data["id"], data["local6"], data["link"]) == (300, "2001:db8:1::11", "ens3")
        assert vx["mtu"] == 1500 - 70  # the smaller underlay, less VXLAN over IPv6
        assert t.ping("x", "y") and t.ping("y", "x")
        report = t.check()
        assert report.ok and report.summary == "3 checks: 3 passed, 0 failed", report.table
    assert logged[-1] == "destroy left each host (left, right) as apply found it"


@kernel
def test_multihost_shell_is_on_the_first_host(host: Any) -> None:
    script = "echo host=$NETGEN_HOST\nls /run/netns\nip netns exec a ping -c 1 -W 2 10.10.0.6\n"
    res = netgen_try("specs/multihost.yaml", "--shell", stdin=script)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "== host h1 (192.0.2.11): 3 checks: 3 passed, 0 failed"
    start = lines.index("host=h1")
    assert lines[start + 1 : start + 3] == ["a", "d"]  # h1's containers only
    assert "1 packets transmitted, 1 received" in res.stdout  # a (h1) -> c (h3): the overlay
    err = res.stderr
    assert "this is a shell on host h1 of the netgen sandboxes of spec 'multihost':" in err
    assert re.search(r"  nsenter -t \d+ -n -m    # enters host h3 from here", err)
    assert err.index("exit (or Ctrl-D) tears it all down.") < err.index("destroyed")


@kernel
def test_multihost_keep_says_how_to_enter_each_host(host: Any) -> None:
    proc = subprocess.Popen(
        [*NETGEN, "try", "specs/multihost.yaml", "--keep"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stderr is not None
    enter: dict[str, list[str]] = {}
    try:
        while True:  # blocking reads: it either says it, or ends (EOF)
            line = proc.stderr.readline()
            assert line, "netgen try --keep ended early"
            if line == "netgen: press Enter (or Ctrl-C) here to tear them down\n":
                break
            found = re.fullmatch(r"netgen:   (h\d): (nsenter -t \d+ -n -m)\n", line)
            if found:
                enter[found.group(1)] = found.group(2).split()
        assert list(enter) == ["h1", "h2", "h3"]
        for name, netns in (("h1", "a d"), ("h2", "b"), ("h3", "c")):
            inside = subprocess.run(
                [*enter[name], "ls", "/run/netns"], capture_output=True, text=True, check=True
            )
            assert " ".join(inside.stdout.split()) == netns
        out, err = proc.communicate("\n", timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "destroy left each host (h1, h2, h3) as apply found it" in err
    assert all(is_gone(int(argv[2])) for argv in enter.values())


class TestWithoutASandbox:
    """What is decided before any sandbox is made: no kernel needed."""

    @pytest.fixture
    def run(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
        monkeypatch.chdir(ROOT)

        def run(*args: str) -> tuple[int, str, str]:
            monkeypatch.setattr(sys, "argv", ["netgen", "try", *args])
            with pytest.raises(SystemExit) as info:
                cli.main()
            out, err = capsys.readouterr()
            return int(info.value.code or 0), out, err

        return run

    def test_not_root_without_user_namespaces(
        self, run: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
        monkeypatch.setattr(
            sandbox,
            "unavailable_reason",
            lambda user=False: "unshare/mount probe failed (exit code 1): Operation not permitted",
        )
        assert run("specs/walkthrough.yaml") == (
            1,
            "",
            "netgen: error: netgen try cannot make its sandbox here: a sandbox needs root or "
            "unprivileged user namespaces; not root (euid 1000); unprivileged user namespaces: "
            "unshare/mount probe failed (exit code 1): Operation not permitted\n",
        )

    def test_detection(self, monkeypatch: pytest.MonkeyPatch) -> None:
        asked: list[bool] = []

        def reason(user: bool = False) -> str | None:
            asked.append(user)
            return None if user else "no sysfs"

        monkeypatch.setattr(sandbox, "unavailable_reason", reason)
        monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
        assert sandbox.mode() == "user"
        assert asked == [True]
        monkeypatch.setattr(sandbox.os, "geteuid", lambda: 0)
        asked.clear()
        assert sandbox.mode() == "user"  # root, but in a container that denies namespaces
        assert asked == [False, True]
        monkeypatch.setattr(sandbox, "unavailable_reason", lambda user=False: None)
        assert sandbox.mode() == "root"

    def test_multihost_needs_root(self, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(fleettrial, "mode", lambda: "user")
        assert run("specs/multihost.yaml") == (
            1,
            "",
            "netgen: error: netgen try cannot make its sandbox here: a multi-host spec needs "
            "root: each host is a sandbox of its own, and their underlay links are moved "
            "between them, which an unprivileged user namespace cannot do (try one host's "
            "part with `netgen apply --host` in a single sandbox, or run as root)\n",
        )

    @pytest.mark.parametrize(
        ("h2", "message"),
        [
            (
                '{address: "fe80::2"}',
                "fe80::2 is link-local; netgen try gives each simulated host its address on "
                "one shared underlay link, and cannot play a link-local underlay (its scope "
                "is one interface): try the spec with routable addresses",
            ),
            (
                '{address: "2001:db8::2", mtu: 1200}',
                "mtu 1200 is below 1280, the least an interface needs to carry IPv6, so its "
                "underlay 2001:db8::2 cannot be simulated",
            ),
            (
                "{address: 192.0.2.12, dev: br0}",
                "its underlay interface br0 is also an interface the spec makes; netgen try "
                "makes br0 as the host's underlay NIC: give `dev` another name",
            ),
            (
                "{address: 198.51.100.7}",
                "198.51.100.7 is also the spec's outside address; netgen try plays the "
                "outside as a host behind each host, which cannot be a host too",
            ),
        ],
        ids=["link-local", "ipv6-mtu", "dev", "outside"],
    )
    def test_what_a_fleet_cannot_play_is_exit_2(
        self, run: Any, tmp_path: Path, h2: str, message: str
    ) -> None:
        family6 = "2001" in h2 or "fe80" in h2
        h1 = '"2001:db8::1"' if family6 else "192.0.2.11"
        spec = tmp_path / "fleet.yaml"
        spec.write_text(
            "version: 1\nname: fleet\noutside: 198.51.100.7\n"
            f"hosts:\n  h1: {{address: {h1}}}\n  h2: {h2}\n"
            "bridges: {br0: {subnet: 10.94.0.0/24}}\n"
            "containers:\n  a: {host: h1, network: br0}\n  b: {host: h2, network: br0}\n"
        )
        code, out, err = run(str(spec))
        assert (code, out) == (2, ""), err
        assert err == f"netgen: error: {spec}:6 hosts.h2: host h2: {message}\n"

    def test_a_trial_is_one_host(self) -> None:
        with pytest.raises(UsageError) as info:
            trial.Trial.start(ROOT / "specs/multihost.yaml")
        assert str(info.value) == (
            "spec 'multihost' spans 3 hosts (h1, h2, h3): a Trial is one sandbox; "
            "netgen.fleettrial.FleetTrial gives each host its own (as netgen try does)"
        )

    def test_a_fleet_needs_one_family(self) -> None:
        hosts = [sandbox.FleetHost("h1", "192.0.2.11"), sandbox.FleetHost("h2", "2001:db8::2")]
        with pytest.raises(ValueError, match="distinct addresses of one family"):
            sandbox.Fleet.start_hosts(hosts)

    def test_bad_spec_is_exit_2(self, run: Any, tmp_path: Path) -> None:
        bad = tmp_path / "bad.yaml"
        bad.write_text("version: 1\nbridgs: {}\n")
        code, out, err = run(str(bad))
        assert (code, out) == (2, "")
        assert err.startswith(f"{bad}:2:1: bridgs: unknown key 'bridgs'; did you mean 'bridges'?")

    def test_adopting_a_process_of_the_host_is_refused(self, run: Any, tmp_path: Path) -> None:
        spec = tmp_path / "pid.yaml"
        spec.write_text("version: 1\ncontainers:\n  web: {network: none, pid: 1}\n")
        assert run(str(spec)) == (
            2,
            "",
            f"netgen: error: {spec}:3 containers.web: container web adopts the network "
            "namespace of process 1 (pid:), which lives on the host, outside any sandbox; "
            "try the spec without pid:\n",
        )

    @pytest.mark.parametrize(
        ("flags", "message"),
        [
            (
                ["--keep", "--shell"],
                "--keep or --shell, not both: --shell keeps it while the shell runs",
            ),
            (
                ["--shell", "--json"],
                "--json and --shell do not mix: the shell would write into the JSON",
            ),
        ],
    )
    def test_usage(self, run: Any, flags: list[str], message: str) -> None:
        assert run("specs/walkthrough.yaml", *flags) == (2, "", f"netgen: error: {message}\n")


# -- netgen's own kernel tests, through the plugin's netgen_sandbox ---------------------


class TestDogfood:
    """Kernel tests from test_check, test_apply and test_kernel_scripts, as a user of the
    plugin writes them: no sandbox plumbing, no stand-ins by hand."""

    def test_access_control(self, netgen_sandbox: NetgenSandbox) -> None:
        net = netgen_sandbox("specs/access-control.yaml")
        server = net.spawn("web", [sys.executable, "-c", LISTEN, "80"])
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        report = net.check()
        assert report.ok, report.table
        assert [(r.probe.what, r.got) for r in report if r.probe.origin == "exposed"] == [
            ("tcp/80", "open"),
            ("udp/5353", "udp: a silent service cannot be told from a blocked one"),
        ]
        assert net.connect("client", "web", 80)
        assert net.run("client", ["getent", "ahostsv4", "db"]).stdout.split()[0] == "172.17.0.2"
        assert not net.connect("other", "web", 80, timeout_s=1)
        assert not net.ping("other", "web", timeout_s=1)
        assert net.ping("other", "172.17.0.1")

    def test_uplink_is_enslaved(self, netgen_sandbox: NetgenSandbox) -> None:
        net = netgen_sandbox("specs/uplink.yaml")
        links = {link["ifname"]: link for link in net.state()["root"]["links"]}
        assert (links["em1"]["master"], links["em1"]["kind"]) == ("br0", "veth")
        assert net.ping("desk", "vnc")

    def test_external_bridge_is_used_never_owned(
        self, netgen_sandbox: NetgenSandbox, tmp_path: Path
    ) -> None:
        spec = tmp_path / "ext.yaml"
        spec.write_text(
            "version: 1\nname: ext\n"
            "bridges: {docker0: {subnet: 10.74.0.0/24, external: true}}\n"
            "containers: {web: {}}\n"
        )
        net = netgen_sandbox(spec)
        assert net.ping("web", "10.74.0.1")
        docker0 = next(x for x in net.state()["root"]["links"] if x["ifname"] == "docker0")
        assert docker0["ifalias"] is None  # not marked: destroy leaves it (checked at teardown)

    def test_point_to_point(self, netgen_sandbox: NetgenSandbox) -> None:
        net = netgen_sandbox("specs/point-to-point.yaml")
        assert net.address("c2", "c1") == "10.1.1.2"
        assert net.ping("c1", "c2") and net.ping("c2", "10.1.1.1")
        route = net.run("c1", ["ip", "-j", "route", "get", "10.1.1.2"]).stdout
        assert json.loads(route)[0]["dev"] == "A"

    def test_outside_and_a_broken_default_route(
        self, netgen_sandbox: NetgenSandbox, tmp_path: Path
    ) -> None:
        spec = tmp_path / "walk.yaml"
        spec.write_text(
            (ROOT / "specs/walkthrough.yaml")
            .read_text()
            .replace("    address: 172.17.42.1", "    address: 172.17.42.1\n    masquerade: true")
            + "outside: 198.51.100.7\n"
            "checks:\n"
            "  - {from: web, to: outside}\n"
            "  - {from: web, to: outside, port: 9/tcp, expect: blocked}\n"
        )
        net = netgen_sandbox(spec)
        assert net.check().summary == "3 checks: 3 passed, 0 failed"
        net.run("web", ["ip", "route", "delete", "default"])
        report = net.check()
        assert [(r.probe.dst, r.got) for r in report.failures] == [("outside", "unreachable")]
