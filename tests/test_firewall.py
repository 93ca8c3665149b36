"""Published ports, masquerade, icc=false and --link, in both firewall dialects.

Kernel tests run the rendered scripts inside the sandbox: its root namespace plays the
host (198.51.100.1 and .3 on `uplink0`), a namespace `outside` (198.51.100.2) plays
another host on the LAN. Every probe has a bounded timeout; a "blocked" probe always
targets a port with a listener, so a refusal cannot pass for a firewall.
"""

from __future__ import annotations

import json
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from scriptcheck import bash_n, shellcheck, single_host_specs, write_scripts
from syrupy.assertion import SnapshotAssertion
from typer.testing import CliRunner

from netgen import dialects, firewall, lower, ops, render, spec, state
from netgen.cli import app
from netgen.errors import DialectError
from netgen.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
FIREWALLS = dialects.FIREWALLS
EXAMPLES = ("port-mapping", "access-control")
KINDS = ("setup", "teardown")
kernel = pytest.mark.kernel

HOST, HOST2, OUTSIDE = "198.51.100.1", "198.51.100.3", "198.51.100.2"
OUTSIDE_SETUP = f"""
ip netns add outside
ip link add uplink0 type veth peer name eth0 netns outside
ip addr add {HOST}/24 dev uplink0
ip addr add {HOST2}/24 dev uplink0
ip link set uplink0 up
ip -n outside addr add {OUTSIDE}/24 dev eth0
ip -n outside link set eth0 up
ip -n outside link set lo up
"""
# The host's own firewall, in the built-in chains netgen jumps from and in a table of
# its own: teardown must leave every byte of it as it was.
HOST_FIREWALL = """
iptables -w -t filter -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
iptables -w -t filter -A FORWARD -s 192.0.2.0/24 -j ACCEPT
iptables -w -t nat -A PREROUTING -p tcp -m tcp --dport 2222 -j DNAT --to-destination 192.0.2.10:22
iptables -w -t nat -A POSTROUTING -s 192.0.2.0/24 -o uplink0 -j MASQUERADE
nft add table inet hostfw
nft add chain inet hostfw input '{ type filter hook input priority 10; policy accept; }'
nft add rule inet hostfw input tcp dport 9999 counter accept
"""

# Answers each TCP connection with the address it came from, then closes it.
PEER_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(peer[0].encode() + b"\\n")
    c.close()
"""
UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
"""
PEER_CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as s:
    s.settimeout(3)
    print(s.recv(100).decode().strip())
"""


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec paths in scripts are as given: render from the repo root, as a user would."""
    monkeypatch.chdir(ROOT)


def script_for(path: str | Path, fw: str, kind: str = "setup") -> str:
    s = spec.load(path)
    built = lower.lower(s)
    todo = ops.teardown(built) if kind == "teardown" else built
    return render.render(s, todo, firewall=fw, teardown=kind == "teardown")


def firewall_script(stem: str, fw: str, kind: str) -> str:
    """Only the firewall and sysctl part of an example's script, for the snapshots."""
    s = spec.load(f"specs/{stem}.yaml")
    built = [op for op in lower.lower(s) if isinstance(op, dialects._FIREWALL_OPS)]
    todo = ops.teardown(built) if kind == "teardown" else built
    return render.render(s, todo, firewall=fw, teardown=kind == "teardown")


def run_script(sb: Sandbox, text: str, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.sh"
    path.write_text(text)
    sb.run(["bash", str(path)])


def serve(sb: Sandbox, netns: str, port: int, proto: str = "tcp") -> subprocess.Popen[str]:
    code = PEER_SERVER if proto == "tcp" else UDP_ECHO
    proc = sb.spawn([sys.executable, "-I", "-c", code, str(port)], netns=netns)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    assert ready, f"{proto} server on {netns}:{port} did not start"
    assert proc.stdout.readline().strip() == "ready", proc.poll()
    return proc


def peer_seen(sb: Sandbox, netns: str | None, host: str, port: int) -> str | None:
    """The source address the server saw, or None if the connection failed."""
    argv = [sys.executable, "-I", "-c", PEER_CLIENT, host, str(port)]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    done = sb.run(argv, check=False, timeout=20)
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def reaches(
    sb: Sandbox, netns: str | None, host: str, port: int, proto: str = "tcp", *, ok: bool
) -> bool:
    """One probe; a shorter timeout where it is expected to fail."""
    return sb.connect(netns, host, port, proto=proto, timeout_s=3 if ok else 1)


def none_get_through(
    sb: Sandbox, probes: list[tuple[str, str, int | None, str]]
) -> list[tuple[str, str, int | None, str]]:
    """The probes that got through, of a list expected to be blocked; run concurrently,
    since each blocked probe waits out its whole (bounded) timeout."""

    def through(probe: tuple[str, str, int | None, str]) -> bool:
        src, dst, port, proto = probe
        if proto == "ping":
            return sb.ping(src, dst, timeout_s=1)
        assert port is not None
        return reaches(sb, src, dst, port, proto, ok=False)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(through, probes))
    return [probe for probe, got in zip(probes, results, strict=True) if got]


def without_empty_builtin_chains(ruleset: str) -> str:
    """`nft list ruleset` minus the empty ACCEPT base chains iptables-nft creates on first use.

    iptables has no command to delete a built-in chain (iptables-save always prints
    them), so after an iptables teardown the nft view may keep such an empty chain.
    """
    lines = [line for line in ruleset.splitlines() if line.strip()]
    out: list[str] = []
    i = 0
    while i < len(lines):
        chunk = lines[i : i + 3]
        if (
            len(chunk) == 3
            and re.fullmatch(r"\tchain [A-Z]+ \{", chunk[0])
            and re.fullmatch(r"\t\ttype \w+ hook \w+ priority \S+; policy accept;", chunk[1])
            and chunk[2] == "\t}"
        ):
            i += 3
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def sysctl(sb: Sandbox, key: str) -> str:
    return sb.run(["cat", "/proc/sys/" + key.replace(".", "/")]).stdout.strip()


def sysctl_state(sb: Sandbox) -> list[str]:
    done = sb.run(["find", firewall.SYSCTL_DIR, "-mindepth", "1"], check=False)
    return sorted(done.stdout.split())


def assert_restored(after: dict[str, Any], before: dict[str, Any], fw: str) -> None:
    """The sandbox is as it was: iptables-save to the byte, nft ruleset too (see above)."""
    assert after["root"]["iptables"] == before["root"]["iptables"]
    assert after["root"]["sysctl"] == before["root"]["sysctl"]
    if fw == "iptables":
        assert without_empty_builtin_chains(after["root"]["nftables"]) == (
            without_empty_builtin_chains(before["root"]["nftables"])
        )
        after = json.loads(json.dumps(after))
        after["root"]["nftables"] = before["root"]["nftables"]
    assert after == before


@pytest.fixture
def lan(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The sandbox with an outside host on uplink0 and a host firewall of its own."""
    sandbox.sh(OUTSIDE_SETUP)
    sandbox.sh(HOST_FIREWALL)
    yield sandbox


# -- published ports and masquerade -------------------------------------------------


@kernel
@pytest.mark.parametrize("fw", FIREWALLS)
def test_port_mapping_reaches_containers_and_masquerades(
    lan: Sandbox, fw: str, tmp_path: Path
) -> None:
    sb = lan
    before = sb.state()
    assert before["root"]["sysctl"]["net.ipv4.ip_forward"] == "0"
    run_script(sb, script_for("specs/port-mapping.yaml", fw), tmp_path, "setup")
    assert sysctl(sb, "net.ipv4.ip_forward") == "1"
    assert sysctl(sb, "net.ipv4.conf.docker0.route_localnet") == "1"

    serve(sb, "web", 80)
    serve(sb, "app", 5000)
    serve(sb, "dns", 53, "udp")
    serve(sb, "dns", 5000, "udp")
    serve(sb, "outside", 9000)

    # -P (49153) and 3000:80 -> web:80, at every host address, from the LAN and the host
    for address in (HOST, HOST2):
        assert peer_seen(sb, "outside", address, 49153) == OUTSIDE
        assert peer_seen(sb, "outside", address, 3000) == OUTSIDE
    assert peer_seen(sb, None, HOST, 49153) == HOST  # the host, at its own address
    assert peer_seen(sb, None, HOST2, 3000) in (HOST, HOST2)  # HOST2 is secondary: any source
    assert peer_seen(sb, None, "172.17.0.1", 49153) == "172.17.0.1"  # the bridge's, too
    # 5000:5000 and 198.51.100.1:8080:5000 -> app:5000; the latter at HOST only
    assert peer_seen(sb, "outside", HOST2, 5000) == OUTSIDE
    assert peer_seen(sb, "outside", HOST, 8080) == OUTSIDE
    assert peer_seen(sb, None, HOST, 8080) == HOST
    assert not reaches(sb, "outside", HOST2, 8080, ok=False)
    assert not reaches(sb, None, HOST2, 8080, ok=False)
    assert not reaches(sb, None, "172.17.0.1", 8080, ok=False)
    # 127.0.0.1::5000 (allocated 49154): the host's loopback only
    assert reaches(sb, None, "127.0.0.1", 49154, ok=True)
    assert not reaches(sb, None, HOST, 49154, ok=False)
    assert not reaches(sb, "outside", HOST, 49154, ok=False)
    # ports on every address are not on loopback (the contract: non-loopback addresses)
    assert not reaches(sb, None, "127.0.0.1", 49153, ok=False)
    # udp: 5353:53/udp everywhere, 127.0.0.1:5000:5000/udp on loopback only
    assert reaches(sb, "outside", HOST, 5353, "udp", ok=True)
    assert reaches(sb, "outside", HOST2, 5353, "udp", ok=True)
    assert reaches(sb, None, HOST, 5353, "udp", ok=True)
    assert reaches(sb, None, "127.0.0.1", 5000, "udp", ok=True)
    assert not reaches(sb, "outside", HOST, 5000, "udp", ok=False)
    assert not reaches(sb, None, HOST, 5000, "udp", ok=False)
    # masquerade: the outside sees the host's address, not the container's
    for container in ("web", "app", "dns"):
        assert peer_seen(sb, container, OUTSIDE, 9000) == HOST
    # and nothing else in the host's firewall changed its meaning: container to container
    # on docker0 (icc: true) still works
    assert peer_seen(sb, "app", "172.17.0.2", 80) == "172.17.0.3"

    run_script(sb, script_for("specs/port-mapping.yaml", fw, "teardown"), tmp_path, "teardown")
    assert_restored(sb.state(), before, fw)
    assert sysctl_state(sb) == [f"{firewall.SYSCTL_DIR}/.lock"]


@kernel
@pytest.mark.parametrize("fw", FIREWALLS)
@pytest.mark.parametrize("stem", EXAMPLES)
def test_rules_live_in_own_chains_with_comments(
    lan: Sandbox, fw: str, stem: str, tmp_path: Path
) -> None:
    sb = lan
    run_script(sb, script_for(f"specs/{stem}.yaml", fw), tmp_path, "setup")
    rules = sb.run(["iptables-save"]).stdout.splitlines()
    if fw == "iptables":
        ours = [r for r in rules if "netgen:" in r]
        assert ours and all(f'--comment "netgen:{stem}" -j ' in r for r in ours), ours
        for r in rules:
            if r.startswith("-A NETGEN-"):
                assert f'--comment "netgen:{stem}"' in r, r
            elif r.startswith("-A "):
                assert "netgen:" not in r or f"-j NETGEN-{stem}-" in r, r  # only the jumps
    else:
        assert not any("netgen" in r or "NETGEN" in r for r in rules), "nftables: no iptables"
    # the chapter's rules, in our chains
    if fw == "iptables" and stem == "port-mapping":
        assert (
            "-A NETGEN-port-mapping-SNAT -s 172.17.0.0/16 ! -d 172.17.0.0/16 "
            '-m comment --comment "netgen:port-mapping" -j MASQUERADE' in rules
        )
        assert (
            "-A NETGEN-port-mapping-DNAT ! -d 127.0.0.0/8 -p tcp -m tcp --dport 49153 "
            '-m comment --comment "netgen:port-mapping" -j DNAT --to-destination 172.17.0.2:80'
            in rules
        )
    if fw == "iptables" and stem == "access-control":
        fwd = [r for r in rules if r.startswith("-A NETGEN-access-control-FWD")]
        assert [r.split(" -m comment")[0] for r in fwd] == [
            "-A NETGEN-access-control-FWD -s 172.17.0.3/32 -d 172.17.0.2/32 -i docker0 "
            "-o docker0 -p tcp -m tcp --dport 80",
            "-A NETGEN-access-control-FWD -s 172.17.0.2/32 -d 172.17.0.3/32 -i docker0 "
            "-o docker0 -p tcp -m tcp --sport 80",
            "-A NETGEN-access-control-FWD -s 172.17.0.3/32 -d 172.17.0.2/32 -i docker0 "
            "-o docker0 -p udp -m udp --dport 5353",
            "-A NETGEN-access-control-FWD -s 172.17.0.2/32 -d 172.17.0.3/32 -i docker0 "
            "-o docker0 -p udp -m udp --sport 5353",
            "-A NETGEN-access-control-FWD -s 172.17.0.0/16 -d 172.17.0.0/16 -i docker0 -o docker0",
        ]
        assert fwd[-1].endswith("-j DROP")
    tables = json.loads(sb.run(["nft", "-j", "list", "tables"]).stdout)["nftables"]
    names = {(t["table"]["family"], t["table"]["name"]) for t in tables if "table" in t}
    expected = set()
    if fw == "nftables":
        expected.add(("inet", f"netgen_{stem}"))
    if stem == "access-control":
        expected.add(("bridge", f"netgen_{stem}"))
    assert {n for n in names if n[1].startswith("netgen_")} == expected
    for family, name in expected:
        listing = sb.run(["nft", "list", "table", family, name]).stdout
        assert f'comment "netgen:{stem}"' in listing
        assert all(
            line.endswith(f'comment "netgen:{stem}"')
            for line in listing.splitlines()
            if line.startswith("\t\t") and not line.strip().startswith("type ")
        ), listing


# -- icc=false and --link -------------------------------------------------------------


def _br_netfilter(sb: Sandbox, on: bool) -> None:
    """Switch br_netfilter's iptables hook for bridges in the sandbox (a per-netns sysctl)."""
    path = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    if sb.run(["test", "-e", path], check=False).returncode != 0:
        if on:
            pytest.skip("br_netfilter is not loaded here (netgen never needs it)")
        return
    sb.run(["sh", "-c", f"echo {int(on)} > {path}"])


@kernel
@pytest.mark.parametrize("br_netfilter", [False, True], ids=["no-br_netfilter", "br_netfilter"])
@pytest.mark.parametrize("fw", FIREWALLS)
def test_icc_false_blocks_all_but_the_linked_ports(
    lan: Sandbox, fw: str, br_netfilter: bool, tmp_path: Path
) -> None:
    sb = lan
    _br_netfilter(sb, br_netfilter)
    before = sb.state()
    run_script(sb, script_for("specs/access-control.yaml", fw), tmp_path, "setup")
    web, client, other = "172.17.0.2", "172.17.0.3", "172.17.0.4"
    serve(sb, "web", 80)
    serve(sb, "web", 81)
    serve(sb, "web", 5353, "udp")
    serve(sb, "web", 5354, "udp")
    serve(sb, "client", 80)
    serve(sb, "other", 80)

    # the link: exactly web's expose ports, one way
    assert peer_seen(sb, "client", web, 80) == client
    assert reaches(sb, "client", web, 5353, "udp", ok=True)
    blocked: list[tuple[str, str, int | None, str]] = [
        ("client", web, 81, "tcp"),
        ("client", web, 5354, "udp"),
        ("client", web, None, "ping"),
        ("web", client, 80, "tcp"),
    ]
    # the unlinked container reaches nobody, nobody reaches it
    for src, dst in (("other", web), ("other", client), ("web", other), ("client", other)):
        blocked += [(src, dst, 80, "tcp"), (src, dst, None, "ping")]
    assert none_get_through(sb, blocked) == []
    # the host (the bridge's address) is not another container: still reachable
    for c in ("web", "client", "other"):
        assert sb.ping(c, "172.17.0.1")
    # hosts entries of --link web:db, as `ip netns exec` shows /etc/hosts
    for name in ("web", "db"):
        got = sb.in_netns("client", ["getent", "-s", "files", "hosts", name]).stdout.split()
        assert got[0] == web and name in got[1:], got
    unlinked = sb.in_netns("other", ["getent", "-s", "files", "hosts", "db"], check=False)
    assert unlinked.returncode != 0
    assert peer_seen(sb, "client", "db", 80) == client

    # routed back into the bridge through the host: the same verdicts
    sb.sh(
        f"""
        sysctl -qw net.ipv4.ip_forward=1
        ip -n other route add {web}/32 via 172.17.0.1
        ip -n client route add {web}/32 via 172.17.0.1
        ip -n web route add {client}/32 via 172.17.0.1
        ip -n web route add {other}/32 via 172.17.0.1
        """
    )
    assert none_get_through(sb, [("other", web, 80, "tcp"), ("client", web, 81, "tcp")]) == []
    assert peer_seen(sb, "client", web, 80) == client
    sb.sh("sysctl -qw net.ipv4.ip_forward=0")

    run_script(sb, script_for("specs/access-control.yaml", fw, "teardown"), tmp_path, "teardown")
    assert_restored(sb.state(), before, fw)


@kernel
def test_icc_true_bridge_is_not_filtered(lan: Sandbox, tmp_path: Path) -> None:
    text = (ROOT / "specs/access-control.yaml").read_text().replace("icc: false", "icc: true")
    path = tmp_path / "open.yaml"
    path.write_text(text)
    run_script(lan, script_for(path, "iptables"), tmp_path, "setup")
    serve(lan, "web", 81)
    assert reaches(lan, "other", "172.17.0.2", 81, ok=True)
    assert "netgen:" not in lan.run(["iptables-save"]).stdout
    assert "netgen" not in lan.run(["nft", "list", "ruleset"]).stdout


# -- teardown, sysctls, probes --------------------------------------------------------


def _only_builtin(iptables_save: str) -> bool:
    """No rules and no chains but the built-in ones, all ACCEPT: as if the table were absent."""
    for line in iptables_save.splitlines():
        if line.startswith("*") or line == "COMMIT":
            continue
        if not re.fullmatch(r":(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ACCEPT \[0:0\]", line):
            return False
    return True


@kernel
@pytest.mark.parametrize("fw", FIREWALLS)
def test_teardown_on_a_host_without_firewall(sandbox: Sandbox, fw: str, tmp_path: Path) -> None:
    """nftables: nothing left at all. iptables: at most the empty built-in tables it made."""
    before = sandbox.state()
    for stem in EXAMPLES:
        path = f"specs/{stem}.yaml"
        fw_ops = [
            op
            for op in lower.lower(spec.load(path))
            if isinstance(op, (ops.AddFirewall, ops.SetSysctl))
        ]
        run_script(sandbox, script_for(path, fw), tmp_path, f"{stem}-setup")
        for op in fw_ops:  # what apply's planner may use to see it is all in place
            for probe in firewall.probes(op, fw) or []:
                assert sandbox.run(list(probe), check=False).returncode == 0, probe
        script = script_for(path, fw, "teardown")
        run_script(sandbox, script, tmp_path, f"{stem}-teardown")
        run_script(sandbox, script, tmp_path, f"{stem}-teardown-again")  # nothing left to do
        for op in fw_ops:
            probes = firewall.probes(op, fw) or []
            assert all(sandbox.run(list(p), check=False).returncode != 0 for p in probes), op
    after = sandbox.state()
    if fw == "nftables":
        assert after == before
    else:
        assert _only_builtin(after["root"]["iptables"]), after["root"]["iptables"]
        assert "netgen" not in after["root"]["nftables"]
        for key in ("iptables", "nftables"):
            after["root"].pop(key)
            before["root"].pop(key)
        assert after == before
    assert sysctl_state(sandbox) == [f"{firewall.SYSCTL_DIR}/.lock"]


@kernel
def test_teardown_survives_a_bridge_deleted_behind_its_back(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """route_localnet lives on the bridge: with the bridge gone, restoring it must not abort."""
    before = sandbox.state()
    run_script(sandbox, script_for("specs/port-mapping.yaml", "iptables"), tmp_path, "setup")
    sandbox.run(["ip", "link", "delete", "docker0"])
    teardown = script_for("specs/port-mapping.yaml", "iptables", "teardown")
    run_script(sandbox, teardown, tmp_path, "teardown")
    after = sandbox.state()
    assert "NETGEN" not in after["root"]["iptables"]
    assert after["root"]["sysctl"] == before["root"]["sysctl"]
    assert sysctl_state(sandbox) == [f"{firewall.SYSCTL_DIR}/.lock"]


def _masquerading_spec(tmp_path: Path, name: str, n: int) -> Path:
    path = tmp_path / f"{name[:20]}-{n}.yaml"
    path.write_text(
        f"version: 1\nname: {name}\n"
        f"bridges:\n  br{n}:\n    subnet: 10.{n}.0.0/24\n    masquerade: true\n"
        f"containers:\n  c{n}:\n    network: br{n}\n"
    )
    return path


@kernel
@pytest.mark.parametrize("initial", ["0", "1"])
def test_ip_forward_is_restored_by_the_last_spec_to_go(
    sandbox: Sandbox, tmp_path: Path, initial: str
) -> None:
    long_name = "a-spec-name-long-enough-to-need-a-hashed-chain-name-" + "x" * 12
    assert len(long_name) == 64
    a = _masquerading_spec(tmp_path, long_name, 1)
    b = _masquerading_spec(tmp_path, "second", 2)
    sandbox.sh(f"sysctl -qw net.ipv4.ip_forward={initial}")

    def step(path: Path, kind: str) -> None:
        run_script(sandbox, script_for(path, "iptables", kind), tmp_path, f"{path.stem}-{kind}")

    step(b, "teardown")  # never applied: changes nothing
    assert sysctl(sandbox, "net.ipv4.ip_forward") == initial
    step(a, "setup")
    step(b, "setup")
    assert sysctl(sandbox, "net.ipv4.ip_forward") == "1"
    step(a, "teardown")
    assert sysctl(sandbox, "net.ipv4.ip_forward") == "1"  # b still needs it
    step(b, "teardown")
    assert sysctl(sandbox, "net.ipv4.ip_forward") == initial
    # the other order
    step(a, "setup")
    step(b, "setup")
    step(b, "teardown")
    assert sysctl(sandbox, "net.ipv4.ip_forward") == "1"
    step(a, "teardown")
    assert sysctl(sandbox, "net.ipv4.ip_forward") == initial
    assert sysctl_state(sandbox) == [f"{firewall.SYSCTL_DIR}/.lock"]
    assert "NETGEN" not in sandbox.run(["iptables-save"]).stdout


# -- rendering (no kernel) ------------------------------------------------------------


SNAPSHOT_CASES = [
    pytest.param(stem, fw, kind, id=f"{stem}-{fw}-{kind}")
    for stem in EXAMPLES
    for fw in FIREWALLS
    for kind in KINDS
]


class TestRendering:
    @pytest.mark.parametrize(("stem", "fw", "kind"), SNAPSHOT_CASES)
    def test_firewall_rules_match_snapshot(
        self, stem: str, fw: str, kind: str, snapshot: SnapshotAssertion
    ) -> None:
        text = firewall_script(stem, fw, kind)
        assert text == firewall_script(stem, fw, kind)
        assert text == snapshot

    @pytest.mark.parametrize("fw", FIREWALLS)
    def test_scripts_pass_bash_n_and_shellcheck(self, fw: str, tmp_path: Path) -> None:
        stems = [p.stem for p in single_host_specs(ROOT / "specs")]
        scripts = {
            f"{stem}-{kind}": script_for(f"specs/{stem}.yaml", fw, kind)
            for stem in stems
            for kind in KINDS
        }
        paths = write_scripts(tmp_path, scripts)
        bash_n(paths)
        shellcheck(paths)

    def test_the_chapters_rules(self) -> None:
        ports = script_for("specs/port-mapping.yaml", "iptables")
        assert (
            "-s 172.17.0.0/16 '!' -d 172.17.0.0/16 -m comment --comment netgen:port-mapping "
            "-j MASQUERADE" in ports
        )
        assert "--dport 49153 -m comment --comment netgen:port-mapping " in ports
        assert "-j DNAT --to-destination 172.17.0.2:80\n" in ports
        icc = script_for("specs/access-control.yaml", "iptables")
        for direction in (
            "-s 172.17.0.3/32 -d 172.17.0.2/32 -i docker0 -o docker0 -p tcp -m tcp --dport 80",
            "-s 172.17.0.2/32 -d 172.17.0.3/32 -i docker0 -o docker0 -p tcp -m tcp --sport 80",
        ):
            assert direction in icc
        assert "-s 172.17.0.0/16 -d 172.17.0.0/16 -i docker0 -o docker0" in icc
        assert icc.index("--dport 80") < icc.index("-j DROP")

    def test_every_rule_and_jump_carries_the_spec_comment(self) -> None:
        for stem in EXAMPLES:
            for line in script_for(f"specs/{stem}.yaml", "iptables").splitlines():
                if line.startswith("iptables ") and (" -A " in line or " -I " in line):
                    assert f"-m comment --comment netgen:{stem} -j " in line, line
            nft = script_for(f"specs/{stem}.yaml", "nftables")
            rules = [
                line.strip()
                for line in nft.splitlines()
                if line.startswith("\t\t") and not line.strip().startswith(("#", "type "))
            ]
            assert rules and all(r.endswith(f'comment "netgen:{stem}"') for r in rules)

    def test_nftables_is_one_transaction(self) -> None:
        s = spec.load("specs/access-control.yaml")
        (add,) = [op for op in lower.lower(s) if isinstance(op, ops.AddFirewall)]
        (cmd,) = dialects.commands(add, firewall="nftables")
        assert cmd.argv == ("nft", "-f", "/dev/stdin") and cmd.stdin is not None
        assert "create table inet netgen_access-control" in cmd.stdin
        assert "create table bridge netgen_access-control" in cmd.stdin

    def test_teardown_is_guarded_and_names_only_the_spec(self) -> None:
        for fw in FIREWALLS:
            for cmd in dialects.commands(ops.DelFirewall("access-control"), firewall=fw):
                assert cmd.guard is not None, cmd
                assert "access-control" in " ".join(cmd.argv), cmd
        unbridged = dialects.commands(ops.DelFirewall("x", bridged=False), firewall="iptables")
        tools = {c.argv[0] for c in unbridged} | {c.guard[0] for c in unbridged if c.guard}
        assert tools == {"iptables"}, "no nft needed"
        for fw in FIREWALLS:
            restore = ops.RestoreSysctl("x", "net.ipv4.ip_forward")
            (cmd,) = dialects.commands(restore, firewall=fw)
            assert cmd.guard == ("test", "-e", "/run/netgen/sysctl/net.ipv4.ip_forward/owners/x")

    def test_unknown_firewall_is_named(self) -> None:
        with pytest.raises(DialectError, match="'pf' cannot express AddFirewall"):
            dialects.commands(ops.AddFirewall("x", ()), firewall="pf")

    def test_cli_firewall_option(self) -> None:
        runner = CliRunner()
        done = runner.invoke(app, ["render", "specs/access-control.yaml", "--firewall", "nftables"])
        assert done.exit_code == 0, done.output
        assert "nft -f /dev/stdin <<'NETGEN_EOF'" in done.stdout
        done = runner.invoke(app, ["render", "specs/access-control.yaml", "--firewall", "pf"])
        assert done.exit_code == 2


class TestLowering:
    def test_access_control_ops(self) -> None:
        s = spec.load("specs/access-control.yaml")
        built = lower.lower(s)
        (add,) = [op for op in built if isinstance(op, ops.AddFirewall)]
        assert built[-1] is add, "the firewall comes once the containers are wired"
        link = [r for r in add.rules if isinstance(r, ops.AllowLink)]
        assert [(str(r.src), str(r.dst), r.proto, r.port) for r in link] == [
            ("172.17.0.3", "172.17.0.2", "tcp", 80),
            ("172.17.0.3", "172.17.0.2", "udp", 5353),
        ]
        (isolate,) = [r for r in add.rules if isinstance(r, ops.Isolate)]
        legs = {c.name: c.interfaces[0].host_ifname for c in s.containers}
        assert isolate.ports == (legs["web"], legs["client"], legs["other"])
        assert not any(isinstance(op, ops.SetSysctl) for op in built), "no forwarding needed"

    def test_port_mapping_ops(self) -> None:
        built = lower.lower(spec.load("specs/port-mapping.yaml"))
        (add,) = [op for op in built if isinstance(op, ops.AddFirewall)]
        ports = [r for r in add.rules if isinstance(r, ops.PublishPort)]
        assert [
            (r.proto, r.host_ip and str(r.host_ip), r.host_port, str(r.dest)) for r in ports
        ] == [
            ("tcp", None, 49153, "172.17.0.2"),
            ("tcp", None, 3000, "172.17.0.2"),
            ("tcp", None, 5000, "172.17.0.3"),
            ("tcp", "127.0.0.1", 49154, "172.17.0.3"),
            ("tcp", "198.51.100.1", 8080, "172.17.0.3"),
            ("udp", None, 5353, "172.17.0.4"),
            ("udp", "127.0.0.1", 5000, "172.17.0.4"),
        ]
        assert [r for r in add.rules if isinstance(r, ops.Masquerade)] == [
            ops.Masquerade(IPv4Network("172.17.0.0/16"), "docker0")
        ]
        sysctls = [(op.key, op.value) for op in built if isinstance(op, ops.SetSysctl)]
        assert sysctls == [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.docker0.route_localnet", "1"),
        ]
        assert [type(op).__name__ for op in ops.teardown(built)[:3]] == [
            "RestoreSysctl",
            "RestoreSysctl",
            "DelFirewall",
        ]

    def test_ops_json_nests_the_rules(self) -> None:
        built = lower.lower(spec.load("specs/access-control.yaml"))
        data: Any = ops.to_json(built[-1])
        assert data["op"] == "AddFirewall" and data["owner"] == "access-control"
        assert data["rules"][0] == {
            "op": "AllowLink",
            "bridge": "docker0",
            "src": "172.17.0.3",
            "dst": "172.17.0.2",
            "proto": "tcp",
            "port": 80,
            "loc": {
                "file": "specs/access-control.yaml",
                "line": 15,
                "col": 12,
                "path": "containers.client.link[0]",
            },
        }
        assert data["rules"][-1]["op"] == "Isolate"
        assert isinstance(data["rules"][-1]["ports"], list)
        json.dumps(data)

    def test_every_rule_kind_survives_the_state_record(self) -> None:
        rules: tuple[ops.Rule, ...] = (
            ops.PublishPort(
                "udp", IPv4Address("127.0.0.1"), 5000, IPv4Address("10.0.0.2"), 53, "b"
            ),
            ops.Isolate("b", IPv4Network("10.0.0.0/24"), ("v1", "v2")),
            ops.Masquerade(IPv4Network("10.0.0.0/24"), "b"),
            ops.AllowLink("b", IPv4Address("10.0.0.3"), IPv4Address("10.0.0.2"), "tcp", 80),
        )
        for op in (
            ops.AddFirewall("x", rules),
            ops.DelFirewall("x"),
            ops.SetSysctl("x", "net.ipv4.ip_forward", "1"),
            ops.RestoreSysctl("x", "net.ipv4.ip_forward"),
        ):
            decoded = state.decode_op(json.loads(json.dumps(state.encode_op(op))))
            assert decoded == op
            if isinstance(op, ops.AddFirewall):
                assert isinstance(decoded, ops.AddFirewall)
                assert [type(r) for r in decoded.rules] == [type(r) for r in rules]


class TestNames:
    def test_short_names_are_kept(self) -> None:
        assert firewall.chain_id("access-control") == "access-control"
        assert firewall.table_name("access-control") == "netgen_access-control"

    def test_long_names_are_shortened_deterministically(self) -> None:
        a = "a" * 40 + "-one"
        b = "a" * 40 + "-two"
        assert firewall.chain_id(a) == firewall.chain_id(a)
        assert firewall.chain_id(a) != firewall.chain_id(b)
        for name in (a, b, "x" * 16, "y" * 64):
            ident = firewall.chain_id(name)
            assert len(ident) == 16 and ident.startswith(name[:9])
            for chain in firewall.chains(name).all():
                assert len(chain.name) <= firewall.CHAIN_MAX, chain.name

    def test_a_shortened_name_never_equals_a_kept_one(self) -> None:
        assert len(firewall.chain_id("z" * 15)) == 15
        assert len(firewall.chain_id("z" * 16)) == 16

    def test_sysctl_keys_with_dotted_interface_names(self) -> None:
        op = ops.SetSysctl("x", "net.ipv4.conf.br/1.route_localnet", "1")
        (cmd,) = dialects.commands(op)
        assert "/proc/sys/net/ipv4/conf/br.1/route_localnet" in cmd.argv
