#!/usr/bin/python3
"""Markdown tables (with ratios and target verdicts) from $OUT/results/*.json.

usage: report.py RESULTS_DIR     (bench.py report calls it)
"""
import json
import os
import sys

X = "NOISE-25519-CHACHAPOLY-SHA256"  # the default suite (handshake v2)
R = "RSA-BLOWFISH"


def load(d, part):
    p = os.path.join(d, part + ".json")
    return json.load(open(p)) if os.path.exists(p) else None


def f(x, nd=1):
    if x is None:
        return "–"
    if isinstance(x, (int,)) and not isinstance(x, bool):
        return f"{x:,}"
    return f"{x:,.{nd}f}"


def rng(s, nd=1):
    return f"{f(s['median'], nd)} ({f(s['min'], nd)}–{f(s['max'], nd)})" if s and s["median"] is not None else "–"


def verdict(ok):
    return "**met**" if ok else "**not met**"


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def machine(m):
    l = m["lscpu"]
    print("### Machine\n")
    print(table(["", ""], [
        ["CPU", f"{l.get('Model name')} — {l.get('CPU(s)')} vCPU ({l.get('Hypervisor vendor', '?')} guest), "
                f"{l.get('Thread(s) per core')} thread/core; L1d {l.get('L1d cache')}, L2 {l.get('L2 cache')}, "
                f"L3 {l.get('L3 cache')}; {l.get('vector/crypto flags')}"],
        ["memory", m["mem"]],
        ["kernel / OS", f"{m['kernel']} / Debian {m['os']}"],
        ["tools", f"{m['rustc']}; {m['openssl']}; {m['valgrind']}; {m['hyperfine']}"],
        ["tree", m["git"]],
        ["run", f"{m['date']}, load average at start {' '.join(m['loadavg_start'])}"],
        ["command", f"`{m['command']}`"],
    ]))


def record(r):
    mb, ir, cp = r["mbps"], r.get("ir_per_byte", {}), r.get("ir_memcpy_per_byte", {})
    floor_name = ["raw ctr+hmac"]
    print(f"### 1. Record layer (16 KiB records), MB/s = 10^6 B/s of payload, median (min–max) of "
          f"{r['rounds']} rounds\n")
    rows = []

    def row(name, label, floor=None, floor_ir=None):
        s = mb.get(name)
        med = s["median"] if s else None
        ratio = f"{med / floor:.2f}" if med and floor else ""
        i = ir.get(name)
        c = cp.get(name)
        iratio = f"{i / floor_ir:.2f}" if i and floor_ir else ""
        nc = f"{(i - c) / (floor_ir - cp.get(floor_name[0], 0)):.2f}" if i and floor_ir and c is not None else ""
        rows.append([label, rng(s), ratio, (f(i, 2) + (f" ({f(c, 2)})" if c else "")) if i else "–",
                     iratio, nc])
        return med

    floor_b = mb.get("raw ctr+hmac", {}).get("median")
    floor_b_ir = ir.get("raw ctr+hmac")
    row("raw bf-ctr", "Blowfish-CTR alone (raw crate)")
    row("raw hmac-sha1", "HMAC-SHA1 alone (raw crate)")
    row("raw ctr+hmac", "CTR + HMAC back to back (**floor**)", floor_b, floor_b_ir)
    seal_b = row("rsa-blowfish seal", f"{R} `Sealer::seal`", floor_b, floor_b_ir)
    open_b = row("rsa-blowfish open", f"{R} `Opener::read`", floor_b, floor_b_ir)
    row("rsa-blowfish writer", f"{R} `RecordWriter` (16 KiB writes)", floor_b)
    row("rsa-blowfish reader", f"{R} `RecordReader` (64 KiB reads)", floor_b)
    row("openssl bf-cbc", "`openssl speed -evp bf-cbc` (CBC, legacy provider)", floor_b)
    row("openssl hmac-sha1", "`openssl speed -hmac sha1`")
    floor_name[0] = "raw chacha20poly1305"
    floor_x = mb.get("raw chacha20poly1305", {}).get("median")
    floor_x_ir = ir.get("raw chacha20poly1305")
    row("raw chacha20poly1305", "ChaCha20-Poly1305 alone (raw crate, **floor**)", floor_x, floor_x_ir)
    seal_x = row("noise-chachapoly seal", f"{X} `Sealer::seal`", floor_x, floor_x_ir)
    open_x = row("noise-chachapoly open", f"{X} `Opener::read`", floor_x, floor_x_ir)
    row("noise-chachapoly writer", f"{X} `RecordWriter`", floor_x)
    row("noise-chachapoly reader", f"{X} `RecordReader`", floor_x)
    row("openssl chacha20-poly1305", "`openssl speed -evp chacha20-poly1305`", floor_x)
    print(table(["case", "MB/s", "× floor", "instructions/B (of which memcpy)", "instr × floor",
                 "instr × floor, memcpy left out"], rows))
    res = {}
    for suite, s, o, fl, fli, kseal, kopen in [(R, seal_b, open_b, floor_b, floor_b_ir, "rsa-blowfish seal",
                                                "rsa-blowfish open"),
                                               (X, seal_x, open_x, floor_x, floor_x_ir, "noise-chachapoly seal",
                                                "noise-chachapoly open")]:
        ok_t = s and o and fl and min(s, o) / fl >= 0.9
        fname = "raw ctr+hmac" if suite == R else "raw chacha20poly1305"
        nocopy = lambda k: (ir.get(k, 0) - cp.get(k, 0)) / (fli - cp.get(fname, 0)) if fli else None  # noqa: E731
        ok_i = fli and ir.get(kseal) and ir.get(kopen) and max(nocopy(kseal), nocopy(kopen)) <= 1.1
        res[suite] = {"seal": s, "open": o, "layer": min(s, o) if s and o else None,
                      "seal+open": 1 / (1 / s + 1 / o) if s and o else None}
        print(f"- Target *record layer within 10 % of its primitives* ({suite}): MB/s "
              f"{verdict(ok_t)} (seal {f(s / fl if s and fl else None, 2)}×, open {f(o / fl if o and fl else None, 2)}× "
              f"the floor); instructions {verdict(bool(ok_i))} without the one payload copy per record "
              f"(seal {f(nocopy(kseal), 3)}×, open {f(nocopy(kopen), 3)}×; with it "
              f"{f(ir.get(kseal, 0) / fli if fli else None, 3)}× and {f(ir.get(kopen, 0) / fli if fli else None, 3)}×: "
              "valgrind counts each byte `rep movsb` copies as an instruction).")
    print()
    return res


def relay(rl, layer):
    c = rl["cases"]
    print(f"### 2. Relay throughput, one {rl['size'] >> 20} MiB message, median (min–max) of {rl['rounds']} rounds\n")
    d = c["direct"]["mbps"]["median"]
    rows = []
    labels = [("direct", "blackpony-mailer → sink (direct)"),
              ("plain relay", "mailer → blackpony (no suite offered) → sink"),
              (X, f"mailer → blackpony → sink, {X}"), (R, f"mailer → blackpony → sink, {R}")]
    if rl.get("compare"):
        labels += [(k + " [compare]", l + " — **compare build**") for k, l in labels]
    for name, label in labels:
        s = c[name]
        ir = rl.get("ir", {}).get(name, {})
        rows.append([label, rng(s["mbps"]), f"{s['mbps']['median'] / d:.2f}",
                     f(s["mailer_cpu"]["median"], 2), f(s["blackpony_cpu"]["median"], 2),
                     f(s["sink_cpu"]["median"], 2),
                     f(ir.get("mailer_ir_per_byte"), 1), f(ir.get("blackpony_ir_per_byte"), 1)])
    print(table(["path", "MB/s", "× direct", "mailer CPU s", "blackpony CPU s (+inetd)", "sink CPU s",
                 "mailer instr/B", "blackpony instr/B"], rows))
    pl = c["plain relay"]["mbps"]["median"] / d
    print(f"- Target *plain relay ≥ 0.9× direct*: {pl:.2f}× — {verdict(pl >= 0.9)}.")
    for suite in (X, R):
        v = c[suite]["mbps"]["median"]
        if layer and layer.get(suite):
            l = layer[suite]
            print(f"- Target *encrypted ≥ 0.8× the record layer* ({suite}): {v:.1f} MB/s = "
                  f"{v / l['layer']:.2f}× min(seal, open) = {l['layer']:.1f} MB/s — {verdict(v / l['layer'] >= 0.8)}; "
                  f"{v / l['seal+open']:.2f}× one core sealing *and* opening ({l['seal+open']:.1f} MB/s).")
    x, r = c[X]["mbps"]["median"], c[R]["mbps"]["median"]
    print(f"- Target *{X} ≥ 4× {R}*: {x / r:.2f}× — {verdict(x / r >= 4)}.")
    if rl.get("compare"):
        cd = c["direct [compare]"]["mbps"]["median"]
        cp_ = c["plain relay [compare]"]["mbps"]["median"]
        cx, cr = c[X + " [compare]"]["mbps"]["median"], c[R + " [compare]"]["mbps"]["median"]
        print(f"- Compare build (`{rl['compare']}`): plain relay {cp_ / cd:.2f}× its direct; {X} "
              f"{cx:.1f} MB/s ({cx / x:.2f}× this build), {R} {cr:.1f} MB/s ({cr / r:.2f}×); "
              f"{X} / {R} = {cx / cr:.2f}×" + (
                  f"; {X} = {cx / layer[X]['layer']:.2f}× min(seal, open)" if layer and layer.get(X) else "") + ".")
    if rl.get("ir"):
        print(f"- Instructions per byte: callgrind, one {rl['ir_size'] >> 20} MiB message; each process's "
              f"count less its start, key load, RSA and X25519 work (blackpony's per-connection part: "
              f"{f(rl['ir'][X]['blackpony_handshake_ir'] / 1e6)} M instructions with {X}, "
              f"{f(rl['ir'][R]['blackpony_handshake_ir'] / 1e6)} M with {R}), divided by the message size. "
              "Under valgrind SHA-1 runs its portable code (no SHA-NI), so RSA-BLOWFISH counts overstate "
              "the native HMAC cost.")
    print()


def conn(cn):
    c = cn["cases"]
    print(f"### 3. Connections: one message (5291 B) per connection, {cn['n']} sequential connections per "
          f"run, one client (`bpclient`), median (min–max) of {cn['rounds']} runs\n")
    tls = next(k for k in c if "STARTTLS" in k)
    t = c[tls]["msgs_per_s"]["median"]
    rows = []
    for name, s in c.items():
        cpu = s["cpu_ms"]
        if s["backend"] == "postfix" or "Postfix" in name:
            server = cpu["pfx"]["median"] + (cpu["bp"]["median"] if "blackpony" in name else 0)
        else:
            server = cpu["bp"]["median"] + cpu["sink"]["median"]
        front = cpu["bp"]["median"] if "blackpony" in name else (
            cpu["pfx/smtpd"]["median"] if "Postfix" in name else cpu["sink"]["median"])
        rows.append([name, rng(s["msgs_per_s"]), f"{s['msgs_per_s']['median'] / t:.2f}",
                     f(front, 2), f(server, 2), rng(s["client_cpu_ms"], 2),
                     f"{s['turns']} ({s['switch_turns']})", f"{s['bytes_out']:,} + {s['bytes_in']:,}"])
    print(table(["case", "msgs/s", "× STARTTLS", "front end CPU ms/conn (blackpony+inetd / smtpd / sink)",
                 "all server CPU ms/conn", "client CPU ms/conn", "round trips (for the switch)",
                 "bytes C→S + S→C"], rows))
    for k in c:
        if "blackpony" in k and "->" in k and c[k]["suite"]:
            v = c[k]["msgs_per_s"]["median"]
            print(f"- Target *blackpony encrypted ahead of STARTTLS* ({k}): {v / t:.2f}× — {verdict(v > t)}.")
    bpk = next(k for k in c if c[k]["suite"] == X)
    print(f"- Round trips after the first EHLO until MAIL may be sent: blackpony {c[bpk]['switch_turns']}, "
          f"STARTTLS + TLS 1.3 + second EHLO {c[tls]['switch_turns']} — "
          f"{verdict(c[bpk]['switch_turns'] < c[tls]['switch_turns'])}.")
    print()


def cpu(cp):
    print("### 4. CPU per connection\n")
    cats = ["process start + exit", "key load", "RSA private-key op", "RSA public-key op", "X25519",
            "peer key parse", "rest", "total"]
    for side, label in [("server", "`blackpony` (one inetd session, one 5291-byte message)"),
                        ("client", "`blackpony-mailer` (one delivery of the same message)")]:
        d = cp[side]
        names = list(d)
        print(f"Instructions (callgrind, millions), {label}:\n")
        rows = [[c] + [f(d[n].get(c, 0) / 1e6, 2) for n in names] for c in cats]
        print(table(["part"] + names, rows))
        for n in names:
            if d[n].get("warning"):
                print(f"- {n}: {d[n]['warning']}")
    h = cp["hyperfine"]
    print("Wall clock of a process (hyperfine -N, median (min–max) ms):\n")
    print(table(["command", "ms", "user ms", "sys ms"],
                [[f"`{k}`", f"{v['median_ms']:.2f} ({v['min_ms']:.2f}–{v['max_ms']:.2f})",
                  f"{v['user_ms']:.2f}", f"{v['system_ms']:.2f}"] for k, v in h.items()]))
    us, ir = cp["handshake_us"], cp["handshake_ir"]
    print("Handshake and its parts, in process (`handshake` bench): µs wall clock median (min–max), "
          "and instructions (callgrind):\n")
    print(table(["operation", "µs", "instructions (M)"],
                [[k, f"{v[0]:.1f} ({v[1]:.1f}–{v[2]:.1f})", f(ir.get(k, 0) / 1e6, 3)] for k, v in us.items()]))
    if cp.get("rsaring_us"):
        a, b = cp["rsaring_us"], cp["rsaring_ir"]
        print(f"- RSA-2048 PSS-SHA256 signature, same key: `rsa` crate (used by blackpony) "
              f"{a['rsa_crate_us']:.0f} µs / {b['rsa'] / 1e6:.1f} M instructions; `ring` {a['ring_us']:.0f} µs / "
              f"{b['ring'] / 1e6:.1f} M instructions ({a['rsa_crate_us'] / a['ring_us']:.1f}× faster).")
    if cp.get("keysize"):
        print("\nRSA private-key operation (PSS-SHA256 signature) by key size:\n")
        print(table(["key bits", "`rsa` crate µs", "`rsa` crate instructions (M)", "`ring` µs"],
                    [[b, f"{v['rsa_crate_us']:.0f}", f(v['rsa_crate_ir'] / 1e6, 1), f"{v['ring_us']:.0f}"]
                     for b, v in cp["keysize"].items()]))
    v2 = X.lower()
    xs, rs = ir.get(f"{v2} xx server"), ir.get(f"{R} server")
    xc, rc = ir.get(f"{v2} xx client"), ir.get(f"{R} client")
    if xs and rs:
        print(f"- {X} (XX) against {R}, instructions per handshake: server {xs / rs:.3f}×, "
              f"client {xc / rc:.3f}× (no RSA private-key operation in v2).")
    print()


def mem(mm):
    print("### 5. Memory: peak RSS of one blackpony process (inetd, `/usr/bin/time -f %M`)\n")
    rows = [[r["case"], f"{r['size'] >> 20} MiB", f"{r['blackpony_maxrss_kb'] / 1024:.2f}",
             f"{r['mailer_maxrss_kb'] / 1024:.2f}", f"{r['mbps']:.1f}"] for r in mm["runs"]]
    print(table(["case", "message", "blackpony peak RSS MiB", "mailer peak RSS MiB", "MB/s"], rows))
    peak = max(r["blackpony_maxrss_kb"] for r in mm["runs"]) / 1024
    by = {}
    for r in mm["runs"]:
        by.setdefault(r["case"], []).append(r["blackpony_maxrss_kb"])
    spread = max(max(v) - min(v) for v in by.values()) / 1024
    print(f"- Target *under 4 MB, independent of size*: largest peak {peak:.2f} MiB "
          f"({peak * 1.048576:.2f} MB), largest change between sizes {spread:.2f} MiB — "
          f"{verdict(peak * 1.048576 < 4 and spread < 0.5)}.")
    print()


def main(d):
    m = load(d, "machine")
    if m:
        machine(m)
    layer = None
    r = load(d, "record")
    if r:
        layer = record(r)
    rl = load(d, "relay")
    if rl:
        relay(rl, layer)
    cn = load(d, "conn")
    if cn:
        conn(cn)
    cp = load(d, "cpu")
    if cp:
        cpu(cp)
    mm = load(d, "mem")
    if mm:
        mem(mm)


if __name__ == "__main__":
    main(sys.argv[1])
