#!/usr/bin/python3
"""The parts of scripts/bench.sh. Each part writes $OUT/results/PART.json;
`report` turns them into the markdown tables of docs/PERFORMANCE.md.

usage: bench.py machine|record|relay|conn|cpu|mem|report   (env from bench.sh)

Timing rules (the machine has 2 shared cores and is noisy):
- rounds interleave the cases (round r runs every case once), medians over rounds;
- min and max are kept next to every median;
- instruction counts (callgrind) are given where a stable number is needed:
  they do not move with the load, and compare code, not moments.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cgincl  # noqa: E402

E = os.environ
OUT = E.get("OUT", "/tmp/blackpony-bench")
BIN = E["BIN"]
CG = E["CG"]
KEYS = E["KEYS"]
RES = os.path.join(OUT, "results")
LOG = os.path.join(OUT, "log")
QUICK = E.get("QUICK") == "1"
P = {k: int(E[k]) for k in ("SINK", "BP_KEYED", "BP_PLAIN", "BP_PFX", "BP_MEM", "BP_MEM_PLAIN",
                            "BP_CG", "BP_CG_PLAIN", "BP_LISTEN", "BP_LISTEN_PLAIN", "BP_ACT", "BP_ACT_PLAIN",
                            "BP_RSA", "BP_CG_RSA",
                            "PFX_PLAIN", "PFX_TLS",
                            "ALT_KEYED", "ALT_PLAIN", "ALT_CG", "ALT_CG_PLAIN")}
ALT = E.get("COMPARE_BIN") or None
X25519 = "NOISE-25519-CHACHAPOLY-SHA256"  # the default suite (handshake v2)
RSABF = "RSA-BLOWFISH"
MB = 1e6


def save(part, data):
    os.makedirs(RES, exist_ok=True)
    with open(os.path.join(RES, part + ".json"), "w") as f:
        json.dump(data, f, indent=1)
    print(f"[{part}] results in {RES}/{part}.json", flush=True)


def stats(v):
    v = [x for x in v if x is not None]
    if not v:
        return {"median": None, "min": None, "max": None, "all": []}
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "all": v}


def cg_usage(group):
    with open(f"{CG}/{group}/cpuacct.usage") as f:
        return int(f.read())


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), check=True, text=True,
                          capture_output=True, **kw).stdout


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- machine

def machine():
    lscpu = sh("lscpu")
    keep = ("Model name", "CPU(s)", "Thread(s) per core", "Hypervisor vendor", "L1d cache", "L2 cache",
            "L3 cache")
    summary = {}
    for line in lscpu.splitlines():
        k, _, v = line.partition(":")
        if k.strip() in keep and k.strip() not in summary:
            summary[k.strip()] = v.strip()
    flags = re.search(r"^Flags:\s*(.*)$", lscpu, re.M)
    flags = flags.group(1).split() if flags else []
    summary["vector/crypto flags"] = " ".join(f for f in ("avx2", "avx512f", "sha_ni", "aes", "vaes")
                                              if f in flags)

    def version(cmd):
        try:
            return sh(cmd).strip().splitlines()[0]
        except Exception:
            return "?"
    data = {
        "lscpu": summary,
        "kernel": sh("uname -srvm").strip(),
        "os": open("/etc/debian_version").read().strip(),
        "mem": sh("free -h | awk '/Mem:/ {print $2}'").strip(),
        "rustc": version("rustc --version"),
        "openssl": version("openssl version"),
        "valgrind": version("valgrind --version"),
        "hyperfine": version("hyperfine --version"),
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "git": version(f"git -C {E['ROOT']} rev-parse --short HEAD") + (
            " + uncommitted changes" if sh(f"git -C {E['ROOT']} status --porcelain -- src Cargo.toml").strip()
            else ""),
        "command": E.get("BENCH_CMD", "scripts/bench.sh"),
    }
    save("machine", data)


# ---------------------------------------------------------------- record layer

OPENSSL = [
    ("bf-cbc", ["openssl", "speed", "-provider", "legacy", "-provider", "default", "-evp", "bf-cbc"]),
    ("chacha20-poly1305", ["openssl", "speed", "-evp", "chacha20-poly1305"]),
    ("hmac-sha1", ["openssl", "speed", "-hmac", "sha1"]),
]

IR_CASES = ["raw bf-ctr", "raw hmac-sha1", "raw ctr+hmac", "rsa-blowfish seal", "rsa-blowfish open",
            "raw chacha20poly1305", "noise-chachapoly seal", "noise-chachapoly open"]


def openssl_speed(cmd):
    # -elapsed: wall clock like the record bench (the default divides by user CPU time).
    out = sh(cmd + ["-elapsed", "-bytes", "16384", "-seconds", "1", "-mr"])
    for line in out.splitlines():
        if line.startswith("+F:"):
            return float(line.split(":")[-1]) / MB
    return None


def record():
    rounds = int(E.get("ROUNDS_RECORD", "3" if QUICK else "7"))
    secs = E.get("RECORD_SECS", "0.3")
    runs = {}
    for r in range(rounds):
        log(f"[record] round {r + 1}/{rounds}")
        tsv = os.path.join(OUT, "record.tsv")
        sh([f"{BIN}/record", "--rounds", "1", "--secs", secs, "--tsv", tsv])
        for line in open(tsv):
            name, med = line.split("\t")[:2]
            runs.setdefault(name, []).append(float(med))
        for name, cmd in OPENSSL:
            runs.setdefault("openssl " + name, []).append(openssl_speed(cmd))
    ir, ir_copy = {}, {}
    if shutil.which("valgrind"):
        mib = int(E.get("IR_MIB", "2"))
        for case in IR_CASES:
            f = os.path.join(OUT, "cg", "record.out")
            sh(["valgrind", "--tool=callgrind", "--log-file=/dev/null", "--collect-atstart=no",
                "--toggle-collect=*ir_region*", f"--callgrind-out-file={f}",
                f"{BIN}/record", "--ir", case, "--mib", str(mib)])
            total, fns = cgincl.load(f)
            ir[case] = total / (mib << 20)
            # valgrind counts every byte `rep movsb` moves (glibc's large memcpy) as an instruction
            copy = sum(v[1] for k, v in fns.items() if "memcpy" in k or "memmove" in k)
            ir_copy[case] = copy / (mib << 20)
            log(f"[record] {case}: {ir[case]:.2f} instructions/byte ({ir_copy[case]:.2f} in memcpy)")
    save("record", {"rounds": rounds, "secs": float(secs),
                    "mbps": {k: stats(v) for k, v in runs.items()}, "ir_per_byte": ir,
                    "ir_memcpy_per_byte": ir_copy})


# ---------------------------------------------------------------- relay throughput

RELAY_CASES = [
    # name, port, mailer --suites, binaries from --compare DIR
    ("direct", "SINK", None, False),
    ("plain relay", "BP_PLAIN", None, False),
    (X25519, "BP_KEYED", X25519, False),
    (RSABF, "BP_RSA", RSABF, False),
]
ALT_CASES = [
    ("direct [compare]", "SINK", None, True),
    ("plain relay [compare]", "ALT_PLAIN", None, True),
    (X25519 + " [compare]", "ALT_KEYED", X25519, True),
    (RSABF + " [compare]", "ALT_KEYED", RSABF, True),
]


def mailer_cmd(port, suites, timeout=None, alt=False):
    cmd = [f"{ALT if alt else BIN}/blackpony-mailer", "--port", str(port), "--key", f"{KEYS}/client.key",
           "--known-peers", f"{OUT}/known_peers", "--log", f"{LOG}/mailer.log"]
    if suites:
        cmd += ["--suites", suites]
    if timeout:
        cmd += ["--timeout", str(timeout)]
    return cmd + ["[127.0.0.1]"]


def relay_once(size, port, suites, wrap=None, alt=False):
    """One message of `size` bytes through the mailer; wall time and the mailer's rusage."""
    feed = subprocess.Popen([f"{BIN}/bpfeed", "--size", str(size)], stdout=subprocess.PIPE)
    cmd = mailer_cmd(port, suites, timeout=900 if wrap else None, alt=alt)
    if wrap:
        cmd = wrap + cmd
    t0 = time.perf_counter()
    m = subprocess.Popen(cmd, stdin=feed.stdout, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    feed.stdout.close()
    out = m.stdout.read().decode(errors="replace")
    _, status, ru = os.wait4(m.pid, 0)
    m.returncode = os.waitstatus_to_exitcode(status)
    secs = time.perf_counter() - t0
    feed.wait()
    got = re.search(r"size=(\d+)", out)
    if not got or int(got.group(1)) != size:
        raise SystemExit(f"relay to port {port} ({suites}): message not delivered whole:\n{out[-600:]}")
    return {"secs": secs, "mailer_cpu": ru.ru_utime + ru.ru_stime, "mailer_maxrss_kb": ru.ru_maxrss}


def relay():
    size = int(float(E.get("RELAY_MB", "100")) * (1 << 20))
    rounds = int(E.get("ROUNDS_RELAY", "3" if QUICK else "7"))
    cases = RELAY_CASES + (ALT_CASES if ALT else [])
    runs = {c[0]: [] for c in cases}
    relay_once(1 << 20, P["BP_KEYED"], X25519)  # warm-up: page cache, known_peers
    for r in range(rounds):
        log(f"[relay] round {r + 1}/{rounds}")
        for name, port, suites, alt in cases:
            bp0, s0 = cg_usage("bp"), cg_usage("sink")
            res = relay_once(size, P[port], suites, alt=alt)
            time.sleep(0.05)
            res["blackpony_cpu"] = (cg_usage("bp") - bp0) / 1e9
            res["sink_cpu"] = (cg_usage("sink") - s0) / 1e9
            res["mbps"] = size / MB / res["secs"]
            runs[name].append(res)
            log(f"[relay]   {name:<24} {res['mbps']:7.1f} MB/s")
    data = {"size": size, "rounds": rounds, "compare": ALT, "cases": {}}
    for name, rs in runs.items():
        data["cases"][name] = {k: stats([x[k] for x in rs]) for k in rs[0]}
    # Instructions per byte of each process (callgrind; blackpony through inetd under valgrind).
    if shutil.which("valgrind") and not QUICK:
        irsize = int(float(E.get("IR_RELAY_MB", "16")) * (1 << 20))
        data["ir"] = {}
        ir_cases = [("direct", "SINK", None, False), ("plain relay", "BP_CG_PLAIN", None, False),
                    (X25519, "BP_CG", X25519, False), (RSABF, "BP_CG_RSA", RSABF, False)]
        if ALT:
            ir_cases += [("direct [compare]", "SINK", None, True),
                         ("plain relay [compare]", "ALT_CG_PLAIN", None, True),
                         (X25519 + " [compare]", "ALT_CG", X25519, True),
                         (RSABF + " [compare]", "ALT_CG", RSABF, True)]
        for name, port, suites, alt in ir_cases:
            before = set(os.listdir(os.path.join(OUT, "cg")))
            mf = os.path.join(OUT, "cg", "relay-mailer.out")
            relay_once(irsize, P[port], suites, alt=alt,
                       wrap=["valgrind", "--tool=callgrind", "--log-file=/dev/null",
                             f"--callgrind-out-file={mf}"])
            # Per byte: the process's "rest" (everything but start, key load, RSA, X25519) / size.
            ms = split(mf, "blackpony-mailer")
            bs = split(wait_new_cg(before), "blackpony") if port != "SINK" else None
            entry = {"mailer_ir_per_byte": ms["rest"] / irsize,
                     "blackpony_ir_per_byte": bs["rest"] / irsize if bs else None,
                     "mailer_split": ms, "blackpony_split": bs,
                     "blackpony_handshake_ir": bs["total"] - bs["rest"] if bs else None}
            data["ir"][name] = entry
            log(f"[relay] {name}: mailer {entry['mailer_ir_per_byte']:.1f} Ir/B, blackpony "
                f"{entry['blackpony_ir_per_byte'] or 0:.1f} Ir/B ({irsize >> 20} MiB)")
        data["ir_size"] = irsize
    save("relay", data)


def wait_new_cg(before, timeout=120):
    """The callgrind file a blackpony run under inetd wrote (it appears when the process exits)."""
    d = os.path.join(OUT, "cg")
    t = time.time()
    while time.time() - t < timeout:
        new = [f for f in os.listdir(d) if f.startswith("bp.") and f not in before]
        for f in new:
            path = os.path.join(d, f)
            # complete once the last line, "totals:", is written
            with open(path, "rb") as fh:
                fh.seek(max(0, os.path.getsize(path) - 200))
                if b"\ntotals:" in fh.read():
                    return path
        time.sleep(0.1)
    raise SystemExit("no callgrind output from blackpony under inetd")


# ---------------------------------------------------------------- connections

CONN_CASES = [
    # name, port, mode, client --suites, backend label
    ("sink, direct", "SINK", "plain", None, "-"),
    ("blackpony plain (inetd) -> sink", "BP_PLAIN", "plain", None, "sink"),
    (f"blackpony {X25519} (inetd) -> sink", "BP_KEYED", "bp", X25519, "sink"),
    (f"blackpony {X25519} IK, known peer (inetd) -> sink", "BP_KEYED", "bp-ik", X25519, "sink"),
    (f"blackpony {RSABF} (inetd) -> sink", "BP_RSA", "bp", RSABF, "sink"),
    (f"blackpony {X25519} (--listen, no inetd) -> sink", "BP_LISTEN", "bp", X25519, "sink"),
    (f"blackpony {X25519} IK, known peer (--listen) -> sink", "BP_LISTEN", "bp-ik", X25519, "sink"),
    (f"blackpony {X25519} (systemd Accept=no) -> sink", "BP_ACT", "bp", X25519, "sink"),
    ("blackpony plain (--listen, no inetd) -> sink", "BP_LISTEN_PLAIN", "plain", None, "sink"),
    ("blackpony plain (systemd Accept=no) -> sink", "BP_ACT_PLAIN", "plain", None, "sink"),
    (f"blackpony {X25519} (inetd) -> Postfix plain", "BP_PFX", "bp", X25519, "postfix"),
    ("Postfix smtpd plain", "PFX_PLAIN", "plain", None, "-"),
    ("Postfix smtpd STARTTLS (TLS 1.3)", "PFX_TLS", "starttls", None, "-"),
]


def postfix_idle(spool="/dev/shm/blackpony-bench-spool", timeout=20):
    t = time.time()
    while time.time() - t < timeout:
        n = 0
        for d in ("incoming", "active", "deferred", "maildrop"):
            for _, _, files in os.walk(os.path.join(spool, d)):
                n += len(files)
        if n == 0:
            break
        time.sleep(0.05)
    time.sleep(0.3)


def conn():
    n = int(E.get("CONN_N", "100" if QUICK else "300"))
    rounds = int(E.get("ROUNDS_CONN", "2" if QUICK else "5"))
    groups = ["bp", "sink", "pfx", "pfx/smtpd"]
    runs = {c[0]: [] for c in CONN_CASES}
    for name, port, mode, suites, _ in CONN_CASES:  # warm-up
        client(P[port], mode, suites, 10)
    postfix_idle()
    for r in range(rounds):
        log(f"[conn] round {r + 1}/{rounds}")
        for name, port, mode, suites, backend in CONN_CASES:
            before = {g: cg_usage(g) for g in groups}
            res = client(P[port], mode, suites, n)
            if backend == "postfix" or port.startswith("PFX"):
                postfix_idle()
            else:
                time.sleep(0.2)
            cpu = {g: (cg_usage(g) - before[g]) / 1e6 / n for g in groups}
            res["cpu_ms"] = cpu
            runs[name].append(res)
            log(f"[conn]   {name:<52} {res['msgs_per_s']:7.1f} msg/s  switch turns {res['switch_turns']}")
    data = {"n": n, "rounds": rounds, "cases": {}}
    for name, port, mode, suites, backend in CONN_CASES:
        rs = runs[name]
        data["cases"][name] = {
            "mode": mode, "suite": suites, "backend": backend,
            "msgs_per_s": stats([x["msgs_per_s"] for x in rs]),
            "client_cpu_ms": stats([x["cpu_ms_per_conn"] for x in rs]),
            "cpu_ms": {g: stats([x["cpu_ms"][g] for x in rs]) for g in groups},
            "turns": rs[0]["turns"], "switch_turns": rs[0]["switch_turns"],
            "bytes_out": rs[0]["bytes_out"], "bytes_in": rs[0]["bytes_in"], "what": rs[0]["what"],
            "lat_ms_p50": stats([x["lat_ms_p50"] for x in rs]),
        }
    save("conn", data)


def client(port, mode, suites, n):
    # --quickack: see bpclient.rs (without it Postfix+TLS stalls 40 ms on Nagle/delayed ACK)
    # bp-ik: as bp, with the server's certificate cached after the first connection (Noise IK)
    ik = mode == "bp-ik"
    mode = "bp" if ik else mode
    cmd = [f"{BIN}/bpclient", "--connect", f"127.0.0.1:{port}", "--mode", mode, "-n", str(n), "--quickack"]
    if mode == "bp":
        cmd += ["--key", f"{KEYS}/client.key"] + (["--ik"] if ik else [])
    if suites:
        cmd += ["--suites", suites]
    return json.loads(sh(cmd).strip().splitlines()[-1])


# ---------------------------------------------------------------- CPU per connection

# Per connection only RSA-BLOWFISH makes one (v2 reads no RSA private key); cert::issue signs at renewal.
RSA_PRIVATE = ["blackpony::crypto::oaep::unwrap", "blackpony::cert::issue"]
RSA_PUBLIC = ["blackpony::crypto::oaep::wrap", "<rsa::pss::Pss<D> as rsa::traits::padding::SignatureScheme>::verify"]
RSA_SYMS = RSA_PRIVATE + RSA_PUBLIC
X25519_SYMS = ["x25519_dalek::x25519::StaticSecret::diffie_hellman",
               "<x25519_dalek::x25519::PublicKey as core::convert::From<&x25519_dalek::x25519::StaticSecret>>::from",
               "x25519_dalek::x25519::EphemeralSecret::diffie_hellman",
               "<x25519_dalek::x25519::PublicKey as core::convert::From<&x25519_dalek::x25519::EphemeralSecret>>::from",
               "x25519_dalek::x25519::EphemeralSecret::random",
               "x25519_dalek::x25519::EphemeralSecret::random_from_rng"]
MAIN = {"blackpony": "blackpony::main", "blackpony-mailer": "blackpony_mailer::main"}


def split(path, prog):
    total, fns = cgincl.load(path)
    inc = lambda syms: sum(fns.get(s, (0, 0))[0] for s in syms)  # noqa: E731
    main = fns.get(MAIN[prog], (0, 0))[0]
    d = {
        "total": total,
        "process start + exit": total - main,
        "key load": inc(["blackpony::keys::HostKey::load"]),
        "RSA private-key op": inc(RSA_PRIVATE),
        "RSA public-key op": inc(RSA_PUBLIC),
        "X25519": inc(X25519_SYMS),
        "peer key parse": inc(["blackpony::keys::parse_peer_key"]),
    }
    d["rest"] = main - sum(v for k, v in d.items() if k not in ("total", "process start + exit"))
    missing = [s for s in [MAIN[prog]] if s not in fns]
    if missing:
        d["warning"] = "symbols not found (renamed or inlined?): " + ", ".join(missing)
    return d


def cpu():
    data = {"server": {}, "client": {}}
    d = os.path.join(OUT, "cg")
    # Server: one blackpony session started by inetd under callgrind, fed by bpclient.
    for name, port, mode, suites in [("plain (no suite offered)", "BP_CG_PLAIN", "plain", None),
                                     (X25519, "BP_CG", "bp", X25519), (RSABF, "BP_CG_RSA", "bp", RSABF)]:
        before = set(os.listdir(d))
        client(P[port], mode, suites, 1)
        data["server"][name] = split(wait_new_cg(before), "blackpony")
        log(f"[cpu] blackpony {name}: {data['server'][name]['total']:,} instructions")
    # Client: one blackpony-mailer delivery (the anchor's 5291-byte message) under callgrind.
    for name, port, suites in [("plain (server offers nothing)", "BP_PLAIN", None),
                               (X25519, "BP_KEYED", X25519), (RSABF, "BP_RSA", RSABF)]:
        f = os.path.join(d, "mailer-conn.out")
        relay_once(5291, P[port], suites, wrap=["valgrind", "--tool=callgrind", "--log-file=/dev/null",
                                                 f"--callgrind-out-file={f}"])
        data["client"][name] = split(f, "blackpony-mailer")
        log(f"[cpu] blackpony-mailer {name}: {data['client'][name]['total']:,} instructions")
    # Wall clock: process start and key load (hyperfine), the handshake and its parts in process.
    hf = os.path.join(OUT, "hyperfine.json")
    key = f"{KEYS}/server.key"
    sh(["hyperfine", "-N", "--warmup", "20", "--runs", "100" if QUICK else "300", "--export-json", hf,
        "/bin/true", f"{BIN}/blackpony --version", f"{BIN}/blackpony --fingerprint --key {key}"])
    data["hyperfine"] = {r["command"].replace(BIN + "/", "").replace(KEYS + "/", ""): {"median_ms": r["median"] * 1e3, "min_ms": r["min"] * 1e3,
                                        "max_ms": r["max"] * 1e3, "user_ms": r["user"] * 1e3,
                                        "system_ms": r["system"] * 1e3}
                         for r in json.load(open(hf))["results"]}
    tsv = os.path.join(OUT, "handshake.tsv")
    sh([f"{BIN}/handshake", "--keys", f"{KEYS}/client.key", key, "--rounds", "3" if QUICK else "5",
        "--secs", "0.2", "--tsv", tsv])
    data["handshake_us"] = {l.split("\t")[0]: [float(x) for x in l.split("\t")[1:4]] for l in open(tsv)}
    data["handshake_ir"] = {}
    v2 = X25519.lower()
    for case in [f"{v2} xx client", f"{v2} xx server", f"{v2} ik client", f"{v2} ik server",
                 f"{RSABF} client", f"{RSABF} server",
                 "rsa-2048 sign pss-sha256", "rsa-2048 verify pss-sha256", "rsa-2048 oaep encrypt",
                 "rsa-2048 oaep decrypt", "x25519 keygen+dh", "host key load (pkcs8 pem)", "peer spki parse"]:
        f = os.path.join(d, "hs.out")
        n = 3
        sh(["valgrind", "--tool=callgrind", "--log-file=/dev/null", "--collect-atstart=no",
            "--toggle-collect=*ir_region*", f"--callgrind-out-file={f}", f"{BIN}/handshake", "--keys",
            f"{KEYS}/client.key", key, "--ir", case, "--n", str(n)])
        # the region also ran once for the warm-up: n + 1 operations were counted
        data["handshake_ir"][case] = cgincl.load(f)[0] / (n + 1)
    # What a faster RSA would save: the same signature by ring (scripts/bench/src/bin/rsaring.rs).
    data["rsaring_us"] = json.loads(sh([f"{BIN}/rsaring", "--key", key, "--rounds", "3" if QUICK else "5",
                                       "--secs", "0.3"]).strip())
    data["rsaring_ir"] = {}
    for which in ("rsa", "ring"):
        f = os.path.join(d, "rsaring.out")
        sh(["valgrind", "--tool=callgrind", "--log-file=/dev/null", "--collect-atstart=no",
            "--toggle-collect=*ir_region*", f"--callgrind-out-file={f}", f"{BIN}/rsaring", "--key", key,
            "--ir", which, "--n", "3"])
        data["rsaring_ir"][which] = cgincl.load(f)[0] / 4
    # RSA key size: the private-key operation at 2048, 3072 and 4096 bits (keys from openssl genpkey).
    data["keysize"] = {}
    for bits in (2048, 3072, 4096):
        kf = os.path.join(KEYS, f"rsa{bits}.pem")
        if not os.path.exists(kf):
            sh(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}", "-out", kf])
            os.chmod(kf, 0o600)
        us = json.loads(sh([f"{BIN}/rsaring", "--key", kf, "--rounds", "3", "--secs", "0.3"]).strip())
        f = os.path.join(d, "rsaring.out")
        sh(["valgrind", "--tool=callgrind", "--log-file=/dev/null", "--collect-atstart=no",
            "--toggle-collect=*ir_region*", f"--callgrind-out-file={f}", f"{BIN}/rsaring", "--key", kf,
            "--ir", "rsa", "--n", "1"])
        data["keysize"][bits] = {"rsa_crate_us": us["rsa_crate_us"], "ring_us": us["ring_us"],
                                 "rsa_crate_ir": cgincl.load(f)[0] / 2}
        log(f"[cpu] RSA-{bits} sign: rsa crate {us['rsa_crate_us']:.0f} µs, ring {us['ring_us']:.0f} µs")
    save("cpu", data)


# ---------------------------------------------------------------- memory

def mem():
    sizes = [int(float(x) * (1 << 20)) for x in E.get("MEM_MB", "100 1024").split()]
    tl = os.path.join(OUT, "mem-time.log")
    data = {"runs": []}
    for size in sizes:
        for name, port, suites in [("plain relay", "BP_MEM_PLAIN", None), (X25519, "BP_MEM", X25519),
                                   (RSABF, "BP_MEM", RSABF)]:
            open(tl, "w").close()
            res = relay_once(size, P[port], suites)
            t = time.time()
            while not open(tl).read().strip() and time.time() - t < 10:
                time.sleep(0.05)
            maxrss, el, user, sys_ = open(tl).read().strip().splitlines()[-1].split(",")[:4]
            run = {"case": name, "size": size, "blackpony_maxrss_kb": int(maxrss),
                   "blackpony_secs": float(el), "blackpony_cpu": float(user) + float(sys_),
                   "mailer_maxrss_kb": res["mailer_maxrss_kb"], "mbps": size / MB / res["secs"]}
            data["runs"].append(run)
            log(f"[mem] {name:<24} {size >> 20:>5} MiB: blackpony peak RSS {int(maxrss) / 1024:.2f} MiB, "
                f"mailer {res['mailer_maxrss_kb'] / 1024:.2f} MiB")
    save("mem", data)


if __name__ == "__main__":
    part = sys.argv[1]
    if part == "report":
        import report
        report.main(RES)
    else:
        globals()[part]()
