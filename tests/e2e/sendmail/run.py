#!/usr/bin/python3
"""End-to-end checks over real sendmail, inetd/xinetd, dnsmasq and tshark.

Run by scripts/e2e-sendmail.sh, which builds the topology and starts the
daemons (see its header). Usage: run.py main | xinetd | activate | systemd
E2E_ONLY=name,... runs only those tests of main (test_NAME) and skips the
other modes that it does not name.
Prints one PASS or FAIL line per check and exits 1 if any failed.

Environment: E2E_DIR, BLACKPONY_BIN, E2E_REPO, E2E_CTL (ctl.sh), E2E_DNS_PORT.
"""
import base64
import email.utils
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import smuggling as smuggling_checks  # noqa: E402  (tests/e2e/smuggling.py)
import pipelining as pipelining_checks  # noqa: E402  (tests/e2e/pipelining.py)

D = os.environ["E2E_DIR"]
BIN = os.environ["BLACKPONY_BIN"]
REPO = os.environ["E2E_REPO"]
CTL = os.environ.get("E2E_CTL") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "ctl.sh")

A = ("127.0.0.2", 2500)        # site A: sendmail, blackpony-mailer for remote mail
A2 = ("127.0.0.6", 2500)       # plain A': sendmail, stock esmtp mailer
B_PUBLIC = ("127.0.0.3", 25)   # site B: inetd/xinetd -> blackpony
B_BACKEND = ("127.0.0.3", 2525)  # site B: sendmail behind blackpony
B_SOURCE = "127.0.0.5"         # blackpony's --source address towards the backend
OUTSIDE = "127.0.0.9"          # an "outside" client's address
B_RSA = ("127.0.0.7", 25)      # site B again, blackpony restricted to --suites RSA-BLOWFISH
GO_AHEAD = re.compile(rb"220 2\.0\.0 Go ahead with ([A-Z0-9-]+)\r\n")
V2 = "NOISE-25519-CHACHAPOLY-SHA256"  # handshake v2: the one suite blackpony offers by default

A_KEY = os.path.join(D, "a", "host.key")          # with .x25519 (static key) and .cert beside it
B_KEY = os.path.join(D, "b", "keys", "host.key")  # b/keys: writable by B's user (renewal)
A_CERTS = os.path.join(D, "a", "state", "known_peers.certs")  # the mailer's cache of v2 certificates

B_LOG = os.path.join(D, "logs", "b-blackpony.log")
B_RSA_LOG = os.path.join(D, "logs", "b-blackpony-rsa.log")
A_LOG = os.path.join(D, "logs", "a-mailer.log")
SYSLOG = os.path.join(D, "logs", "syslog")   # only when this run provides /dev/log

failures = []
RUN_ID = "%x" % int(time.time() * 1000)
SUITE = "?"  # what two default blackponies negotiate: the first suite B offers (test 1 finds out)


def report(ok, what, detail=""):
    print("%s  %s%s" % ("PASS" if ok else "FAIL", what, ("  -- " + detail) if detail and not ok else ""), flush=True)
    if not ok:
        failures.append(what)
    return ok


def info(text):
    print("      " + text, flush=True)


class Test:
    """Times one numbered test; an exception inside is a FAIL, not a crash."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        print("--- %s" % self.name, flush=True)
        self.t = time.time()
        return self

    def __exit__(self, kind, value, tb):
        if kind is not None and not issubclass(kind, Exception):
            return False  # SIGTERM or ^C: stop here (the finally blocks stop captures, restart daemons)
        if kind is not None:
            report(False, "%s: unexpected error" % self.name,
                   "".join(traceback.format_exception(kind, value, tb)[-3:]).strip())
        print("TIME  %-52s %6.2f s" % (self.name, time.time() - self.t), flush=True)
        return True


# ------------------------------------------------------------------ helpers

def ctl(*args, check=True):
    p = subprocess.run([CTL, *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError("ctl.sh %s failed: %s%s" % (" ".join(args), p.stdout, p.stderr))
    return p


def log_mark(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def log_since(path, mark):
    try:
        with open(path, "rb") as f:
            f.seek(mark)
            return f.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return []


def wait_lines(path, mark, pattern, count=1, timeout=10.0):
    """Lines after `mark` matching `pattern`; waits until there are `count`
    (blackpony writes its session line when the connection has ended, which
    can be a moment after the sender got its reply)."""
    rx = re.compile(pattern)
    deadline = time.time() + timeout
    while True:
        lines = [l for l in log_since(path, mark) if rx.search(l)]
        if len(lines) >= count or time.time() > deadline:
            return lines
        time.sleep(0.05)


def field(line, name):
    m = re.search(r"\b%s=(\S+)" % re.escape(name), line)
    return m.group(1) if m else None


def message(tag, sender, rcpt, subject, body, headers=()):
    """A message as bytes with CRLF line ends; `body` is bytes with CRLF."""
    head = [
        "From: <%s>" % sender,
        "To: <%s>" % rcpt,
        "Subject: %s" % subject,
        "Date: %s" % email.utils.formatdate(),
        "Message-ID: <%s.%s@e2e.test>" % (tag, RUN_ID),
        "MIME-Version: 1.0",
        *headers,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def send(server, sender, rcpts, msg, mail_options=(), source="127.0.0.1"):
    with smtplib.SMTP(server[0], server[1], local_hostname="client.e2e.test",
                      source_address=(source, 0), timeout=120) as s:
        refused = s.sendmail(sender, rcpts, msg, mail_options=list(mail_options))
    return refused


def find_delivered(site, tag, timeout=10.0, user=None):
    """The file the local mailer of `site` wrote for the message `tag` (to `user`)."""
    want = ("Message-ID: <%s.%s@e2e.test>" % (tag, RUN_ID)).encode()
    out = os.path.join(D, site, "out")
    deadline = time.time() + timeout
    while True:
        for name in sorted(os.listdir(out)):
            if name.endswith(".tmp") or (user and not name.endswith(".%s.eml" % user)):
                continue
            data = open(os.path.join(out, name), "rb").read()
            head = data.split(b"\n\n", 1)[0]
            if want in head.split(b"\n"):
                return data
        if time.time() > deadline:
            return None
        time.sleep(0.05)


def body_of_sent(msg):
    return msg.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]


def body_of_delivered(data):
    return data.split(b"\n\n", 1)[1]


def check_delivered(site, tag, msg, what, user=None):
    data = find_delivered(site, tag, user=user)
    if data is None:
        return report(False, what, "no file in %s/%s/out has this Message-ID" % (D, site))
    got, want = body_of_delivered(data), body_of_sent(msg)
    if got == want:
        return report(True, what + " (%d bytes of body, identical)" % len(want))
    i = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), min(len(got), len(want)))
    return report(False, what, "body differs at byte %d of %d/%d: sent %r, delivered %r"
                  % (i, len(want), len(got), want[max(0, i - 40):i + 40], got[max(0, i - 40):i + 40]))


def mailq(site):
    return ctl("mailq", site, check=False).stdout


def queue_files(site):
    return [f for f in os.listdir(os.path.join(D, site, "queue")) if f.startswith("qf")]


class Capture:
    """tshark on lo, started before the traffic and stopped after it."""

    def __init__(self, name, bpf):
        self.path = os.path.join(D, "cap", name + ".pcapng")
        self.err = open(os.path.join(D, "cap", name + ".tshark.err"), "w+")
        self.p = subprocess.Popen(["tshark", "-i", "lo", "-f", bpf, "-w", self.path, "-q"],
                                  stdout=subprocess.DEVNULL, stderr=self.err, start_new_session=True)
        try:
            deadline = time.time() + 20
            while True:
                self.err.seek(0)
                if "Capturing on" in self.err.read():
                    break
                if self.p.poll() is not None or time.time() > deadline:
                    self.err.seek(0)
                    raise RuntimeError("tshark did not start: " + self.err.read())
                time.sleep(0.05)
            time.sleep(0.3)  # "Capturing on" is printed just before the filter is live
        except BaseException:
            self.stop()
            raise

    def stop(self):
        if self.p.poll() is None:
            time.sleep(0.3)  # let the last segments reach the capture
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def streams(self):
        """TCP payloads per stream in capture order:
        {(stream, server address): [(source port, bytes)]}."""
        out = subprocess.run(["tshark", "-r", self.path, "-T", "fields", "-e", "tcp.stream", "-e", "ip.dst",
                              "-e", "tcp.dstport", "-e", "tcp.srcport", "-e", "tcp.payload"],
                             capture_output=True, text=True, check=True).stdout
        streams, servers = {}, {}
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) < 5:
                continue
            n = int(parts[0])
            if parts[2] == "25":
                servers.setdefault(n, parts[1])
            if parts[4]:
                streams.setdefault(n, []).append((int(parts[3]), bytes.fromhex(parts[4].replace(":", ""))))
        return {(n, servers.get(n, "?")): chunks for n, chunks in streams.items()}


# ------------------------------------------------------------------ messages

def msg_dots(sender, rcpt, tag="dots"):
    body = (b"Dot-stuffing, both ways.\r\n"
            b".leading dot\r\n"
            b"..two leading dots\r\n"
            b".\r\n"
            b"...\r\n"
            b" .\r\n"
            b". trailing text\r\n"
            b"From the start of a line\r\n"
            b"\r\n"
            b".\r\n"
            b"last line\r\n")
    return message(tag, sender, rcpt, "e2e dot-stuffing", body)


def msg_utf8(sender, rcpt):
    text = ("8-bit UTF-8 text: Gr\u00fc\u00dfe, na\u00efve caf\u00e9, \u00a9 \u20ac\r\n"
            "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \u2603 \U0001F40E\r\n"
            "\u0645\u0631\u062d\u0628\u0627  \u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439\u0442\u0435\r\n"
            "bytes 0x80-0xff as text: " + "".join(chr(c) for c in range(0xa0, 0x100)) + "\r\n")
    return message("utf8", sender, rcpt, "e2e 8-bit", text.encode("utf-8"),
                   ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"])


def msg_long(sender, rcpt, tag="long"):
    line = "".join("0123456789"[i % 10] for i in range(990)).encode()
    body = b"A line of exactly 990 characters follows.\r\n" + line + b"\r\n" + b"y" * 989 + b"\r\nend\r\n"
    return message(tag, sender, rcpt, "e2e 990-character line", body)


def msg_attachment(sender, rcpt, size=3 * 1024 * 1024):
    raw = os.urandom(size * 3 // 4)
    b64 = base64.encodebytes(raw).replace(b"\n", b"\r\n")  # 76-character lines
    body = (b"--e2e-boundary\r\n"
            b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            b"A 3 MB base64 attachment follows.\r\n"
            b"--e2e-boundary\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"random.bin\"\r\n\r\n"
            + b64 +
            b"--e2e-boundary--\r\n")
    return message("attach", sender, rcpt, "e2e 3 MB attachment", body,
                   ["Content-Type: multipart/mixed; boundary=\"e2e-boundary\""])


def msg_canary(tag, sender, rcpt, canary):
    lines = [("%s line %03d: the quick brown fox jumps over the lazy dog" % (canary, i)).encode()
             for i in range(200)]
    return message(tag, sender, rcpt, "%s subject" % canary, b"\r\n".join(lines) + b"\r\n")


# ------------------------------------------------------------------ tests

def test_m4():
    with Test("0 sendmail/blackpony.m4 as MAILER(blackpony)"):
        first = os.path.join(D, "logs", "m4-a.first.err")
        if os.path.exists(first):
            report(False, "[0] m4 builds site A's cf with MAILER(blackpony) without complaints",
                   "m4 said: " + open(first).read().strip().replace("\n", " | ")
                   + " (the macros in the file's comment block are expanded: sendmail's cf.m4 turns"
                   " m4 comments off; the run went on with the comment block stripped)")
        else:
            report(True, "[0] m4 builds site A's cf with MAILER(blackpony) without complaints")
        cf = open(os.path.join(D, "a", "a.cf")).read()
        m = re.search(r"^Mblackpony,.*?A=([^\n]*)", cf, re.S | re.M)
        report(m is not None and m.group(1).startswith("blackpony-mailer ") and m.group(1).endswith("$h"),
               "[0] site A has the blackpony mailer with A=blackpony-mailer ... $h",
               m.group(0) if m else "no Mblackpony line")
        mt = [l for l in cf.splitlines() if l.startswith("Kmailertable")]
        report(len(mt) == 1 and D in mt[0], "[0] site A has exactly one mailertable map, the private one", repr(mt))
        users = {n: open(os.path.join(D, "run", n + ".user")).read().strip() for n in ("mailer", "inbound", "xinetd")}
        info("blackpony-mailer runs as %(mailer)s (U= of the mailer, else sendmail's DefaultUser; Debian: mail:mail),"
             " blackpony as %(inbound)s (inetd.conf.sample) and %(xinetd)s (xinetd.d/blackpony)" % users)
        report(len(set(users.values())) == 1,
               "[0] one user can read the one host key: the mailer, inetd and xinetd all run as %s" % users["inbound"],
               "blackpony-mailer runs as %(mailer)s but blackpony as %(inbound)s / %(xinetd)s: with the README's"
               " single /etc/blackpony/host.key (mode 0600, chown nobody) one side cannot read it and defers or"
               " stops offering encryption; give the mailer definition U=%(inbound)s (or use one dedicated user"
               " everywhere). This run gives each side its own key, owned by its user." % users)


def ehlo_offer(server, log):
    """The suites blackpony at `server` offers in its EHLO reply. Returns
    once blackpony has logged this probe's session line in `log`, so that it
    cannot turn up later among the lines of the test."""
    mark = log_mark(log)
    with smtplib.SMTP(server[0], server[1], local_hostname="probe.e2e.test", timeout=30) as s:
        s.ehlo()
        offer = s.esmtp_features.get("xblackpony", "").split()
        port = s.sock.getsockname()[1]
    wait_lines(log, mark, r"\bsession client=[0-9.]+:%d " % port)
    return offer


def test_a_to_b():
    global SUITE
    with Test("1 A -> B, blackpony on both sides, byte for byte"):
        offer, offer_rsa = ehlo_offer(B_PUBLIC, B_LOG), ehlo_offer(B_RSA, B_RSA_LOG)
        info("B offers XBLACKPONY %s on 127.0.0.3:25, %s on 127.0.0.7:25 (--suites RSA-BLOWFISH)"
             % (" ".join(offer), " ".join(offer_rsa)))
        report(offer == [V2] and offer_rsa == ["RSA-BLOWFISH"],
               "[1] B offers only %s by default and only RSA-BLOWFISH with --suites RSA-BLOWFISH" % V2,
               "%r / %r" % (offer, offer_rsa))
        SUITE = offer[0] if offer else "?"
        bmark, rmark, amark = log_mark(B_LOG), log_mark(B_RSA_LOG), log_mark(A_LOG)
        msgs = {
            "dots": (msg_dots, "dot-stuffing"),
            "utf8": (msg_utf8, "8-bit UTF-8 text (BODY=8BITMIME)"),
            "long": (msg_long, "a 990-character line"),
            "attach": (msg_attachment, "a 3 MB base64 attachment"),
        }
        rcpts = ["bob@site-b.test", "carol@rsa.site-b.test"]
        sent = {}
        t = time.time()
        for tag, (make, what) in msgs.items():
            msg = make("alice@site-a.test", "bob@site-b.test")
            opts = ["BODY=8BITMIME"] if tag == "utf8" else []
            refused = send(A, "alice@site-a.test", rcpts, msg, opts)
            report(not refused, "[1] site A accepted for %s: %s" % (" and ".join(rcpts), what), repr(refused))
            sent[tag] = msg
        info("4 messages, 2 deliveries each, through A -> blackpony-mailer -> inetd/blackpony -> B in %.2f s"
             % (time.time() - t))
        for tag, (make, what) in msgs.items():
            check_delivered("b", tag, sent[tag], "[1] in bob's mailbox (%s) byte for byte: %s" % (SUITE, what),
                            user="bob")
            check_delivered("b", tag, sent[tag], "[1] in carol's mailbox (RSA-BLOWFISH) byte for byte: %s" % what,
                            user="carol")
        fp_a = open(os.path.join(D, "a", "fingerprint")).read().split()[0]
        fp_b = open(os.path.join(D, "b", "fingerprint")).read().split()[0]
        for log, mark, suite, where in ((B_LOG, bmark, SUITE, "127.0.0.3:25"),
                                        (B_RSA_LOG, rmark, "RSA-BLOWFISH", "127.0.0.7:25")):
            sessions = wait_lines(log, mark, r"\bsession client=", count=len(msgs))
            report(len(sessions) == len(msgs) and all(field(l, "suite") == suite and field(l, "end") == "quit"
                                                      for l in sessions),
                   "[1] B's inbound log (%s): %d sessions, all suite=%s end=quit" % (where, len(sessions), suite),
                   "\n".join(sessions))
            report(sessions and all(field(l, "peer") == fp_a for l in sessions),
                   "[1] B's inbound log (%s) names A's key as the peer" % where, "\n".join(sessions))
            if sessions:
                info("B: " + sessions[-1].split(": ", 1)[-1])
        deliveries = wait_lines(A_LOG, amark, r"\bdelivery dest=", count=2 * len(msgs))
        for dest, mx, suite in (("site-b.test", "mx.site-b.test[127.0.0.3:25]", SUITE),
                                ("rsa.site-b.test", "mx-rsa.site-b.test[127.0.0.7:25]", "RSA-BLOWFISH")):
            mine = [l for l in deliveries if field(l, "dest") == dest]
            report(len(mine) == len(msgs) and all(field(l, "suite") == suite and field(l, "verdict") == "ok"
                                                  and field(l, "mx") == mx and field(l, "peer") == fp_b for l in mine),
                   "[1] A's mailer log: %d deliveries dest=%s mx=%s suite=%s peer=B's key verdict=ok"
                   % (len(mine), dest, mx, suite), "\n".join(mine))
            if mine:
                info("A: " + mine[-1].split(": ", 1)[-1])
        # As an administrator would: as root.
        peers = subprocess.run([os.path.join(BIN, "blackpony-mailer"), "--known-peers",
                                os.path.join(D, "a", "state", "known_peers"), "--list-peers"],
                               capture_output=True, text=True)
        rows = {r[0]: r[1:] for r in (l.split() for l in peers.stdout.splitlines()) if len(r) >= 3}
        for host, suite in (("mx.site-b.test", SUITE), ("mx-rsa.site-b.test", "RSA-BLOWFISH")):
            report(peers.returncode == 0 and rows.get(host, [None, None])[:2] == [fp_b, suite],
                   "[1] A's known_peers pins %s to B's key %s (%s)" % (host, fp_b, suite),
                   "--list-peers: %r %r" % (peers.stdout, peers.stderr))
        report(not queue_files("a"), "[1] site A's queue is empty", mailq("a"))


def after_handshake(chunks):
    """Split one TCP stream's payload (both directions, capture order) at the
    server's `220 2.0.0 Go ahead with <suite>` line: (plain part, suite,
    encrypted part), or (everything, None, None) if there is none."""
    plain = b""
    for i, (port, data) in enumerate(chunks):
        m = GO_AHEAD.search(data) if port == 25 else None
        if m:
            return (plain + data[:m.end()], m.group(1).decode(),
                    data[m.end():] + b"".join(d for _, d in chunks[i + 1:]))
        plain += data
    return plain, None, None


def identity_bytes(key):
    """Byte strings that name the host of the RSA key at `key`: its SPKI (DER),
    32 bytes from the middle of its modulus (found however the key is
    framed), and its v2 certificate (whole, and the last 32 bytes of its
    signature). Handshake v2 carries them encrypted only."""
    spki = subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"],
                          capture_output=True, check=True).stdout
    mod = subprocess.run(["openssl", "rsa", "-in", key, "-noout", "-modulus"],
                         capture_output=True, text=True, check=True).stdout
    n = bytes.fromhex(mod.strip().split("=", 1)[1])
    cert = base64.b64decode(open(key + ".cert").read().split()[1])
    return {"RSA SPKI": spki, "RSA modulus": n[len(n) // 2 - 16:len(n) // 2 + 16],
            "certificate": cert, "certificate signature": cert[-32:]}


def clear_views(chunks):
    """What a passive tap reads in one TCP stream: each direction's bytes
    joined, and the base64 arguments of its XBLACKPONY command lines decoded."""
    c2s = b"".join(d for p, d in chunks if p != 25)
    s2c = b"".join(d for p, d in chunks if p == 25)
    views = [c2s, s2c]
    for line in c2s.split(b"\r\n"):
        if line.startswith(b"XBLACKPONY "):
            for word in line.split()[1:]:
                try:
                    views.append(base64.b64decode(word, validate=True))
                except ValueError:
                    pass
    return views


def identities_in_clear(chunks):
    """Which of A's and B's identity bytes appear in clear in a stream."""
    ids = {"A": identity_bytes(A_KEY), "B": identity_bytes(B_KEY)}
    views = clear_views(chunks)
    return ["%s's %s" % (host, what) for host, d in sorted(ids.items()) for what, b in d.items()
            if any(b in v for v in views)]


def xblackpony_commands(chunks):
    """The XBLACKPONY command lines the client sent in a stream: [(suite, pattern)]
    (pattern XX or IK for handshake v2, "" otherwise)."""
    out = []
    for line in b"".join(d for p, d in chunks if p != 25).split(b"\r\n"):
        if line.startswith(b"XBLACKPONY "):
            words = line.decode("ascii", "replace").split()
            out.append((words[1] if len(words) > 1 else "", words[2] if len(words) > 3 else ""))
    return out


def test_capture():
    with Test("2 the wire between A and B is encrypted (tshark)"):
        canary = "CANARY-%s-PLAINTEXT" % RUN_ID
        cap = Capture("a-to-b", "port 25 and (host 127.0.0.3 or host 127.0.0.7)")
        try:
            msg = msg_canary("canary", "alice@site-a.test", "bob@site-b.test", canary)
            refused = send(A, "alice@site-a.test", ["bob@site-b.test", "carol@rsa.site-b.test"], msg)
            delivered = [find_delivered("b", "canary", user=u) for u in ("bob", "carol")]
        finally:
            cap.stop()
        report(not refused and all(d is not None and canary.encode() in d for d in delivered),
               "[2] the canary message reached bob's and carol's mailboxes")
        streams = cap.streams()
        servers = sorted(srv for _, srv in streams)
        report(servers == ["127.0.0.3", "127.0.0.7"],
               "[2] tshark captured one connection to each of 127.0.0.3:25 and 127.0.0.7:25",
               "%r, see %s" % (servers, cap.path))
        secrets = [canary.encode(), b"bob@site-b.test", b"carol@rsa.site-b.test", b"alice@site-a.test",
                   b"quick brown fox", b"MAIL FROM", b"RCPT TO", b"site-a.test", b"site-b.test", b"Subject:",
                   b"Message-ID", b"\r\n250 ", b"\r\n354 ", b"\r\n221 "]
        envelope = secrets[:7]
        for (n, server), chunks in sorted(streams.items()):
            want = SUITE if server == "127.0.0.3" else "RSA-BLOWFISH"
            plain, suite, enc = after_handshake(chunks)
            c2s = b"".join(d for p, d in chunks if p != 25)
            report(b"EHLO " in plain and re.search(rb"\r\n250[ -]XBLACKPONY ", plain) is not None
                   and re.search(rb"(^|\r\n)XBLACKPONY %s " % want.encode(), c2s) is not None,
                   "[2] %s:25: plain EHLO, the XBLACKPONY offer and the XBLACKPONY %s command visible in the capture"
                   % (server, want), "plain part: %r" % plain[:800])
            if not report(suite == want, "[2] %s:25: '220 2.0.0 Go ahead with %s'" % (server, want),
                          "got %r" % suite):
                continue
            seen = [s.decode() for s in secrets if s in enc]
            report(not seen and len(enc) > len(msg),
                   "[2] %s:25 (%s): nothing readable after the handshake (%d bytes: no canary text, no envelope"
                   " address, no host name, no SMTP command or reply)" % (server, suite, len(enc)),
                   "found in clear after the handshake: %s" % seen)
            seen_before = [s.decode() for s in envelope if s in plain]
            report(not seen_before, "[2] %s:25: no envelope or message text before the handshake either" % server,
                   "found: %s" % seen_before)
            named = identities_in_clear(chunks)
            if suite == V2:
                report(not named, "[2] %s:25 (%s): no RSA SPKI, modulus or certificate of A or B in clear anywhere"
                       " in the connection (commands' base64 decoded too): v2 hides both identities" % (server, suite),
                       "found in clear: %s" % named)
            else:
                # The control that shows the search finds keys when they are there.
                report("A's RSA SPKI" in named and "B's RSA SPKI" in named,
                       "[2] control: %s:25 (%s) shows both hosts' RSA SPKI in clear (ClientHello, ServerHello),"
                       " so the search above would find them" % (server, suite), "found: %s" % named)
        info("capture: %s" % cap.path)


def deliver_to_b(tag, text, what):
    """One message from A to bob@site-b.test under a capture of 127.0.0.3:25.
    Returns (delivered, [[(suite, pattern)] per connection], [chunks per
    connection], A's delivery lines)."""
    amark = log_mark(A_LOG)
    cap = Capture(tag, "host 127.0.0.3 and port 25")
    try:
        msg = message(tag, "alice@site-a.test", "bob@site-b.test", "e2e " + tag, text.encode() + b"\r\n")
        refused = send(A, "alice@site-a.test", ["bob@site-b.test"], msg)
    finally:
        cap.stop()
    ok = not refused and check_delivered("b", tag, msg, what + ": delivered byte for byte")
    streams = [chunks for _, chunks in sorted(cap.streams().items())]
    lines = wait_lines(A_LOG, amark, r"\bdelivery dest=site-b\.test")
    return ok, [xblackpony_commands(c) for c in streams], streams, lines


def encrypted_v2(lines):
    return len(lines) == 1 and field(lines[0], "suite") == V2 and field(lines[0], "verdict") == "ok"


def as_b_user(*args):
    u = open(os.path.join(D, "run", "inbound.user")).read().strip()
    user, _, group = u.partition(":")
    return subprocess.run(["runuser", "-u", user] + (["-g", group] if group else []) + ["--", *args],
                          capture_output=True, text=True)


def cached_cert(host):
    if not os.path.exists(A_CERTS):
        return None
    for line in open(A_CERTS):
        words = line.split()
        if len(words) == 2 and words[0] == host:
            return words[1]
    return None


def test_ik_and_renewal():
    with Test("9 v2: IK to a known peer; B renews its certificate, then its static key"):
        b_cert = lambda: open(B_KEY + ".cert").read().split()[1]
        report(cached_cert("mx.site-b.test") == b_cert(),
               "[9] A's known_peers.certs holds B's certificate for mx.site-b.test (from an earlier XX)",
               "cached %r, B's %r" % (cached_cert("mx.site-b.test"), b_cert()))
        # First contact again: without the cached certificate the mailer uses XX.
        os.remove(A_CERTS)
        ok, cmds, _, lines = deliver_to_b("ik-first", "first contact", "[9] cache removed")
        report(ok and cmds == [[(V2, "XX")]] and encrypted_v2(lines),
               "[9] without a cached certificate: one connection, 'XBLACKPONY %s XX', A logs suite=%s" % (V2, V2),
               "commands %r; A: %s" % (cmds, lines))
        report(cached_cert("mx.site-b.test") == b_cert(), "[9] the XX delivery cached B's certificate again",
               repr(cached_cert("mx.site-b.test")))
        ok, cmds, streams, lines = deliver_to_b("ik-second", "second delivery", "[9] second delivery")
        report(ok and cmds == [[(V2, "IK")]] and encrypted_v2(lines),
               "[9] the second delivery to the same site: 'XBLACKPONY %s IK' (1 round trip), A logs suite=%s"
               % (V2, V2), "commands %r; A: %s" % (cmds, lines))
        named = identities_in_clear(streams[0]) if streams else ["(no stream)"]
        report(not named, "[9] the IK connection shows no RSA SPKI or certificate of A or B in clear",
               "found: %s" % named)

        # Renewal that keeps the static key (what the daily timer does when due), as B's user.
        x_before, c_before = open(B_KEY + ".x25519", "rb").read(), b_cert()
        r = as_b_user(os.path.join(BIN, "blackpony"), "--renew-cert", "--force", "--key", B_KEY)
        report(r.returncode == 0 and "issued" in r.stdout and open(B_KEY + ".x25519", "rb").read() == x_before
               and b_cert() != c_before,
               "[9] blackpony --renew-cert --force as B's user: a new certificate, the same static key (%s)"
               % r.stdout.strip(), r.stdout + r.stderr)
        ok, cmds, _, lines = deliver_to_b("ik-renewed", "after renewal", "[9] after the renewal")
        report(ok and cmds == [[(V2, "IK")]] and encrypted_v2(lines),
               "[9] after the renewal: still IK (the static key is the same), A logs suite=%s" % V2,
               "commands %r; A: %s" % (cmds, lines))

        # A new static key: the cached one is stale, the client falls back to XX (never to plain).
        os.rename(B_KEY + ".x25519", B_KEY + ".x25519.old")
        r = as_b_user(os.path.join(BIN, "blackpony"), "--renew-cert", "--key", B_KEY)
        report(r.returncode == 0 and os.path.exists(B_KEY + ".x25519")
               and open(B_KEY + ".x25519", "rb").read() != x_before,
               "[9] static key moved away; blackpony --renew-cert makes a new one (%s)" % r.stdout.strip(),
               r.stdout + r.stderr)
        ok, cmds, _, lines = deliver_to_b("ik-stale", "after a new static key", "[9] after the new static key")
        report(ok and cmds in ([[(V2, "IK"), (V2, "XX")]], [[(V2, "IK")], [(V2, "XX")]]) and encrypted_v2(lines),
               "[9] stale cached key: IK refused, then XX (%s), delivered encrypted, A logs suite=%s"
               % ("same connection" if len(cmds) == 1 else "next connection", V2),
               "commands %r; A: %s" % (cmds, lines))
        report(cached_cert("mx.site-b.test") == b_cert(), "[9] the XX after the stale IK cached B's new certificate",
               repr(cached_cert("mx.site-b.test")))
        ok, cmds, _, lines = deliver_to_b("ik-again", "IK with the new key", "[9] the next delivery")
        report(ok and cmds == [[(V2, "IK")]] and encrypted_v2(lines),
               "[9] the next delivery uses IK again, with B's new static key", "commands %r; A: %s" % (cmds, lines))
        report(not queue_files("a"), "[9] site A's queue is empty", mailq("a"))


def test_rsa_unreadable():
    with Test("10 v2 never reads the RSA private key: B's, then A's too, made unreadable"):
        modes = {k: os.stat(k).st_mode & 0o7777 for k in (A_KEY, B_KEY)}
        try:
            os.chmod(B_KEY, 0)
            r = as_b_user(os.path.join(BIN, "blackpony"), "--fingerprint", "--key", B_KEY)
            report(r.returncode != 0,
                   "[10] control: B's user cannot read B's RSA key now (blackpony --fingerprint fails: %s)"
                   % (r.stdout + r.stderr).strip()[:100], r.stdout)
            bmark = log_mark(B_LOG)
            ok, cmds, streams, lines = deliver_to_b("rsa-unreadable-b", "B's RSA key unreadable",
                                                    "[10] B's RSA key mode 000")
            report(ok and cmds and all(c and all(s == V2 for s, _ in c) for c in cmds) and encrypted_v2(lines),
                   "[10] B's RSA key unreadable: A -> B still encrypted with %s (%s)"
                   % (V2, " ".join(p for c in cmds for _, p in c)), "commands %r; A: %s" % (cmds, lines))
            go = [GO_AHEAD.search(b"".join(d for p, d in c if p == 25)) for c in streams]
            report(go and all(m and m.group(1).decode() == V2 for m in go),
                   "[10] the capture shows '220 2.0.0 Go ahead with %s'" % V2, repr(go))
            blines = wait_lines(B_LOG, bmark, r"\bsession client=")
            report(len(blines) == 1 and field(blines[0], "suite") == V2 and field(blines[0], "end") == "quit"
                   and not [l for l in log_since(B_LOG, bmark) if "error" in l],
                   "[10] B's inbound log: suite=%s end=quit, no error" % V2, "\n".join(log_since(B_LOG, bmark)))

            os.chmod(A_KEY, 0)
            amark = log_mark(A_LOG)
            ok, cmds, streams, lines = deliver_to_b("rsa-unreadable-ab", "A's and B's RSA keys unreadable",
                                                    "[10] A's and B's RSA keys mode 000")
            report(ok and cmds and all(c and all(s == V2 for s, _ in c) for c in cmds) and encrypted_v2(lines),
                   "[10] A's RSA key unreadable too: A -> B still encrypted with %s" % V2,
                   "commands %r; A: %s" % (cmds, " | ".join(log_since(A_LOG, amark))[-400:]))
        finally:
            for k, m in modes.items():
                os.chmod(k, m)
        # Whatever the above left in A's queue goes now, with the keys back.
        if queue_files("a"):
            ctl("runq", "a", check=False)
        report(not queue_files("a") and find_delivered("b", "rsa-unreadable-ab", timeout=2) is not None,
               "[10] keys restored: A's queue is empty, every message delivered", mailq("a"))


def test_mixed():
    with Test("3 mixed pairs: blackpony meets plain sendmail"):
        amark = log_mark(A_LOG)
        msg = msg_dots("alice@site-a.test", "carol@plain-b.test", tag="mixed1")
        refused = send(A, "alice@site-a.test", ["carol@plain-b.test"], msg)
        report(not refused, "[3] site A accepted mail for carol@plain-b.test")
        check_delivered("p", "mixed1", msg, "[3] A (blackpony-mailer) -> plain B: delivered byte for byte")
        lines = wait_lines(A_LOG, amark, r"\bdelivery dest=plain-b\.test")
        report(len(lines) == 1 and field(lines[0], "suite") == "plain" and "mx.plain-b.test[127.0.0.4:25]" in lines[0]
               and field(lines[0], "verdict") == "ok",
               "[3] A's mailer log: dest=plain-b.test mx=mx.plain-b.test[127.0.0.4:25] suite=plain verdict=ok",
               "\n".join(lines))
        if lines:
            info("A: " + lines[-1].split(": ", 1)[-1])

        bmark = log_mark(B_LOG)
        canary = "PLAINCANARY-%s" % RUN_ID
        cap = Capture("a2-to-b", "host 127.0.0.3 and port 25")
        try:
            msg2 = msg_canary("mixed2", "dave@plain-a.test", "bob@site-b.test", canary)
            refused = send(A2, "dave@plain-a.test", ["bob@site-b.test"], msg2)
        finally:
            cap.stop()
        report(not refused, "[3] plain A' accepted mail for bob@site-b.test")
        check_delivered("b", "mixed2", msg2, "[3] plain A' (esmtp) -> B (blackpony): delivered byte for byte")
        lines = wait_lines(B_LOG, bmark, r"\bsession client=")
        report(len(lines) == 1 and field(lines[0], "suite") == "plain" and field(lines[0], "end") == "quit",
               "[3] B's inbound log: one session, suite=plain end=quit", "\n".join(lines))
        if lines:
            info("B: " + lines[-1].split(": ", 1)[-1])
        wire = b"".join(d for chunks in cap.streams().values() for _, d in chunks)
        report(canary.encode() in wire and b"bob@site-b.test" in wire and b"250 XBLACKPONY " in wire
               and not GO_AHEAD.search(wire),
               "[3] control: A' -> B is plain on the wire (canary readable in the capture; offer seen, not taken)")


def smtp_dialogue(server, source, helo, steps):
    """EHLO, then (command, args) steps; returns the EHLO reply and [(code, text)]."""
    s = smtplib.SMTP(timeout=60, source_address=(source, 0), local_hostname=helo)
    try:
        s.connect(*server)
        code, ehlo = s.ehlo(helo)
        out = []
        for cmd in steps:
            out.append(s.docmd(cmd))
        s.rset()
        s.quit()
        return code, ehlo.decode("utf-8", "replace"), [(c, t.decode("utf-8", "replace")) for c, t in out]
    finally:
        s.close()


def test_open_relay():
    with Test("4 no open relay through blackpony"):
        bmark, smark = log_mark(B_LOG), log_mark(SYSLOG)
        code, ehlo, replies = smtp_dialogue(B_PUBLIC, OUTSIDE, "outside.example", [
            "MAIL FROM:<spammer@outside.example>",
            "RCPT TO:<x@elsewhere.test>",
            "RCPT TO:<bob@site-b.test>",
        ])
        info("EHLO reply via blackpony: " + ehlo.splitlines()[0])
        report(code == 250 and "XBLACKPONY" in ehlo, "[4] an outside client (%s) gets blackpony's EHLO reply" % OUTSIDE,
               ehlo)
        report(replies[1][0] == 550 and "elaying denied" in replies[1][1],
               "[4] RCPT TO:<x@elsewhere.test> from outside through blackpony: %d %s" % replies[1],
               "expected 550 Relaying denied")
        report(replies[2][0] == 250, "[4] RCPT TO:<bob@site-b.test> (local) from outside: %d" % replies[2][0],
               replies[2][1])
        report("[%s]" % B_SOURCE in ehlo,
               "[4] sendmail sees the client as [%s] (blackpony's --source), not the real %s: "
               "sendmail has no PROXY/XCLIENT support" % (B_SOURCE, OUTSIDE), ehlo.splitlines()[0])
        lines = wait_lines(B_LOG, bmark, r"\bsession client=")
        report(len(lines) == 1 and (field(lines[0], "client") or "").startswith(OUTSIDE + ":"),
               "[4] blackpony's own log has the real client address %s" % OUTSIDE, "\n".join(lines))
        if os.path.exists(SYSLOG):
            rx = re.compile(r"ruleset=check_rcpt.*relay=\[%s\].*reject=550.*Relaying denied" % re.escape(B_SOURCE))
            hits = [l for l in wait_lines(SYSLOG, smark, r"Relaying denied") if rx.search(l)]
            report(len(hits) >= 1, "[4] B's sendmail log: the 550 for x@elsewhere.test names relay=[%s]" % B_SOURCE,
                   "\n".join(log_since(SYSLOG, smark)[-10:]))
            if hits:
                info("syslog: " + hits[0][hits[0].find("sm-mta") if "sm-mta" in hits[0] else 0:][:200])
        else:
            info("no syslog check: /dev/log belongs to another syslog daemon on this machine")
        # The same RCPT straight to the backend from 127.0.0.1: sendmail lets
        # 127.0.0.1 relay, so a bare loopback hop would be an open relay and
        # the 550 above is the --source address's doing.
        code, ehlo, replies = smtp_dialogue(B_BACKEND, "127.0.0.1", "loopback.example", [
            "MAIL FROM:<spammer@outside.example>",
            "RCPT TO:<x@elsewhere.test>",
        ])
        report(replies[1][0] == 250,
               "[4] control: the same RCPT straight to the backend from 127.0.0.1 gets %d (would relay)"
               % replies[1][0], replies[1][1])





def count_out(user, tok):
    """Messages for USER at site B (the local mailer's files) containing TOK."""
    out = os.path.join(D, "b", "out")
    n = 0
    for name in os.listdir(out):
        if name.endswith(".%s.eml" % user):
            with open(os.path.join(out, name), "rb") as f:
                n += tok.encode() in f.read()
    return n


def test_smuggling():
    # Site B's sendmail straight (127.0.0.3:2525, which takes mail from
    # 127.0.0.1) and through inetd/blackpony (127.0.0.3:25): any local user of
    # site-b.test is delivered into b/out by the local mailer.
    smuggling_checks.smuggling_group(sys.modules[__name__], "[8]", "8 SMTP smuggling: no smuggled command executed through blackpony at defaults, the same or safer than sendmail alone",
                    [("sendmail", B_BACKEND), ("blackpony", B_PUBLIC)],
                    ("victim1@site-b.test", "victim2@site-b.test"),
                    lambda box, tok: count_out("victim%d" % box, tok))


def test_pipelining():
    # The same bytes to site B's sendmail straight and through blackpony. Any
    # local user of site-b.test is delivered into b/out; site.mc makes B's
    # sendmail pause its greeting 1 s for client 127.0.0.8 (greet_pause).
    pipelining_checks.pipelining_group(
        sys.modules[__name__], "[12]", "12 RFC 2920 synchronization: through blackpony the same or safer than sendmail alone",
        [("sendmail", B_BACKEND), ("blackpony", B_PUBLIC)], ("victim1@site-b.test", "victim2@site-b.test"),
        lambda tok: count_out("victim1", tok) + count_out("victim2", tok), "sendmail",
        pause="127.0.0.8")


def test_deferred():
    with Test("5 deferred while B is down, delivered by the next queue run"):
        for stop, what in (("inetd-b", "B's inetd (port 25 closed)"), ("sm-b", "B's sendmail behind blackpony")):
            tag = "deferred-" + stop
            amark, bmark = log_mark(A_LOG), log_mark(B_LOG)
            ctl("stop", stop)
            try:
                msg = message(tag, "alice@site-a.test", "bob@site-b.test", "e2e deferred (%s down)" % stop,
                              b"Sent while " + what.encode() + b" was down.\r\n.\r\nstill here\r\n")
                refused = send(A, "alice@site-a.test", ["bob@site-b.test"], msg)
                report(not refused, "[5] %s down: site A accepted the message" % what)
                report(find_delivered("b", tag, timeout=0.5) is None, "[5] %s down: not delivered yet" % what)
                q = mailq("a")
                report("bob@site-b.test" in q and len(queue_files("a")) == 1,
                       "[5] %s down: it is in site A's queue (mailq)" % what, q)
                lines = wait_lines(A_LOG, amark, r"\bdelivery dest=site-b\.test")
                info("A: " + (lines[-1].split(": ", 1)[-1] if lines else "(no delivery line)"))
                qline = [l.strip() for l in q.splitlines() if "Deferred" in l or "(" in l]
                if qline:
                    info("mailq: " + qline[0])
                if stop == "sm-b":
                    lines = wait_lines(B_LOG, bmark, r"\bsession client=")
                    info("B: " + (lines[-1].split(": ", 1)[-1] if lines else "(no session line)"))
            finally:
                ctl("start", stop)
            t = time.time()
            r = ctl("runq", "a", check=False)
            report(r.returncode == 0, "[5] sendmail -qf on site A ran (%.2f s)" % (time.time() - t), r.stdout + r.stderr)
            check_delivered("b", tag, msg, "[5] %s back: delivered by the queue run" % what)
            report(not queue_files("a"), "[5] site A's queue is empty again", mailq("a"))
            lines = wait_lines(B_LOG, bmark, r"suite=%s " % re.escape(SUITE))
            report(len(lines) >= 1, "[5] the retry was encrypted (B: suite=%s)" % SUITE)


def test_admin_as_root():
    with Test("7 the administrator's tools, run as root, leave the mailer working"):
        # README: --list-peers and --forget HOST inspect and reset pins; an
        # administrator runs them as root. Either they keep the store usable
        # by the mailer's user, or they refuse to touch it.
        store = os.path.join(D, "a", "state", "known_peers")
        files = (store, store + ".lock")

        def owners():
            return {os.path.basename(p): "%d:%d" % (os.stat(p).st_uid, os.stat(p).st_gid) if os.path.exists(p)
                    else "-" for p in files}

        before, content = owners(), open(store, "rb").read()
        r = subprocess.run([os.path.join(BIN, "blackpony-mailer"), "--known-peers", store, "--forget", "mx.site-b.test"],
                           capture_output=True, text=True)
        after = owners()
        if r.returncode == 0:
            report(after == before, "[7] blackpony-mailer --forget mx.site-b.test as root: done, and the store keeps"
                   " its owner (%s)" % before["known_peers"],
                   "owners before %r, after %r: the mailer's user can no longer open it" % (before, after))
        else:
            report(after == before and open(store, "rb").read() == content,
                   "[7] blackpony-mailer --forget as root: refused (%s), store untouched"
                   % (r.stdout + r.stderr).strip()[:120], "owners before %r, after %r" % (before, after))
        amark = log_mark(A_LOG)
        msg = message("after-forget", "alice@site-a.test", "bob@site-b.test", "e2e after --forget", b"re-pinned\r\n")
        send(A, "alice@site-a.test", ["bob@site-b.test"], msg)
        ok = find_delivered("b", "after-forget", timeout=2) is not None
        lines = wait_lines(A_LOG, amark, r"\bdelivery dest=site-b\.test")
        report(ok, "[7] the next message to site-b.test is delivered",
               "; ".join(l.split(": ", 1)[-1] for l in lines) or "no delivery line")
        if not ok:
            # Repair what root left behind, so that the checks after this one still mean something.
            st = os.stat(os.path.dirname(store))
            for p in files:
                if os.path.exists(p):
                    os.chown(p, st.st_uid, st.st_gid)
            ctl("runq", "a", check=False)
            report(find_delivered("b", "after-forget", timeout=2) is not None,
                   "[7] (after chown of the store back to the mailer's user, the queue run delivers it)")


A_PEERS = os.path.join(D, "a", "state", "known_peers")


def fingerprint_of(key):
    r = subprocess.run([os.path.join(BIN, "blackpony"), "--fingerprint", "--key", key],
                       capture_output=True, text=True)
    return r.stdout.split()[0] if r.returncode == 0 and r.stdout.split() else None


def b_pins():
    """A's pins for site B's v2 MX: {"host": [fp...] of mx.site-b.test, "domain": [fp...] of site-b.test}."""
    pins = {"host": [], "domain": []}
    for line in open(A_PEERS):
        w = line.split()
        if len(w) == 6 and (w[0], w[1]) in (("host", "mx.site-b.test"), ("domain", "site-b.test")):
            pins[w[0]].append(w[2])
    return pins


def test_rotation():
    with Test("11 B rotates its host key (--rotate-key): mail before, during and after the transition"):
        old = fingerprint_of(B_KEY)
        ok, cmds, _, lines = deliver_to_b("rot-before", "before the rotation", "[11] before the rotation")
        report(ok and encrypted_v2(lines) and field(lines[0], "peer") == old
               and b_pins() == {"host": [old], "domain": [old]},
               "[11] before: delivered encrypted to B's key %s, pinned by A for mx.site-b.test and site-b.test" % old,
               "A: %s; pins %r" % (lines, b_pins()))

        # The rotation, as B's user, while inetd keeps serving.
        r = as_b_user(os.path.join(BIN, "blackpony"), "--rotate-key", "--key", B_KEY)
        new = fingerprint_of(B_KEY)
        cont = B_KEY + ".continuity"
        st, key_st = (os.stat(cont) if os.path.exists(cont) else None), os.stat(B_KEY)
        report(r.returncode == 0 and new and new != old and old in r.stdout and new in r.stdout
               and st is not None and st.st_mode & 0o777 == 0o644 and key_st.st_mode & 0o777 == 0o600
               and (st.st_uid, key_st.st_uid) == (key_st.st_uid, os.stat(B_KEY + ".x25519").st_uid)
               and not os.path.exists(B_KEY + ".old"),
               "[11] blackpony --rotate-key as B's user: new key %s, host.key.continuity 0644, key 0600, owner kept,"
               " the old key not kept (%s)" % (new, r.stdout.strip()), r.stdout + r.stderr)

        # During the transition: A follows, silently.
        amark = log_mark(A_LOG)
        ok, cmds, _, lines = deliver_to_b("rot-during", "during the transition", "[11] during the transition")
        report(ok and encrypted_v2(lines) and field(lines[0], "peer") == new and field(lines[0], "pin_moved_from") == old,
               "[11] during: delivered encrypted with B's new key, verdict=ok (no deferral), the delivery line says"
               " pin_moved_from=<old key>", "A: %s" % lines)
        since = log_since(A_LOG, amark)
        moved = [l for l in since if "pin moved" in l]
        loud = [l for l in since if re.search(r": (warn|error): ", l)]
        report(moved and all(": info: " in l and "old=%s" % old in l and "new=%s" % new in l for l in moved)
               and not loud,
               "[11] A logs 'pin moved ... old=%s new=%s' at info, no warning, no error" % (old, new),
               "moved %r; warnings/errors %r" % (moved, loud))
        if moved:
            info("A: " + moved[0].split(": ", 1)[-1])
        report(b_pins() == {"host": [new], "domain": [new]},
               "[11] A's pins for mx.site-b.test and site-b.test now hold the new key only", repr(b_pins()))
        report(cmds and cmds[0] and cmds[0][-1] == (V2, "XX"),
               "[11] the rotation made a new static key: the delivery ended in XX, where the statement rides",
               "commands %r" % cmds)
        ok, cmds, _, lines = deliver_to_b("rot-during-2", "again during the transition", "[11] the next delivery")
        report(ok and encrypted_v2(lines) and cmds == [[(V2, "IK")]] and field(lines[0], "peer") == new,
               "[11] the next delivery: IK with the new key, nothing more to move", "commands %r; A: %s" % (cmds, lines))
        report(not queue_files("a"), "[11] site A's queue is empty", mailq("a"))

        # After the transition: B's key changes again and no statement is
        # presented any more (the file removed, which is what expiry amounts
        # to on the wire). An unsigned change: deferred, the message queued.
        r = as_b_user(os.path.join(BIN, "blackpony"), "--rotate-key", "--force", "--key", B_KEY)
        os.remove(cont)
        newer = fingerprint_of(B_KEY)
        report(r.returncode == 0 and newer not in (None, new),
               "[11] after the transition: B's key changes again (%s), no continuity statement presented" % newer,
               r.stdout + r.stderr)
        amark = log_mark(A_LOG)
        tag = "rot-after"
        msg = message(tag, "alice@site-a.test", "bob@site-b.test", "e2e " + tag, b"after the transition\r\n")
        refused = send(A, "alice@site-a.test", ["bob@site-b.test"], msg)
        lines = wait_lines(A_LOG, amark, r"\bdelivery dest=site-b\.test")
        report(not refused and find_delivered("b", tag, timeout=1) is None and len(queue_files("a")) == 1
               and "bob@site-b.test" in mailq("a"),
               "[11] the unsigned change: not delivered, the message stays in A's queue", mailq("a"))
        report(lines and field(lines[-1], "verdict") == "defer" and field(lines[-1], "peer") in ("-", None)
               and re.search(r'reply="4\d\d', lines[-1]),
               "[11] A's mailer deferred it (verdict=defer, a 4xx to sendmail)", "A: %s" % lines)
        errs = [l for l in log_since(A_LOG, amark) if "deferring" in l]
        report(errs and any(new in l and newer in l for l in errs) and not any("pin moved" in l for l in log_since(A_LOG, amark)),
               "[11] A logs the key change (pinned %s, now %s), no pin moved" % (new, newer), "\n".join(errs))
        if errs:
            info("A: " + errs[0].split(": ", 1)[-1][:200])
        report(b_pins() == {"host": [new], "domain": [new]}, "[11] A's pins are unchanged", repr(b_pins()))

        # The administrator accepts the change: forget host and domain; the queue run delivers.
        for name in ("mx.site-b.test", "site-b.test"):
            r = subprocess.run([os.path.join(BIN, "blackpony-mailer"), "--known-peers", A_PEERS, "--forget", name],
                               capture_output=True, text=True)
            report(r.returncode == 0, "[11] blackpony-mailer --forget %s" % name, r.stdout + r.stderr)
        ctl("runq", "a", check=False)
        check_delivered("b", tag, msg, "[11] after --forget, the queue run delivers it")
        report(b_pins() == {"host": [newer], "domain": [newer]} and not queue_files("a"),
               "[11] A pins B's newest key, its queue is empty", "%r %s" % (b_pins(), mailq("a")))


def test_xinetd():
    with Test("X blackpony under xinetd (xinetd.d/blackpony)"):
        conf = open(os.path.join(D, "b", "xinetd.d", "blackpony")).read()
        info("xinetd service: " + " ".join(re.sub(r"\s+", " ", l.strip()) for l in conf.splitlines()
                                            if l.strip().startswith(("server", "bind", "user", "instances",
                                                                     "cps", "per_source", "log_type"))))
        ctl("stop", "inetd-b")
        try:
            started = ctl("start", "xinetd-b", check=False)
            if not report(started.returncode == 0, "[X] xinetd starts with xinetd.d/blackpony and listens on 127.0.0.3:25",
                          started.stderr + open(os.path.join(D, "logs", "xinetd-b.out")).read()[-2000:]):
                return
            offer = ehlo_offer(B_PUBLIC, B_LOG)
            want = offer[0] if offer else "?"
            bmark = log_mark(B_LOG)
            msg = msg_long("alice@site-a.test", "bob@site-b.test", tag="xinetd")
            refused = send(A, "alice@site-a.test", ["bob@site-b.test"], msg)
            report(not refused, "[X] site A accepted mail for bob@site-b.test")
            check_delivered("b", "xinetd", msg, "[X] A -> xinetd/blackpony -> B: delivered byte for byte")
            lines = wait_lines(B_LOG, bmark, r"\bsession client=")
            report(len(lines) == 1 and field(lines[0], "suite") == want,
                   "[X] under xinetd the session is encrypted with the first offered suite, %s" % want,
                   "\n".join(lines))
            code, ehlo, replies = smtp_dialogue(B_PUBLIC, OUTSIDE, "outside.example", [
                "MAIL FROM:<spammer@outside.example>", "RCPT TO:<x@elsewhere.test>"])
            report(replies[1][0] == 550 and "[%s]" % B_SOURCE in ehlo,
                   "[X] under xinetd: relaying denied (550), sendmail sees [%s]" % B_SOURCE, repr(replies))
            xlog = open(os.path.join(D, "logs", "xinetd.log")).read() if os.path.exists(
                os.path.join(D, "logs", "xinetd.log")) else ""
            slog = open(SYSLOG, errors="replace").read() if os.path.exists(SYSLOG) else ""
            report("START: smtp" in xlog or "START: smtp" in slog,
                   "[X] xinetd logged the connections (log_type of xinetd.d/blackpony), not to the socket",
                   "xinetd.log: %r" % xlog[-500:])
        finally:
            ctl("stop", "xinetd-b", check=False)
            ctl("start", "inetd-b", check=False)


def test_activate():
    with Test("S blackpony under systemd-socket-activate, Accept=no (blackpony-threaded.socket)"):
        info("command: " + " ".join(open(os.path.join(D, "b", "activate.cmd")).read().split()))
        ctl("stop", "inetd-b")
        try:
            bmark = log_mark(B_LOG)
            started = ctl("start", "activate-b", check=False)
            if not report(started.returncode == 0, "[S] systemd-socket-activate listens on 127.0.0.3:25",
                          started.stderr + open(os.path.join(D, "logs", "activate-b.out")).read()[-2000:]):
                return
            offer = ehlo_offer(B_PUBLIC, B_LOG)
            want = offer[0] if offer else "?"
            msgs = [msg_long("alice@site-a.test", "bob@site-b.test", tag="activate%d" % i) for i in range(3)]
            for m in msgs:
                refused = send(A, "alice@site-a.test", ["bob@site-b.test"], m)
                report(not refused, "[S] site A accepted mail for bob@site-b.test")
            for i, m in enumerate(msgs):
                check_delivered("b", "activate%d" % i, m,
                                "[S] A -> systemd-socket-activate/blackpony -> B: message %d delivered byte for byte" % i)
            # sendmail may carry the three messages over one connection or several.
            lines = wait_lines(B_LOG, bmark, r"\bsession client=", count=2)
            pids = {m.group(1) for m in (re.search(r"blackpony\[(\d+)\]", l) for l in lines) if m}
            report(len(lines) >= 2 and all(field(l, "suite") == want for l in lines[1:]) and len(pids) == 1,
                   "[S] the probe and sendmail's sessions (%d), encrypted with %s, all served by one process"
                   % (len(lines) - 1, want), "\n".join(lines))
            code, ehlo, replies = smtp_dialogue(B_PUBLIC, OUTSIDE, "outside.example", [
                "MAIL FROM:<spammer@outside.example>", "RCPT TO:<x@elsewhere.test>"])
            report(replies[1][0] == 550 and "[%s]" % B_SOURCE in ehlo,
                   "[S] under socket activation: relaying denied (550), sendmail sees [%s]" % B_SOURCE, repr(replies))
            ctl("stop", "activate-b")
            log = "\n".join(log_since(B_LOG, bmark))
            report("started by systemd socket activation (Accept=no) on 127.0.0.3:25" in log
                   and re.search(r"SIGTERM: no longer accepting", log) and re.search(r"stopped: \d+ session\(s\) served, 0 refused.*0 cut", log),
                   "[S] the mode is logged at start, SIGTERM stops it cleanly with the counts logged",
                   log[-1500:])
            out = open(os.path.join(D, "logs", "activate-b.out")).read()
            report(out == "", "[S] nothing written to stdout or stderr", out[-500:])
        finally:
            ctl("stop", "activate-b", check=False)
            ctl("start", "inetd-b", check=False)


def test_systemd():
    with Test("6 systemd units (deploy/systemd)"):
        sock = os.path.join(REPO, "deploy", "systemd", "blackpony.socket")
        svc = os.path.join(REPO, "deploy", "systemd", "blackpony@.service")
        units = {}
        for path in (sock, svc):
            units[path] = parse_unit(open(path).read())
        s, v = units[sock], units[svc]
        want_sock = {("Socket", "Accept"): "yes"}
        for key, val in want_sock.items():
            report(s.get(key) == [val], "[6] blackpony.socket: %s=%s" % (key[1], val), repr(s.get(key)))
        report(bool(s.get(("Socket", "MaxConnections"))), "[6] blackpony.socket: MaxConnections=%s"
               % (s.get(("Socket", "MaxConnections")) or ["(missing)"])[0])
        report(any(x.endswith("25") for x in s.get(("Socket", "ListenStream"), [])),
               "[6] blackpony.socket: ListenStream on port 25", repr(s.get(("Socket", "ListenStream"))))
        for key, val in [("StandardInput", "socket"), ("StandardOutput", "socket"), ("StandardError", "journal"),
                         ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                         ("PrivateTmp", "yes")]:
            report(v.get(("Service", key)) == [val], "[6] blackpony@.service: %s=%s" % (key, val),
                   repr(v.get(("Service", key))))
        report(v.get(("Service", "DynamicUser")) == ["yes"] or bool(v.get(("Service", "User"))),
               "[6] blackpony@.service: DynamicUser=yes or a dedicated User=")
        report(bool(v.get(("Service", "ReadOnlyPaths"))), "[6] blackpony@.service: ReadOnlyPaths=%s"
               % " ".join(v.get(("Service", "ReadOnlyPaths"), ["(missing)"])))
        cred = v.get(("Service", "LoadCredential"), [])
        execs = " ".join(v.get(("Service", "ExecStart"), []))
        report(any(c.startswith("host.key:") for c in cred) and "${CREDENTIALS_DIRECTORY}/host.key" in execs,
               "[6] blackpony@.service: the key comes as a credential (LoadCredential=host.key:..., --key "
               "${CREDENTIALS_DIRECTORY}/host.key)", "LoadCredential=%r ExecStart=%r" % (cred, execs))
        report(any(c.startswith("host.key.x25519:") for c in cred) and any(c.startswith("host.key.cert:") for c in cred),
               "[6] blackpony@.service: the static key and certificate come as credentials too (handshake v2"
               " finds them beside --key)", "LoadCredential=%r" % cred)
        report("--source" in execs or "--proxy-protocol" in execs or "--xclient" in execs,
               "[6] blackpony@.service: ExecStart passes --source/--proxy-protocol/--xclient (no open relay)", execs)

        # The Accept=no pair: one long-running process, the same sandbox.
        tsock = os.path.join(REPO, "deploy", "systemd", "blackpony-threaded.socket")
        tsvc = os.path.join(REPO, "deploy", "systemd", "blackpony-threaded.service")
        ts, tv = parse_unit(open(tsock).read()), parse_unit(open(tsvc).read())
        report(ts.get(("Socket", "Accept")) == ["no"] and ts.get(("Socket", "Service")) == ["blackpony-threaded.service"],
               "[6] blackpony-threaded.socket: Accept=no, Service=blackpony-threaded.service", repr(ts))
        texecs = " ".join(tv.get(("Service", "ExecStart"), []))
        report("--max-connections" in texecs and "--shutdown-grace" in texecs
               and ("--source" in texecs or "--proxy-protocol" in texecs or "--xclient" in texecs),
               "[6] blackpony-threaded.service: ExecStart has --max-connections, --shutdown-grace and no open relay",
               texecs)
        same = [k for k in v if k[0] == "Service" and k[1] not in (
            "ExecStart", "StandardInput", "StandardOutput", "RuntimeMaxSec")]
        differ = [k[1] for k in same if tv.get(k) != v.get(k)]
        report(not differ, "[6] blackpony-threaded.service has blackpony@.service's sandbox, user and credential",
               "differs: %s" % differ)

        # Certificate renewal: a daily timer running a oneshot as the key's owner.
        rsvc = os.path.join(REPO, "deploy", "systemd", "blackpony-renew.service")
        rtim = os.path.join(REPO, "deploy", "systemd", "blackpony-renew.timer")
        rs, rt = parse_unit(open(rsvc).read()), parse_unit(open(rtim).read())
        rexec = " ".join(rs.get(("Service", "ExecStart"), []))
        report(rs.get(("Service", "Type")) == ["oneshot"] and rs.get(("Service", "User")) == v.get(("Service", "User"))
               and "--renew-cert" in rexec and "--force" not in rexec,
               "[6] blackpony-renew.service: Type=oneshot, User=%s (the key's owner), ExecStart=%s"
               % ((rs.get(("Service", "User")) or ["?"])[0], rexec), repr(rs))
        report(rt.get(("Timer", "OnCalendar")) == ["daily"] and rt.get(("Timer", "Persistent")) == ["true"]
               and bool(rt.get(("Timer", "RandomizedDelaySec"))) and rt.get(("Install", "WantedBy")) == ["timers.target"],
               "[6] blackpony-renew.timer: OnCalendar=daily, Persistent=true, RandomizedDelaySec=%s, WantedBy=timers.target"
               % (rt.get(("Timer", "RandomizedDelaySec")) or ["?"])[0], repr(rt))

        sda = shutil.which("systemd-analyze")
        if not sda:
            info("systemd-analyze is not installed: only the checks above ran (no systemd verification)")
            return
        # Verify the files as shipped, except for what this machine cannot
        # have yet: the binary at /usr/sbin (before the Debian package) and
        # the man pages.
        vdir = os.path.join(D, "systemd")
        os.makedirs(vdir, exist_ok=True)
        notes = []
        for path in (sock, svc, tsock, tsvc, rsvc, rtim):
            text = open(path).read()
            exe = re.search(r"^ExecStart=[-@:+!]*(\S+)", text, re.M)
            if exe and not os.access(exe.group(1), os.X_OK):
                text = text.replace(exe.group(1), os.path.join(BIN, "blackpony"))
                notes.append("ExecStart path %s -> %s" % (exe.group(1), os.path.join(BIN, "blackpony")))
            open(os.path.join(vdir, os.path.basename(path)), "w").write(text)
        man = subprocess.run(["man", "-w", "8", "blackpony"], capture_output=True).returncode == 0
        names = ["blackpony.socket", "blackpony@.service", "blackpony-threaded.socket", "blackpony-threaded.service",
                 "blackpony-renew.service", "blackpony-renew.timer"]
        args = [sda, "verify"] + ([] if man else ["--man=no"]) + [os.path.join(vdir, n) for n in names]
        if not man:
            notes.append("--man=no: blackpony(8) is not installed yet")
        r = subprocess.run(args, capture_output=True, text=True, cwd=vdir)
        report(r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(),
               "[6] systemd-analyze verify %s: clean" % " ".join(names)
               + (" (%s)" % "; ".join(notes) if notes else ""), (r.stdout + r.stderr).strip())
        for name in ("blackpony@.service", "blackpony-threaded.service", "blackpony-renew.service"):
            r = subprocess.run([sda, "security", "--offline=yes", os.path.join(vdir, name)],
                               capture_output=True, text=True, cwd=vdir)
            m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", r.stdout)
            report(m is not None and float(m.group(1)) <= 2.0,
                   "[6] systemd-analyze security %s: exposure %s %s (at most 2.0)"
                   % ((name,) + (m.groups() if m else ("?", "?"))), r.stdout[-1500:] + r.stderr)
        syscalls_under_filter(sda, v)


def expand_syscalls(sda, name, cache={}):
    """The system calls of `name` (a call or an @group), groups expanded."""
    if not name.startswith("@"):
        return {name}
    if name not in cache:
        out = subprocess.run([sda, "syscall-filter", name], capture_output=True, text=True).stdout
        calls = set()
        for line in out.splitlines()[1:]:
            word = line.strip()
            if word and not word.startswith("#") and re.fullmatch(r"@?[a-z0-9_-]+", word):
                calls |= expand_syscalls(sda, word)
        cache[name] = calls
    return cache[name]


def syscalls_under_filter(sda, unit):
    """blackpony, started like the service (socket on stdin and stdout, logging
    to syslog), under strace for one encrypted delivery: every system call it
    makes must pass the unit's SystemCallFilter= lines."""
    strace = shutil.which("strace")
    filters = unit.get(("Service", "SystemCallFilter"), [])
    if not strace or not filters:
        info("no SystemCallFilter check: %s" % ("strace is not installed" if not strace else "no filter"))
        return
    allowed, denied = set(), set()
    for f in filters:
        neg = f.startswith("~")
        names = set()
        for word in f.lstrip("~").split():
            names |= expand_syscalls(sda, word)
        (denied if neg else allowed).update(names)
    allowed -= denied
    import socket
    lst = socket.socket()
    lst.bind(("127.0.0.3", 0))
    lst.listen(1)
    port = lst.getsockname()[1]
    trace = os.path.join(D, "logs", "blackpony.strace")
    mailer = subprocess.Popen([os.path.join(BIN, "blackpony-mailer"), "--pipe", "-f", "alice@site-a.test",
                               "--helo", "mx.site-a.test", "--port", str(port), "--key", os.path.join(D, "a", "host.key"),
                               "--known-peers", os.path.join(D, "strace_known_peers"),
                               "--log", os.path.join(D, "logs", "strace-mailer.log"), "[127.0.0.3]", "bob@site-b.test"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    mailer.stdin.write(b"Message-ID: <strace.%s@e2e.test>\nSubject: strace\n\nunder strace\n" % RUN_ID.encode())
    mailer.stdin.close()
    lst.settimeout(30)
    conn, _ = lst.accept()
    bp = subprocess.Popen([strace, "-f", "-qq", "-o", trace, os.path.join(BIN, "blackpony"),
                           "--backend", "%s:%d" % B_BACKEND, "--source", B_SOURCE,
                           "--key", B_KEY],
                          stdin=conn, stdout=conn, stderr=subprocess.DEVNULL)
    conn.close()
    lst.close()
    out = mailer.stdout.read()
    mailer.wait(60)
    bp.wait(30)
    used = set()
    for line in open(trace):
        m = re.match(r"\d+\s+([a-z0-9_]+)\(", line)
        if m and m.group(1) != "execve":  # the filter is installed just before the execve
            used.add(m.group(1))
    report(mailer.returncode == 0 and find_delivered("b", "strace") is not None,
           "[6] one encrypted delivery to blackpony run like the service (socket on fd 0/1, syslog)",
           out.decode(errors="replace"))
    bad = sorted(used - allowed)
    report(used and not bad, "[6] the %d system calls blackpony made all pass the unit's SystemCallFilter=" % len(used),
           "refused by the filter: %s (trace in %s)" % (bad, trace))


def parse_unit(text):
    """{(section, key): [values]} of a unit file (continuation lines joined)."""
    out, section, pending = {}, None, ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        k, _, v = line.partition("=")
        out.setdefault((section, k.strip()), []).append(v.strip())
    return out


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("run.py: terminated"))
    what = sys.argv[1] if len(sys.argv) > 1 else "main"
    # E2E_ONLY=pipelining,smuggling: run only these tests of main (and none
    # of the other modes unless named), to iterate on one group.
    only = [w for w in os.environ.get("E2E_ONLY", "").split(",") if w]
    t = time.time()
    if only and what not in ("main", *only):
        print("SKIP  run.py %s (E2E_ONLY=%s)" % (what, ",".join(only)))
        return 0
    if what == "main":
        for test in (test_m4, test_a_to_b, test_capture, test_ik_and_renewal, test_rsa_unreadable, test_mixed, test_open_relay, test_smuggling,
                     test_pipelining, test_deferred, test_admin_as_root, test_rotation):
            if not only or test.__name__[len("test_"):] in only:
                test()
    elif what == "xinetd":
        test_xinetd()
    elif what == "activate":
        test_activate()
    elif what == "systemd":
        test_systemd()
    else:
        print(__doc__)
        return 64
    print("TIME  run.py %-45s %6.2f s" % (what, time.time() - t))
    if failures:
        print("%d check(s) FAILED in run.py %s:" % (len(failures), what))
        for f in failures:
            print("  " + f)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
