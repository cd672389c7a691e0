"""Interop/run-matrix: replays quic-interop-runner test cases between implementations through
h3-netsim on loopback and writes Interop/RESULTS.md. See Interop/README.md."""
import argparse
import datetime
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import checks as C
from certs import write_certificates
from trace import TraceError, read_trace

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NETSIM = os.path.join(ROOT, ".build/debug/h3-netsim")
PYTHON = os.path.join(ROOT, ".venv/bin/python")

KB, MB = 1024, 1024 * 1024


class Peer:
    def __init__(self, name, command, build_hint, h3_only=False, h3_mode=False, h3_client_mode=None):
        self.name, self.command, self.build_hint = name, command, build_hint
        self.h3_only = h3_only    # speaks only h3: hq-interop cases run over h3 ("(h3)") or are n/a
        self.h3_mode = h3_mode    # its server serves h3 for any case
        # its client honours ALPN=h3 (runs any case over h3)
        self.h3_client_mode = h3_mode if h3_client_mode is None else h3_client_mode

    def available(self):
        return os.path.exists(self.command[0]) and os.access(self.command[0], os.X_OK)


PEERS = {
    "ours": Peer("ours", [os.path.join(ROOT, ".build/debug/interop-endpoint")],
                 "swift build --product interop-endpoint", h3_mode=True, h3_client_mode=True),
    "aioquic": Peer("aioquic", [PYTHON, os.path.join(ROOT, "Interop/peers/aioquic_endpoint.py")],
                    "scripts/install-deps", h3_mode=True),
    "ngtcp2": Peer("ngtcp2", [os.path.join(ROOT, "Interop/peers/ngtcp2_endpoint.sh")],
                   "scripts/install-deps (ngtcp2-client, ngtcp2-server)", h3_only=True, h3_mode=True),
}


class Case:
    def __init__(self, name, testcase, files, checks, netsim=(), timeout=60, handshakes=1,
                 alpn="hq-interop", ipv6=False, chain=1, split=False, measure=False, preferred=False):
        self.name, self.testcase, self.files, self.netsim = name, testcase, files, list(netsim)
        self.measure = measure  # report goodput: bytes of the files over the client's run time
        # the server advertises a preferred address (127.0.0.2), reached through a second relay
        self.preferred = preferred
        self.timeout, self.alpn, self.ipv6, self.chain = timeout, alpn, ipv6, chain
        self.split = split  # first file on a first connection, the rest on a second
        self.handshakes = handshakes if handshakes != "files" else len(files)
        self.checks = [C.check_decrypted, C.check_handshakes(self.handshakes), C.check_alpn] + checks + [C.check_files]


DELAY = ["--delay-ms", "15"]  # 30 ms RTT everywhere, as the official scenarios have
CASES = [
    # name, TESTCASE given to the endpoints (the official runner's names), files, checks, impairments
    Case("handshake", "handshake", [1 * KB], [C.check_no_retry], DELAY),
    Case("transfer", "transfer", [2 * MB, 3 * MB, 5 * MB], [], DELAY),
    Case("longrtt", "handshake", [1 * KB], [C.check_client_hellos(2)], ["--delay-ms", "750"], timeout=90),
    Case("chacha20", "chacha20", [3 * MB], [C.check_chacha20], DELAY),
    Case("multiplexing", "multiplexing", [32] * 1000, [], DELAY, timeout=120),
    Case("retry", "retry", [10 * KB], [C.check_retry], DELAY),
    Case("resumption", "resumption", [5 * KB] * 5, [C.check_resumption], DELAY, handshakes=2, split=True),
    Case("zerortt", "zerortt", [2 * KB] * 10, [C.check_zero_rtt], DELAY, handshakes=2, split=True),
    Case("http3", "http3", [10 * KB, 20 * KB, 1 * MB], [], DELAY, alpn="h3"),
    Case("blackhole", "transfer", [4 * MB], [],
         DELAY + ["--to-client-rate", "2M", "--blackhole", "1-2,3-4"], timeout=90),
    Case("keyupdate", "keyupdate", [3 * MB], [C.check_key_update], DELAY),
    Case("ecn", "ecn", [1 * MB], [C.check_ecn], DELAY),
    Case("amplificationlimit", "transfer", [5 * KB], [C.check_amplification],
         DELAY + ["--drop-to-server", "2-7"], chain=9),
    Case("handshakeloss", "multiconnect", [1 * KB] * 10, [], DELAY + ["--loss", "0.3"],
         timeout=180, handshakes="files"),
    Case("transferloss", "transfer", [1 * MB, 2 * MB], [], DELAY + ["--loss", "0.02"], timeout=90),
    Case("handshakecorruption", "multiconnect", [1 * KB] * 10, [], DELAY + ["--corrupt", "0.3"],
         timeout=180, handshakes="files"),
    Case("transfercorruption", "transfer", [1 * MB, 2 * MB], [], DELAY + ["--corrupt", "0.02"], timeout=90),
    Case("ipv6", "transfer", [1 * MB, 2 * MB], [C.check_ipv6], DELAY, ipv6=True),
    Case("rebind-port", "transfer", [4 * MB], [C.check_rebinding],
         DELAY + ["--to-client-rate", "2M", "--rebind-port-after", "1"]),
    Case("rebind-addr", "transfer", [4 * MB], [C.check_rebinding],
         DELAY + ["--to-client-rate", "2M", "--rebind-address-after", "1:127.0.0.2"]),
    Case("connectionmigration", "connectionmigration", [2 * MB, 3 * MB], [C.check_preferred_address],
         DELAY + ["--to-client-rate", "4M"], preferred=True),
    # The official runner's goodput measurement: a 10 MB file through a 10 Mbit/s bottleneck. The cell
    # passes on a byte-exact file and reports the goodput (file bits over the client's run time).
    Case("goodput", "goodput", [10 * MB], [], DELAY + ["--rate", "1250k"], timeout=120, measure=True),
    Case("v2", "v2", [1 * KB], [], DELAY),
]
FAST = ["handshake", "transfer", "retry", "resumption", "zerortt", "http3", "transferloss"]

# Known failures that do not make the run fail: (case, server, client) -> reason. Keep it short
# and explained; everything listed here shows in RESULTS.md.
KNOWN_FAILURES = {}


# ---------------------------------------------------------------- processes

class Processes:
    """Every child runs in a session of its own; all are killed on exit or on a signal."""

    def __init__(self):
        self.children = []

    def start(self, command, env, log_path, cwd):
        log = open(log_path, "wb")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                   start_new_session=True, stdin=subprocess.DEVNULL)
        log.close()
        self.children.append(process)
        return process

    def stop(self, process, grace=3.0, sig=signal.SIGTERM):
        if process.poll() is None:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # the process group may hold children (a shell wrapper's gtlsclient) even after it exits
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if process in self.children:
            self.children.remove(process)
        return process.returncode

    def stop_all(self):
        for process in list(self.children):
            self.stop(process, grace=1.0)


PROCESSES = Processes()


def free_udp_port(host):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def udp_bound(port):
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if len(fields) > 1 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


def wait_bound(port, process, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if udp_bound(port):
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------- one cell

class Result:
    def __init__(self, status, reason="", label="", seconds=None, directory=None):
        self.status, self.reason, self.label, self.seconds, self.directory = status, reason, label, seconds, directory


def cell_mode(case, server, client):
    """(runnable, label, client ALPN override) for a pair, or a Result when it cannot run."""
    for peer in (server, client):
        if not peer.available():
            return None, Result("not built", f"{peer.name}: {peer.build_hint}")
    if case.alpn == "h3" or not (server.h3_only or client.h3_only):
        return "", None
    if server.h3_mode and client.h3_client_mode:
        return "h3", None
    return None, Result("n/a", "ngtcp2's examples speak h3 only and the other side has no h3 mode for this case")


SABOTAGE = {
    # Ways to break a run on purpose, to see the checks fail (a check that cannot fail is a defect).
    "keylog": "tshark gets an empty key log",
    "retry": "the server gets TESTCASE=handshake, so it sends no Retry",
    "files": "one byte of the first downloaded file is flipped before the checks",
}


def run_cell(case, server, client, certs, work, seed, keep, sabotage=None):
    mode, result = cell_mode(case, server, client)
    if result:
        return result
    directory = tempfile.mkdtemp(prefix=f"{case.name}-{server.name}-{client.name}-", dir=work)
    www, downloads, qlog = (os.path.join(directory, d) for d in ("www", "downloads", "qlog"))
    for d in (www, downloads, os.path.join(qlog, "server"), os.path.join(qlog, "client")):
        os.makedirs(d)
    rng = random.Random(f"{seed}-{case.name}")
    names = []
    for size in case.files:
        name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(10))
        with open(os.path.join(www, name), "wb") as f:
            f.write(os.urandom(size))
        names.append(name)
    host = "::1" if case.ipv6 else "127.0.0.1"
    bracket = f"[{host}]" if case.ipv6 else host
    server_port, listen_port = free_udp_port(host), free_udp_port(host)
    while listen_port == server_port:
        listen_port = free_udp_port(host)
    keylogs = [os.path.join(directory, f"keylog-{role}.txt") for role in ("server", "client")]
    pcap = os.path.join(directory, "trace.pcap")
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "USER")}
    base["TESTCASE"] = case.testcase
    server_env = dict(base, ROLE="server", WWW=www, CERTS=certs[case.chain], PORT=str(server_port),
                      BIND_ADDRESS=host, SSLKEYLOGFILE=keylogs[0], QLOGDIR=os.path.join(qlog, "server"))
    urls = [f"https://{bracket}:{listen_port}/{n}" for n in names]
    client_env = dict(base, ROLE="client", DOWNLOADS=downloads, REQUESTS=" ".join(urls),
                      SSLKEYLOGFILE=keylogs[1], QLOGDIR=os.path.join(qlog, "client"))
    if mode == "h3":
        client_env["ALPN"] = "h3"
        if server.name == "ours":
            # Our server serves h3 for any case with ALPN=h3 (aioquic's offers both ALPNs itself).
            server_env["ALPN"] = "h3"
    preferred_pcap = os.path.join(directory, "trace-preferred.pcap")
    if case.preferred:
        # The server's preferred address is a second relay on 127.0.0.2 (its own pcap), which
        # forwards to the server's second socket.
        preferred_server_port, preferred_listen_port = free_udp_port("127.0.0.2"), free_udp_port("127.0.0.2")
        while preferred_listen_port == preferred_server_port:
            preferred_listen_port = free_udp_port("127.0.0.2")
        server_env["PREFERRED_ADDRESS"] = f"127.0.0.2:{preferred_listen_port}"
        server_env["PREFERRED_BIND"] = f"127.0.0.2:{preferred_server_port}"
    if sabotage == "retry" and case.testcase == "retry":
        server_env["TESTCASE"] = "handshake"
    label = " (h3)" if mode == "h3" else ""
    started = time.monotonic()
    server_process = PROCESSES.start(server.command, server_env, os.path.join(directory, "server.log"), directory)
    netsim_process = client_process = preferred_process = None
    try:
        if not wait_bound(server_port, server_process, 15):
            code = server_process.poll()
            if code == 127:
                return Result("unsupported", f"{server.name} server exited 127", label, directory=directory)
            return Result("fail", f"the server did not bind UDP port {server_port} (exit {code})", label,
                          directory=directory)
        netsim_command = [NETSIM, "--listen", f"{bracket}:{listen_port}", "--server", f"{bracket}:{server_port}",
                          "--seed", str(seed), "--pcap", pcap, "--duration", str(case.timeout + 30)] + case.netsim
        netsim_process = PROCESSES.start(netsim_command, base, os.path.join(directory, "netsim.log"), directory)
        if not wait_bound(listen_port, netsim_process, 10):
            return Result("fail", "h3-netsim did not start (see netsim.log)", label, directory=directory)
        if case.preferred:
            preferred_command = [NETSIM, "--listen", f"127.0.0.2:{preferred_listen_port}",
                                 "--server", f"127.0.0.2:{preferred_server_port}", "--seed", str(seed + 1),
                                 "--pcap", preferred_pcap, "--duration", str(case.timeout + 30)] + case.netsim
            preferred_process = PROCESSES.start(preferred_command, base, os.path.join(directory, "netsim-preferred.log"),
                                                directory)
            if not wait_bound(preferred_listen_port, preferred_process, 10):
                return Result("fail", "the preferred address relay did not start (see netsim-preferred.log)", label,
                              directory=directory)
        client_started = time.monotonic()
        client_process = PROCESSES.start(client.command, client_env, os.path.join(directory, "client.log"), directory)
        try:
            code = client_process.wait(case.timeout)
        except subprocess.TimeoutExpired:
            code = None
        client_seconds = time.monotonic() - client_started
        seconds = time.monotonic() - started
        time.sleep(0.3)  # the last packets (CONNECTION_CLOSE) reach the relay
        client_code = PROCESSES.stop(client_process)
        PROCESSES.stop(netsim_process, grace=5.0)  # SIGTERM: completes the pcap, prints counters
        if preferred_process is not None:
            PROCESSES.stop(preferred_process, grace=5.0)
        server_code = PROCESSES.stop(server_process)
        if code == 127:
            return Result("unsupported", f"{client.name} client exited 127", label, seconds, directory)
        if server_code == 127:
            return Result("unsupported", f"{server.name} server exited 127", label, seconds, directory)
        if code is None:
            return Result("fail", f"the client did not finish within {case.timeout} s", label, seconds, directory)
        if code != 0:
            return Result("fail", f"the client exited {code}", label, seconds, directory)
        with open(keylogs[0], "a"), open(keylogs[1], "a"):
            pass
        keylog = os.path.join(directory, "keylog.txt")
        with open(keylog, "w") as out:
            for path in keylogs if sabotage != "keylog" else []:
                with open(path) as f:
                    out.write(f.read())
        if sabotage == "files" and names and os.path.exists(os.path.join(downloads, names[0])):
            with open(os.path.join(downloads, names[0]), "r+b") as f:
                first = f.read(1)
                f.seek(0)
                f.write(bytes([first[0] ^ 0xFF]) if first else b"x")
        try:
            datagrams = read_trace(pcap, keylog, server_port)
            if case.preferred:
                # The preferred path's datagrams come after the others (their own capture).
                preferred = read_trace(preferred_pcap, keylog, preferred_server_port) \
                    if os.path.exists(preferred_pcap) else []
                for d in preferred:
                    d.preferred_path = True
                datagrams += preferred
        except TraceError as error:
            return Result("fail", str(error), label, seconds, directory)
        run = C.Run(case, www, downloads, datagrams, names, names[1:] if case.split else [],
                    case.alpn if mode != "h3" else "h3")
        for check in case.checks:
            problem = check(run)
            if problem:
                return Result("fail", f"{check.__name__.replace('check_', '')}: {problem}", label, seconds, directory)
        if case.measure:
            label += f" {sum(case.files) * 8 / client_seconds / 1e6:.2f} Mbit/s"
        return Result("pass", "", label, seconds, directory)
    finally:
        for process in (client_process, netsim_process, preferred_process, server_process):
            if process is not None:
                PROCESSES.stop(process, grace=1.0)
        if not keep:
            shutil.rmtree(os.path.join(directory, "www"), ignore_errors=True)
            shutil.rmtree(os.path.join(directory, "downloads"), ignore_errors=True)


# ---------------------------------------------------------------- report

SYMBOL = {"pass": "✓", "fail": "✗", "unsupported": "unsupported", "n/a": "n/a", "not built": "not built"}


def write_results(path, command, results, cases, pairs, started, elapsed, seed):
    notes, lines = [], []
    lines += ["# Interop results", "",
              f"Written by `Interop/run-matrix` from a real run; do not edit by hand.", "",
              f"- Command: `{command}`",
              f"- Date: {started.strftime('%Y-%m-%d %H:%M:%S %Z').strip()} (took {elapsed:.0f} s), seed {seed}",
              f"- Machine: {platform.platform()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}, "
              f"{tool_versions()}",
              "- Network: every datagram goes through `h3-netsim` on loopback (15 ms each way plus the "
              "case's impairments); checks read its pcap, decrypted by tshark with both key logs, and "
              "the downloaded files.",
              "- Cell: ✓ pass, ✗ fail (reason in the notes), unsupported (an endpoint exited 127), "
              "n/a (the pair cannot run the case), not built (a binary is missing). "
              "(h3): run over HTTP/3 because ngtcp2's examples speak h3 only.", ""]
    header = "| case | " + " | ".join(f"{s} → {c}" for s, c in pairs) + " |"
    lines += ["Columns are server → client.", "", header, "|" + " --- |" * (len(pairs) + 1)]
    for case in cases:
        row = [case.name]
        for s, c in pairs:
            result = results.get((case.name, s, c))
            if result is None:
                row.append("")
                continue
            text = SYMBOL[result.status] + result.label
            if result.status == "fail":
                notes.append(f"{case.name}, {s} → {c}: {result.reason}"
                             + (f" (known: {KNOWN_FAILURES[(case.name, s, c)]})" if (case.name, s, c) in KNOWN_FAILURES else ""))
                text += f" [{len(notes)}]"
            row.append(text)
        lines.append("| " + " | ".join(row) + " |")
    if notes:
        lines += ["", "Notes:", ""] + [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    reasons = sorted({r.reason for r in results.values() if r.status in ("not built", "n/a", "unsupported")})
    if reasons:
        lines += ["", "Why cells did not run:", ""] + [f"- {r}" for r in reasons]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def tool_versions():
    def first_line(command):
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=20).stdout.splitlines()[0]
        except Exception:
            return "?"
    aioquic = first_line([PYTHON, "-c", "import aioquic; print(aioquic.__version__)"])
    ngtcp2 = first_line(["sh", "-c", "dpkg-query -W -f='${Version}' ngtcp2-client 2>/dev/null; echo"])
    tshark = first_line(["tshark", "--version"])
    return f"aioquic {aioquic}, ngtcp2 examples {ngtcp2}, {tshark}"


def main():
    parser = argparse.ArgumentParser(prog="Interop/run-matrix", description=__doc__)
    parser.add_argument("--peers", default="ours,aioquic,ngtcp2", help="comma-separated: ours, aioquic, ngtcp2")
    parser.add_argument("--servers", help="servers (default: --peers)")
    parser.add_argument("--clients", help="clients (default: --peers)")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--fast", action="store_true", help="only " + ",".join(FAST))
    parser.add_argument("--output", default=os.path.join(ROOT, "Interop/RESULTS.md"),
                        help="results file (default Interop/RESULTS.md; '-' for none)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (pcaps, logs, files)")
    parser.add_argument("--workdir", help="where cell directories go (kept); default: a temporary directory")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--sabotage", choices=sorted(SABOTAGE),
                        help="break every run on purpose to see the checks fail: "
                             + "; ".join(f"{k}: {v}" for k, v in sorted(SABOTAGE.items())))
    args = parser.parse_args()
    if args.list:
        for case in CASES:
            print(f"{case.name:20} TESTCASE={case.testcase:12} files={len(case.files)} netsim: {' '.join(case.netsim)}"
                  + ("  [fast]" if case.name in FAST else ""))
        return 0
    names = {c.name for c in CASES}
    selected = args.cases.split(",") if args.cases else (FAST if args.fast else [c.name for c in CASES])
    unknown = [n for n in selected if n not in names]
    peers = lambda text: [p for p in text.split(",") if p]
    servers, clients = peers(args.servers or args.peers), peers(args.clients or args.peers)
    unknown += [p for p in servers + clients if p not in PEERS]
    if unknown:
        parser.error(f"unknown case or peer: {', '.join(unknown)}")
    for tool, hint in ((NETSIM, "swift build --product h3-netsim"), ("tshark", "scripts/install-deps"),
                       (PYTHON, "scripts/install-deps")):
        if not shutil.which(tool):
            print(f"run-matrix: {tool} is missing ({hint})", file=sys.stderr)
            return 2
    cases = [c for c in CASES if c.name in selected]
    pairs = [(s, c) for s in servers for c in clients]

    def on_signal(number, frame):
        PROCESSES.stop_all()
        sys.exit(128 + number)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    started, began = datetime.datetime.now().astimezone(), time.monotonic()
    work = args.workdir or tempfile.mkdtemp(prefix="run-matrix-")
    os.makedirs(work, exist_ok=True)
    certs = {1: write_certificates(os.path.join(work, "certs")),
             9: write_certificates(os.path.join(work, "certs-chain9"), chain_length=9)}
    results, failures = {}, 0
    try:
        for case in cases:
            for s, c in pairs:
                result = run_cell(case, PEERS[s], PEERS[c], certs, work, args.seed, args.keep or bool(args.workdir),
                                  args.sabotage)
                results[(case.name, s, c)] = result
                known = (case.name, s, c) in KNOWN_FAILURES
                if result.status == "fail" and not known:
                    failures += 1
                took = f" {result.seconds:.1f}s" if result.seconds is not None else ""
                print(f"{case.name:20} {s:8} → {c:8} {result.status}{result.label}{took}"
                      + (f": {result.reason}" if result.reason and result.status != "pass" else ""), flush=True)
    finally:
        PROCESSES.stop_all()
        if not (args.keep or args.workdir):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"run-matrix: work directory {work}", file=sys.stderr)
    command = "Interop/run-matrix " + " ".join(sys.argv[1:])
    if args.output != "-" and not args.sabotage:
        write_results(args.output, command.strip(), results, cases, pairs, started, time.monotonic() - began, args.seed)
        print(f"run-matrix: wrote {os.path.relpath(args.output, ROOT)}", file=sys.stderr)
    print(f"run-matrix: {sum(r.status == 'pass' for r in results.values())} passed, {failures} failed, "
          f"{sum(r.status not in ('pass', 'fail') for r in results.values())} not run", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
