"""500 connections at once through blackpony (issue 16), for the Postfix
end-to-end run: under xinetd (a process per connection) and under
`blackpony --listen` (a thread per connection), each in front of a real
Postfix smtpd.

Every client connects, waits for the greeting, sends EHLO, MAIL, RCPT, DATA
and its message with a unique marker, and then waits: only when all of them
are in DATA at the same time (or have failed) does any send the final dot.
So the N sessions are really concurrent, and the memory is measured then.
Afterwards every marker must be in the Maildir exactly once, and every
client must have had 250 for its message; a 4xx anywhere is counted apart
(the client would retry: no loss), anything else is a failure.

Plain SMTP through blackpony: the client does not ask for encryption (a
Python client cannot do the handshake), so this measures the connection and
relay cost, not the handshake's (docs/PERFORMANCE.md has that).
"""

import os
import re
import resource
import socket
import threading
import time

READY_TIMEOUT = 180.0  # all N in DATA by then, or the run goes on without the rest
IO_TIMEOUT = 120.0


def raise_fd_limit(want):
    """This process holds N sockets: lift its soft limit (up to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Client:
    """One SMTP session that stops before the final dot until told to go on."""

    def __init__(self, server, marker, rcpt, gate):
        self.server, self.marker, self.rcpt, self.gate = server, marker, rcpt, gate
        self.result = None   # "250", "4xx" or "error"
        self.detail = ""
        self.ready = False   # in DATA, waiting for the gate
        self.buf = b""

    def reply(self):
        while True:
            lines = self.buf.split(b"\n")
            for i, ln in enumerate(lines[:-1]):
                if len(ln) >= 4 and ln[3:4] != b"-":
                    raw = b"\n".join(lines[:i + 1]) + b"\n"
                    self.buf = self.buf[len(raw):]
                    return int(ln[:3]) if ln[:3].isdigit() else 0, raw.decode("utf-8", "replace").strip()
            got = self.s.recv(4096)
            if not got:
                raise ConnectionError("closed by the server (after %r)" % self.buf[-200:])
            self.buf += got

    def step(self, line, want):
        if line is not None:
            self.s.sendall(line.encode() + b"\r\n")
        code, text = self.reply()
        if code != want:
            raise Reply(code, "%s -> %s" % (line or "greeting", text))

    def run(self):
        try:
            with self.gate.connecting:  # at most so many connecting at a time
                self.s = socket.create_connection(self.server, timeout=IO_TIMEOUT)
                self.step(None, 220)
            self.step("EHLO load.e2e.test", 250)
            self.step("MAIL FROM:<load@outside.example>", 250)
            self.step("RCPT TO:<%s>" % self.rcpt, 250)
            self.step("DATA", 354)
            self.s.sendall(("Subject: load %s\r\nFrom: <load@outside.example>\r\nTo: <%s>\r\n\r\n"
                            "Marker: %s\r\n" % (self.marker, self.rcpt, self.marker)).encode())
            self.ready = True
            self.gate.arrive()
            if not self.gate.go.wait(READY_TIMEOUT + IO_TIMEOUT):
                raise TimeoutError("never told to send the dot")
            self.step(".", 250)
            self.result = "250"
            try:
                self.step("QUIT", 221)
            except Exception:
                pass  # the message is accepted; QUIT's reply does not matter
        except Reply as e:
            self.result = "4xx" if 400 <= e.code < 500 else "error"
            self.detail = e.text
        except Exception as e:  # timeouts, resets: neither accepted nor deferred
            self.result = "error"
            self.detail = "%s: %s" % (type(e).__name__, e)
        finally:
            if not self.ready:
                self.gate.arrive()
            try:
                self.s.close()
            except Exception:
                pass


class Reply(Exception):
    def __init__(self, code, text):
        super().__init__(text)
        self.code, self.text = code, text


class Gate:
    """Counts clients that are in DATA (or gave up); opens when all are."""

    def __init__(self, n, connecting):
        self.n, self.count = n, 0
        self.cond = threading.Condition()
        self.go = threading.Event()
        self.connecting = threading.Semaphore(connecting)

    def arrive(self):
        with self.cond:
            self.count += 1
            self.cond.notify_all()

    def wait_all(self, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: self.count >= self.n, timeout)


def proc_kb(pid, field, path="status"):
    """A kB value from /proc/PID/status (VmRSS) or smaps_rollup (Pss); None if gone."""
    try:
        with open("/proc/%d/%s" % (pid, path)) as f:
            for ln in f:
                if ln.startswith(field + ":"):
                    return int(ln.split()[1])
    except (OSError, ValueError):
        return None
    return None


def children(pid):
    """The processes whose parent is PID (xinetd's blackpony sessions)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
                if int(st.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def run_load(server, n, rcpt, tag, measure, connecting=64):
    """N clients at once against SERVER. MEASURE() is called while all are in
    DATA and returns a dict of memory figures. Returns a summary dict."""
    raise_fd_limit(n + 256)
    threading.stack_size(256 * 1024)
    gate = Gate(n, connecting)
    stamp = "%x" % int(time.time() * 1000)
    clients = [Client(server, "load-%s-%s-%04d" % (tag, stamp, i), rcpt, gate) for i in range(n)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    t0 = time.time()
    for t in threads:
        t.start()
    gate.wait_all(READY_TIMEOUT)
    concurrent = sum(c.ready for c in clients)
    t_ready = time.time() - t0
    mem = measure() if concurrent else {}
    gate.go.set()
    for t in threads:
        t.join(IO_TIMEOUT + 10)
    elapsed = time.time() - t0
    by = {"250": [], "4xx": [], "error": [], None: []}
    for c in clients:
        by[c.result].append(c)
    return {
        "clients": clients, "concurrent": concurrent, "ready_s": t_ready, "elapsed_s": elapsed,
        "ok": by["250"], "tempfail": by["4xx"], "errors": by["error"] + by[None], "mem": mem,
    }


def count_markers(maildir, prefix):
    """marker -> how many files in MAILDIR (new/) hold it, for markers with PREFIX."""
    counts = {}
    d = os.path.join(maildir, "new")
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return counts
    pat = re.compile(rb"^Marker: (%s\S+)\r?$" % re.escape(prefix.encode()), re.M)
    for name in names:
        try:
            with open(os.path.join(d, name), "rb") as f:
                for m in pat.finditer(f.read()):
                    k = m.group(1).decode()
                    counts[k] = counts.get(k, 0) + 1
        except FileNotFoundError:
            pass
    return counts


def check_delivery(run, res, maildir, what, timeout=120.0):
    """Wait for the accepted markers in MAILDIR; report lost and duplicated ones."""
    prefix = res["clients"][0].marker.rsplit("-", 1)[0] + "-"
    want = {c.marker for c in res["ok"]}
    end = time.time() + timeout
    while True:
        counts = count_markers(maildir, prefix)
        if want <= set(counts) or time.time() > end:
            break
        time.sleep(0.5)
    time.sleep(1.0)  # a duplicate would come right after
    counts = count_markers(maildir, prefix)
    lost = sorted(m for m in want if m not in counts)
    dup = sorted(m for m, k in counts.items() if k > 1)
    deferred_but_stored = sorted(c.marker for c in res["tempfail"] if c.marker in counts)
    never_sent = sorted(m for m in counts if m not in want and m not in deferred_but_stored)
    n = len(res["clients"])
    once = sum(1 for m in want if counts.get(m) == 1)
    run.report(not lost, "%s: every message that got 250 is in the Maildir (%d of %d)" % (what, len(want) - len(lost), len(want)),
               "lost: %s" % lost[:5])
    run.report(not dup, "%s: no message delivered twice" % what, "duplicated: %s" % dup[:5])
    run.report(not never_sent, "%s: nothing delivered that was not accepted with 250" % what,
               "delivered without a 250 (and without a 4xx): %s" % never_sent[:5])
    if deferred_but_stored:
        run.info("%s: %d message(s) deferred with 4xx yet stored (a retry would duplicate them)"
                 % (what, len(deferred_but_stored)))
    return once, n


def describe_errors(res, k=5):
    seen = {}
    for c in res["errors"] + res["tempfail"]:
        seen.setdefault(re.sub(r"\d+", "N", c.detail)[:160], c.detail)
    return "; ".join(list(seen.values())[:k])


def load_group(run, tag, n, paths, maildir, rcpt):
    """For each (label, server, measure) in PATHS: N clients at once, then
    the checks. RUN is the run.py module (report, info, Test). Returns one
    summary line per path for the "load:" line."""
    lines = []
    for label, server, measure in paths:
        with run.Test("%s %d connections at once through %s" % (tag, n, label)):
            res = run_load(server, n, rcpt, label.split()[0].strip("-"), measure)
            run.info("%s: %d of %d in DATA at once after %.1f s; %d x 250, %d x 4xx, %d other, %.1f s in all"
                     % (label, res["concurrent"], n, res["ready_s"], len(res["ok"]), len(res["tempfail"]),
                        len(res["errors"]), res["elapsed_s"]))
            run.report(res["concurrent"] == n, "%s %s: all %d sessions open and in DATA at the same time" % (tag, label, n),
                       "%d were; first failures: %s" % (res["concurrent"], describe_errors(res)))
            run.report(not res["errors"], "%s %s: every client got 250 or a 4xx (none cut, timed out or 5xx)" % (tag, label),
                       "%d other: %s" % (len(res["errors"]), describe_errors(res)))
            run.report(not res["tempfail"], "%s %s: no 4xx (the limits admit %d)" % (tag, label, n),
                       "%d x 4xx (no loss: the client retries): %s" % (len(res["tempfail"]), describe_errors(res)))
            once, _ = check_delivery(run, res, maildir, "%s %s" % (tag, label))
            mem = res["mem"]
            for k in sorted(mem):
                run.info("%s: %s = %s" % (label, k, mem[k]))
            run.report(bool(mem.get("summary")), "%s %s: memory measured while all were open" % (tag, label),
                       "measurement: %r" % mem)
            lines.append("%s %d/%d delivered once, %d 4xx, %s, %.1f s"
                         % (label, once, n, len(res["tempfail"]), mem.get("summary", "memory not measured"),
                            res["elapsed_s"]))
    return lines


def xinetd_measure(xinetd_pid, n):
    """Sum and mean of RSS and PSS over xinetd's children (one blackpony each)."""
    def measure():
        pids = children(xinetd_pid)
        rss = [proc_kb(p, "VmRSS") for p in pids]
        pss = [proc_kb(p, "Pss", "smaps_rollup") for p in pids]
        rss = [r for r in rss if r is not None]
        pss = [p for p in pss if p is not None]
        if not rss:
            return {"processes": 0}
        out = {"processes": len(rss), "rss_sum_kB": sum(rss), "rss_per_process_kB": sum(rss) // len(rss)}
        summary = "%.2f MB RSS" % (sum(rss) / len(rss) / 1000)
        if pss:
            out.update(pss_sum_kB=sum(pss), pss_per_process_kB=sum(pss) // len(pss))
            summary += " / %.2f MB PSS" % (sum(pss) / len(pss) / 1000)
        out["summary"] = summary + " per connection (%d processes)" % len(rss)
        return out
    return measure


def listen_measure(pid, n, idle_kb):
    """(RSS now - RSS idle) / N for the one --listen process, and its threads."""
    def measure():
        rss = proc_kb(pid, "VmRSS")
        threads = proc_kb(pid, "Threads")
        if rss is None or idle_kb is None:
            return {"rss_kB": rss, "idle_kB": idle_kb}
        per = (rss - idle_kb) / n
        return {"rss_idle_kB": idle_kb, "rss_loaded_kB": rss, "threads": threads,
                "per_connection_kB": round(per, 1),
                "summary": "%.0f kB RSS per connection (%.1f MB idle, %.1f MB with %d open, %s threads)"
                           % (per, idle_kb / 1000, rss / 1000, n, threads)}
    return measure
