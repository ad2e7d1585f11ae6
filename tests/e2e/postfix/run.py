#!/usr/bin/python3
"""End-to-end checks of blackpony with real Postfix, inetd and dnsmasq.

Run by scripts/e2e-postfix.sh, which builds the topology and starts the
daemons (see its header). Prints one PASS or FAIL line per check and exits 1
if any failed.

Environment: E2E_DIR, BLACKPONY_BIN, E2E_CTL (ctl.sh), E2E_DNS_PORT,
E2E_RUN_USER, E2E_RUN_GROUP.
"""
import base64
import email.utils
import os
import random
import re
import smtplib
import socket
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import smuggling as smuggling_checks  # noqa: E402  (tests/e2e/smuggling.py)
import pipelining as pipelining_checks  # noqa: E402  (tests/e2e/pipelining.py)
import load as load_checks  # noqa: E402  (tests/e2e/load.py)

D = os.environ["E2E_DIR"]
BIN = os.environ["BLACKPONY_BIN"]
CTL = os.environ.get("E2E_CTL") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "ctl.sh")
DNS = "127.0.0.1:%s" % os.environ.get("E2E_DNS_PORT", "5354")
RUN_USER = os.environ.get("E2E_RUN_USER", "nobody")
RUN_GROUP = os.environ.get("E2E_RUN_GROUP", "nogroup")
RECORD_DIR = os.environ.get("E2E_RECORD_DIR")  # set when the binaries have --record

A_SUBMIT = ("127.0.0.21", 2500)  # site A: Postfix, remote mail through the blackpony pipe transport
B_PROXY = ("127.0.0.22", 25)     # site B: inetd -> blackpony --proxy-protocol v1 -> Postfix :2525
B_XCLIENT = ("127.0.0.23", 25)   # site B: inetd -> blackpony --xclient -> Postfix :2526
B_CONTROL = ("127.0.0.25", 25)   # site B: inetd -> blackpony (no address passing) -> Postfix :2527
OUTSIDE = "127.0.0.29"           # an outside client's address
FS = "NOISE-25519-CHACHAPOLY-SHA256"  # the suite two current blackpony sites agree on (handshake v2, the default)

LOG = {
    "a": os.path.join(D, "a", "maillog"),
    "b": os.path.join(D, "b", "maillog"),
    "c": os.path.join(D, "c", "maillog"),
    "a-mailer": os.path.join(D, "logs", "a-mailer.log"),
    "direct-mailer": os.path.join(D, "logs", "direct-mailer.log"),
    "b-proxy": os.path.join(D, "logs", "b-proxy.log"),
    "b-xclient": os.path.join(D, "logs", "b-xclient.log"),
    "b-control": os.path.join(D, "logs", "b-control.log"),
    "a-fault": os.path.join(D, "logs", "a-fault.log"),
}

failures = []
known_bugs = []
RUN_ID = "%x" % int(time.time() * 1000)


def report(ok, what, detail=""):
    print("%s  %s%s" % ("PASS" if ok else "FAIL", what, ("  -- " + detail) if detail and not ok else ""),
          flush=True)
    if not ok:
        failures.append(what)
    return ok


def known_bug(ok, what, detail, bug):
    """A check that fails because of a known bug in blackpony: XFAIL, not a
    failure of the run; PASS once fixed (then make it a plain check)."""
    if ok:
        print("PASS  %s  (known bug fixed: %s; make this a plain check)" % (what, bug), flush=True)
    else:
        print("XFAIL %s  -- %s; known bug: %s" % (what, detail, bug), flush=True)
        known_bugs.append(what)


def info(text):
    print("      " + text, flush=True)


class Test:
    """Times one test; an exception inside is a FAIL, not a crash."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        print("--- %s" % self.name, flush=True)
        self.t = time.time()
        return self

    def __exit__(self, kind, value, tb):
        if kind is not None:
            report(False, "%s: unexpected error" % self.name,
                   "".join(traceback.format_exception(kind, value, tb)[-3:]).strip())
        print("TIME  %-56s %6.2f s" % (self.name, time.time() - self.t), flush=True)
        return True


# ------------------------------------------------------------------ helpers

def ctl(*args):
    p = subprocess.run([CTL, *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("ctl.sh %s failed: %s%s" % (" ".join(args), p.stdout, p.stderr))


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def mark(name):
    """Where log NAME ends now: later reads see only what came after."""
    return len(read(LOG[name]))


def since(name, pos):
    return read(LOG[name])[pos:]


def wait_for(fn, timeout=15.0, step=0.05):
    """Poll fn() until it returns something true (returned) or time runs out (None)."""
    end = time.time() + timeout
    while True:
        r = fn()
        if r:
            return r
        if time.time() > end:
            return None
        time.sleep(step)


def maildir(site, box):
    return os.path.join(D, site, "mail", box, "new")


def find_mail(site, box, token, timeout=15.0):
    """The content (bytes) of the message in SITE's Maildir BOX containing TOKEN."""
    d = maildir(site, box)

    def look():
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            return None
        for n in names:
            with open(os.path.join(d, n), "rb") as f:
                data = f.read()
            if token.encode() in data:
                return data
        return None
    return wait_for(look, timeout)


def count_mail(site, box, token):
    try:
        names = os.listdir(maildir(site, box))
    except FileNotFoundError:
        return 0
    n = 0
    for name in names:
        with open(os.path.join(maildir(site, box), name), "rb") as f:
            n += token.encode() in f.read()
    return n


def token(tag):
    return "e2e-%s-%s-%04x" % (RUN_ID, tag, random.getrandbits(16))


def message(tok, sender, rcpt, big=False):
    """A test message with LF line ends: dots, 8-bit text, a 998-octet line,
    trailing blanks and (big) a 300 kB base64 attachment."""
    boundary = "=_b_" + tok
    long_line = ("0123456789abcdefghijklmnopqrstuvwxyz" * 30)[:998]
    lines = [
        "From: Sender <%s>" % (sender or "mailer-daemon@pa.test"),
        "To: <%s>" % rcpt,
        "Subject: blackpony postfix e2e %s" % tok,
        "Date: %s" % email.utils.formatdate(localtime=False),
        "Message-ID: <%s@pa.test>" % tok,
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="%s"' % boundary,
        "",
        "--" + boundary,
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        "Token: %s" % tok,
        ".",
        "..two dots",
        ". a dot and a space",
        "Grüße aus Köln, żółć, 日本語, ünïcödé",
        long_line,
        "trailing blanks   ",
        "\tleading tab",
        "From the start of a line",
        "",
        "",
        "--" + boundary,
    ]
    if big:
        blob = base64.encodebytes(random.getrandbits(8 * 300_000).to_bytes(300_000, "little")).decode()
        lines += [
            "Content-Type: application/octet-stream",
            "Content-Transfer-Encoding: base64",
            'Content-Disposition: attachment; filename="blob.bin"',
            "",
            blob.rstrip("\n"),
            "--" + boundary,
        ]
    lines[-1] += "--"
    lines.append("last line, then the end")
    return ("\n".join(lines) + "\n").encode()


ADDED_HEADERS = ("Return-Path:", "Delivered-To:", "X-Original-To:", "Received:")


def check_delivered(what, data, original):
    """DATA (a Maildir file) must be ORIGINAL byte for byte, after the
    headers the MTAs add (Return-Path, Delivered-To, X-Original-To, Received)."""
    if data is None:
        return report(False, what, "not delivered")
    if not data.endswith(original):
        # Show where they first differ.
        tail = data[-len(original):] if len(data) >= len(original) else data
        i = next((k for k in range(min(len(tail), len(original))) if tail[k] != original[k]), None)
        return report(False, what, "content differs (length %d vs %d; first difference at %s: %r vs %r)" % (
            len(data), len(original), i,
            tail[i:i + 40] if i is not None else b"", original[i:i + 40] if i is not None else b""))
    prefix = data[:-len(original)].decode("utf-8", "replace")
    bad = [ln for ln in prefix.split("\n") if ln and not ln[0].isspace() and not ln.startswith(ADDED_HEADERS)]
    return report(not bad, what, "unexpected header lines added: %r" % bad)


def smtp_send(server, sender, rcpts, msg, source="127.0.0.1", helo="client.e2e.test"):
    """Send one message; returns (queue id or None, {rcpt: (code, text)}, data reply)."""
    with smtplib.SMTP(server[0], server[1], local_hostname=helo, source_address=(source, 0), timeout=60) as s:
        s.ehlo()
        code, text = s.mail(sender)
        if code != 250:
            raise RuntimeError("MAIL FROM:<%s> got %d %s" % (sender, code, text))
        results = {r: s.rcpt(r) for r in rcpts}
        if not any(c == 250 for c, _ in results.values()):
            s.rset()
            return None, results, None
        # smtplib sends bytes as they are: give it CRLF line ends (bare LFs
        # would reach Postfix as they are, and it would store a blank line).
        code, text = s.data(msg.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        text = text.decode("utf-8", "replace")
        m = re.search(r"queued as (\S+)", text)
        return (m.group(1) if m else None), results, (code, text)


def postfix_status(site, qid, rcpt, timeout=20.0, want=None):
    """Wait for SITE's log line `QID: to=<RCPT>, ... status=S`; returns (S, line)."""
    pat = re.compile(r"%s: to=<%s>,.* status=(\w+)(.*)" % (re.escape(qid), re.escape(rcpt)))

    def look():
        found = [m for m in pat.finditer(read(LOG[site]))]
        if want:
            found = [m for m in found if m.group(1) == want]
        return found[-1] if found else None
    m = wait_for(look, timeout)
    return (m.group(1), m.group(0)) if m else (None, "no delivery line for %s in %s's log" % (qid, site))


def run_mailer(dest, rcpts, msg, sender):
    """blackpony-mailer --pipe as the pipe transport runs it, as the blackpony user."""
    cmd = ["setpriv", "--reuid=" + RUN_USER, "--regid=" + RUN_GROUP, "--clear-groups",
           os.path.join(BIN, "blackpony-mailer"), "--pipe", "--dns", DNS,
           "--key", os.path.join(D, "a", "host.key"),
           "--known-peers", os.path.join(D, "direct", "known_peers"),
           "--log", LOG["direct-mailer"], "--timeout", "60", "--helo", "client.pa.test"]
    if RECORD_DIR:
        cmd += ["--record", os.path.join(RECORD_DIR, "direct-mailer.jsonl")]
    cmd += ["-f", sender, "--", dest, *rcpts]
    p = subprocess.run(cmd, input=msg, capture_output=True, timeout=120)
    return p.returncode, p.stdout.decode("utf-8", "replace").strip(), p.stderr.decode("utf-8", "replace").strip()


def session_lines(text, client="127.0.0.1"):
    """blackpony's session lines for connections from CLIENT (the mailer's
    address; other tests' sessions may end, and log, a little later)."""
    return [ln for ln in text.splitlines() if " session client=%s:" % client in ln]


def delivery_lines(text, dest):
    return [ln for ln in text.splitlines() if " delivery dest=%s " % dest in ln]


# ------------------------------------------------------------------ tests

def backend_tests(tag, front, domain, rcpt, box, log):
    """Postfix behind blackpony (PROXY or XCLIENT): encrypted delivery from a
    blackpony-mailer, the real client address in Postfix's log, no open relay."""
    with Test("[%s] %s: EHLO through blackpony" % (tag, domain)):
        with smtplib.SMTP(front[0], front[1], local_hostname="outside.example",
                          source_address=(OUTSIDE, 0), timeout=30) as s:
            code, text = s.ehlo()
            feats = s.esmtp_features
        report(code == 250 and "xblackpony" in feats,
               "[%s] EHLO reply of Postfix through blackpony offers XBLACKPONY" % tag,
               "got %d, features %s" % (code, sorted(feats)))
        report("xclient" not in feats and "xforward" not in feats,
               "[%s] the outside client is not offered XCLIENT or XFORWARD" % tag,
               "features %s" % sorted(feats))

    with Test("[%s] blackpony-mailer --pipe -> blackpony -> Postfix (%s)" % (tag, domain)):
        tok = token(tag + "-mailer")
        msg = message(tok, "alice@pa.test", rcpt, big=True)
        b_mark, m_mark = mark(log), mark("direct-mailer")
        rc, out, err = run_mailer(domain, [rcpt], msg, "alice@pa.test")
        report(rc == 0 and not err, "[%s] blackpony-mailer --pipe exits 0, silent on stderr" % tag,
               "exit %d, stdout %r, stderr %r" % (rc, out, err))
        check_delivered("[%s] delivered into %s's Maildir byte for byte (dots, 8-bit, 998-octet line, 300 kB)"
                        % (tag, rcpt), find_mail("b", box, tok), msg)
        sess = wait_for(lambda: session_lines(since(log, b_mark)), 5)
        report(bool(sess) and all(" suite=%s " % FS in ln for ln in sess),
               "[%s] site B's blackpony, session from 127.0.0.1: suite=%s" % (tag, FS), "log: %s" % (sess or "no session line"))
        dl = wait_for(lambda: delivery_lines(since("direct-mailer", m_mark), domain), 5)
        ok = bool(dl) and " suite=%s " % FS in dl[-1] and " verdict=ok " in dl[-1] and "end=quit" in dl[-1]
        report(ok, "[%s] the mailer's log: suite=%s verdict=ok end=quit" % (tag, FS), "log: %s" % dl)
        if dl:
            info(dl[-1].split(" delivery ", 1)[-1])

    with Test("[%s] the outside client's address reaches Postfix" % tag):
        tok = token(tag + "-addr")
        pf_mark = mark("b")
        qid, rc, data = smtp_send(front, "someone@outside.example", [rcpt],
                                  message(tok, "someone@outside.example", rcpt), source=OUTSIDE)
        report(qid is not None, "[%s] a plain message from %s is accepted" % (tag, OUTSIDE),
               "RCPT %s, DATA %s" % (rc, data))
        if qid:
            line = wait_for(lambda: re.search(r"%s: client=(\S+)" % re.escape(qid), since("b", pf_mark)), 10)
            client = line.group(1) if line else None
            report(client is not None and "[%s]" % OUTSIDE in client,
                   "[%s] Postfix's log shows the real client: %s: client=%s" % (tag, qid, client),
                   "expected [%s], not blackpony's 127.0.0.1" % OUTSIDE)
            report(find_mail("b", box, tok) is not None, "[%s] ... and delivers it" % tag)
            if tag == "X":
                # This smtpd looked up blackpony's own name (localhost); XCLIENT
                # must replace it, with the client's name or [UNAVAILABLE].
                report(client is not None and not client.startswith("localhost["),
                       "[X] Postfix does not give the outside client blackpony's host name: client=%s" % client,
                       "the name of 127.0.0.1 stuck to %s" % OUTSIDE)

    with Test("[%s] open relay: outside client -> foreign domain" % tag):
        pf_mark = mark("b")
        qid, rc, data = smtp_send(front, "spammer@outside.example", ["victim@foreign.example"],
                                  b"Subject: relay test\n\nno\n", source=OUTSIDE)
        code, text = rc["victim@foreign.example"]
        text = text.decode("utf-8", "replace")
        report(code in (550, 554) and "Relay access denied" in text,
               "[%s] RCPT to a foreign domain: %d %s" % (tag, code, text), "expected 554/550 Relay access denied")
        line = wait_for(lambda: re.search(r"reject: RCPT from (\S+): .*Relay access denied", since("b", pf_mark)), 5)
        report(line is not None and "[%s]" % OUTSIDE in line.group(1),
               "[%s] Postfix logs the refusal for %s" % (tag, line.group(1) if line else "?"),
               "expected the client [%s]" % OUTSIDE)


def xclient_spoof():
    """Through blackpony --xclient, an outside client must not be able to
    send its own XCLIENT (Postfix authorised blackpony's address for it) and
    pose as a trusted host."""
    with Test("[X] outside client sends its own XCLIENT ADDR=127.0.0.1"):
        with smtplib.SMTP(B_XCLIENT[0], B_XCLIENT[1], local_hostname="outside.example",
                          source_address=(OUTSIDE, 0), timeout=30) as s:
            s.ehlo()
            code, text = s.docmd("XCLIENT", "ADDR=127.0.0.1 NAME=localhost")
            info("XCLIENT ADDR=127.0.0.1 -> %d %s" % (code, text.decode("utf-8", "replace")))
            if code == 220:
                s.ehlo()
            s.mail("spammer@outside.example")
            rcode, rtext = s.rcpt("victim@foreign.example")
        report(rcode != 250,
               "[X] spoofed XCLIENT does not open the relay: RCPT got %d %s" % (rcode, rtext.decode("utf-8", "replace")),
               "the outside client relayed after XCLIENT ADDR=127.0.0.1 (XCLIENT reply %d)" % code)
        report(code != 220, "[X] blackpony does not pass the client's XCLIENT to Postfix: %d" % code,
               "Postfix accepted XCLIENT from the outside client")


def relay_control():
    """The relay checks above can fail: the same Postfix behind a blackpony
    that passes no client address sees 127.0.0.1 and relays for anyone."""
    with Test("[N] control: blackpony without --proxy-protocol/--xclient/--source"):
        with smtplib.SMTP(B_CONTROL[0], B_CONTROL[1], local_hostname="outside.example",
                          source_address=(OUTSIDE, 0), timeout=30) as s:
            s.ehlo()
            s.mail("spammer@outside.example")
            code, text = s.rcpt("victim@foreign.example")
            s.rset()
        report(code == 250, "[N] ... Postfix sees 127.0.0.1 and is an open relay: RCPT got %d (as the README warns)" % code,
               "expected 250: then the relay checks above prove nothing (%s)" % text.decode("utf-8", "replace"))





def smuggling():
    # B's plain smtpd 127.0.0.22:2527 straight, then the same smtpd through
    # the control blackpony (127.0.0.25:25, no address passing) and B's
    # PROXY-protocol smtpd (:2525, same main.cf) through blackpony
    # --proxy-protocol (127.0.0.22:25). All connect from 127.0.0.1.
    smuggling_checks.smuggling_group(sys.modules[__name__], "[Z]", "[Z] SMTP smuggling: no smuggled command executed through blackpony at defaults, the same or safer than Postfix alone",
                    [("postfix", ("127.0.0.22", 2527)), ("blackpony [N]", B_CONTROL), ("blackpony [P]", B_PROXY)],
                    ("bob@pb.test", "carol@pb.test"),
                    lambda box, tok: count_mail("b", "pb/bob" if box == 1 else "pb/carol", tok))


def pipelining():
    # The same paths as smuggling(): B's plain smtpd straight, through the
    # control blackpony and through blackpony --proxy-protocol.
    pipelining_checks.pipelining_group(
        sys.modules[__name__], "[W]", "[W] RFC 2920 synchronization: through blackpony the same or safer than Postfix alone",
        [("postfix", ("127.0.0.22", 2527)), ("blackpony [N]", B_CONTROL), ("blackpony [P]", B_PROXY)],
        ("bob@pb.test", "carol@pb.test"),
        lambda tok: count_mail("b", "pb/bob", tok) + count_mail("b", "pb/carol", tok), "Postfix",
        skip={"h-pause": "smtpd has no greet pause (postscreen's pregreet test is not used here)"})


def sender_tests():
    """Postfix A sends through the blackpony pipe transport."""
    with Test("[S] Postfix A -> pipe -> blackpony + Postfix B: encrypted"):
        tok = token("S-ok")
        msg = message(tok, "alice@pa.test", "bob@pb.test", big=True)
        am, bm = mark("a-mailer"), mark("b-proxy")
        qid, rc, data = smtp_send(A_SUBMIT, "alice@pa.test", ["bob@pb.test"], msg)
        report(qid is not None, "[S] site A queues the message (%s)" % qid, "RCPT %s DATA %s" % (rc, data))
        st, line = postfix_status("a", qid or "-", "bob@pb.test")
        report(st == "sent" and "relay=blackpony" in line, "[S] Postfix A: status=sent relay=blackpony", line)
        info(line.split(": ", 1)[-1] if st else line)
        check_delivered("[S] delivered into bob@pb.test's Maildir byte for byte", find_mail("b", "pb/bob", tok), msg)
        sess = wait_for(lambda: session_lines(since("b-proxy", bm)), 5)
        report(bool(sess) and " suite=%s " % FS in sess[-1], "[S] site B's blackpony log: suite=%s" % FS,
               "log: %s" % sess)
        dl = wait_for(lambda: delivery_lines(since("a-mailer", am), "pb.test"), 5)
        report(bool(dl) and " suite=%s " % FS in dl[-1] and " verdict=ok " in dl[-1],
               "[S] site A's mailer log: dest=pb.test suite=%s verdict=ok" % FS, "log: %s" % dl)
        # The pin A now holds for B is B's key.
        p = subprocess.run([os.path.join(BIN, "blackpony-mailer"), "--list-peers", "--known-peers",
                            os.path.join(D, "a", "state", "known_peers")], capture_output=True, text=True)
        b_fp = read(os.path.join(D, "b", "fingerprint")).split()[0]
        report(p.returncode == 0 and any(ln.split()[:2] == ["mx.pb.test", b_fp] for ln in p.stdout.splitlines()),
               "[S] site A pinned mx.pb.test to site B's key %s" % b_fp[:20], "list-peers: %r" % p.stdout)

    with Test("[S] null sender (a bounce) through the pipe transport"):
        tok = token("S-null")
        msg = message(tok, "", "bob@pb.test")
        bm = mark("b")
        qid, rc, data = smtp_send(A_SUBMIT, "", ["bob@pb.test"], msg)
        st, line = postfix_status("a", qid or "-", "bob@pb.test")
        report(st == "sent", "[S] MAIL FROM:<> is relayed (null_sender=)", line)
        got = find_mail("b", "pb/bob", tok)
        check_delivered("[S] ... delivered byte for byte", got, msg)
        report(got is not None and got.startswith(b"Return-Path: <>\n"),
               "[S] ... with Return-Path: <> at site B (not MAILER-DAEMON)",
               "starts %r" % (got[:60] if got else None))
        report(re.search(r"from=<>", since("b", bm)) is not None, "[S] site B's Postfix logs from=<>")

    with Test("[S] one message, four recipients at three sites"):
        tok = token("S-multi")
        rcpts = ["bob@pb.test", "xavier@px.test", "dave@pc.test", "nosuch@pb.test"]
        msg = message(tok, "alice@pa.test", "bob@pb.test")
        am = mark("a-mailer")
        qid, rc, data = smtp_send(A_SUBMIT, "alice@pa.test", rcpts, msg)
        report(qid is not None, "[S] site A queues it (%s)" % qid, "RCPT %s DATA %s" % (rc, data))
        want = {"bob@pb.test": "sent", "xavier@px.test": "sent", "dave@pc.test": "sent", "nosuch@pb.test": "bounced"}
        for r, w in want.items():
            st, line = postfix_status("a", qid or "-", r)
            report(st == w, "[S] %s: status=%s" % (r, st), "%s (expected %s)" % (line, w))
            if r == "nosuch@pb.test" and st:
                info(line.split(": ", 1)[-1])
        for site, box in (("b", "pb/bob"), ("b", "px/xavier"), ("c", "pc/dave")):
            check_delivered("[S] delivered to %s byte for byte" % box, find_mail(site, box, tok), msg)
        dls = wait_for(lambda: since("a-mailer", am).count(" delivery dest=") >= 4 and since("a-mailer", am), 5) or ""
        by = {}
        for ln in dls.splitlines():
            m = re.search(r" delivery dest=(\S+) .* suite=(\S+) ", ln)
            if m:
                by.setdefault(m.group(1), set()).add(m.group(2))
        report(by.get("pb.test") == {FS} and by.get("px.test") == {FS} and by.get("pc.test") == {"plain"},
               "[S] one mailer run per recipient: pb.test and px.test %s, pc.test plain" % FS, "suites %s" % by)
        bounce = find_mail("a", "pa/alice", "nosuch@pb.test")
        report(bounce is not None and b"550" in bounce and tok.encode() in bounce,
               "[S] site A returns the refused recipient to alice@pa.test with B's 550",
               "no bounce in pa/alice" if bounce is None else "bounce lacks the 550 or the message")

    with Test("[S] 550 from B -> bounced"):
        tok = token("S-550")
        qid, rc, data = smtp_send(A_SUBMIT, "alice@pa.test", ["nosuch@pb.test"], message(tok, "alice@pa.test", "nosuch@pb.test"))
        st, line = postfix_status("a", qid or "-", "nosuch@pb.test")
        report(st == "bounced" and "550" in line, "[S] Postfix A: status=bounced with B's 550", line)
        info(line.split(": ", 1)[-1] if st else line)

    with Test("[S] 450 from B -> deferred"):
        tok = token("S-450")
        qid, rc, data = smtp_send(A_SUBMIT, "alice@pa.test", ["defer450@pb.test"], message(tok, "alice@pa.test", "defer450@pb.test"))
        st, line = postfix_status("a", qid or "-", "defer450@pb.test")
        report(st == "deferred" and "450" in line, "[S] Postfix A: status=deferred with B's 450", line)
        info(line.split(": ", 1)[-1] if st else line)
        report(count_mail("b", "pb/defer450", tok) == 0, "[S] ... and B has not stored it")


def misconfigured_transport():
    with Test("[M] a misconfigured pipe transport defers, never bounces"):
        tok = token("M-misconf")
        qid, rc, data = smtp_send(A_SUBMIT, "alice@pa.test", ["x@misconf.test"], message(tok, "alice@pa.test", "x@misconf.test"))
        st, line = postfix_status("a", qid or "-", "x@misconf.test")
        info(line.split(": ", 1)[-1] if st else line)
        report(st == "deferred", "[M] blackpony-mailer --pipe that cannot open its --log: status=deferred",
               "status=%s" % st)


def plain_tests():
    with Test("[C] Postfix A -> pipe -> plain Postfix C (no blackpony)"):
        tok = token("C-plain")
        msg = message(tok, "alice@pa.test", "dave@pc.test", big=True)
        am, cm = mark("a-mailer"), mark("c")
        qid, rc, data = smtp_send(A_SUBMIT, "alice@pa.test", ["dave@pc.test"], msg)
        st, line = postfix_status("a", qid or "-", "dave@pc.test")
        report(st == "sent" and "relay=blackpony" in line, "[C] Postfix A: status=sent relay=blackpony", line)
        check_delivered("[C] delivered into dave@pc.test's Maildir byte for byte", find_mail("c", "pc/dave", tok), msg)
        dl = wait_for(lambda: delivery_lines(since("a-mailer", am), "pc.test"), 5)
        report(bool(dl) and " suite=plain " in dl[-1] and " end=quit" in dl[-1],
               "[C] site A's mailer log: dest=pc.test suite=plain (C offers no XBLACKPONY)", "log: %s" % dl)
        if dl:
            info(dl[-1].split(" delivery ", 1)[-1])
        report("XBLACKPONY" not in since("c", cm).upper(), "[C] nothing blackpony-specific reached Postfix C")


def deferred_then_delivered():
    with Test("[R] B's blackpony down -> deferred; back -> next queue run delivers"):
        tok = token("R-retry")
        msg = message(tok, "alice@pa.test", "carol@pb.test")
        ctl("stop", "inetd-b")
        try:
            qid, rc, data = smtp_send(A_SUBMIT, "alice@pa.test", ["carol@pb.test"], msg)
            st, line = postfix_status("a", qid or "-", "carol@pb.test")
            report(st == "deferred", "[R] with nothing on B's port 25: status=deferred", line)
            info(line.split(": ", 1)[-1] if st else line)
        finally:
            ctl("start", "inetd-b")
        subprocess.run(["postqueue", "-c", os.path.join(D, "a"), "-f"], check=True, capture_output=True)
        st, line = postfix_status("a", qid or "-", "carol@pb.test", want="sent")
        report(st == "sent", "[R] after postqueue -f: status=sent", line)
        check_delivered("[R] delivered into carol@pb.test's Maildir byte for byte", find_mail("b", "pb/carol", tok), msg)
        report(count_mail("b", "pb/carol", tok) == 1, "[R] exactly once")


def forced_panic():
    """[F] The blackpony-fault transport runs a mailer built with the
    fault-injection feature that panics after the remote accepted the
    recipient (BLACKPONY_FAULT=panic-after-rcpt): the panic hook must exit
    75, so Postfix defers the message, and print nothing but its status line."""
    if "blackpony-fault" not in read(os.path.join(D, "a", "master.cf")):
        print("SKIP  [F] forced panic (E2E_FAULT=0)", flush=True)
        return
    with Test("[F] a forced panic in blackpony-mailer --pipe defers, never bounces"):
        tok = token("F-panic")
        fm, bm = mark("a-fault"), mark("b")
        qid, rc, data = smtp_send(A_SUBMIT, "alice@pa.test", ["panic@pb.test"],
                                  message(tok, "alice@pa.test", "panic@pb.test"))
        report(qid is not None, "[F] site A queues the message (%s)" % qid, "RCPT %s DATA %s" % (rc, data))
        st, line = postfix_status("a", qid or "-", "panic@pb.test")
        info(line.split(": ", 1)[-1] if st else line)
        report(st == "deferred" and "relay=blackpony-fault" in line,
               "[F] Postfix A: status=deferred relay=blackpony-fault", line)
        # pipe(8) puts all the command printed (stdout and stderr, newlines
        # as blanks) into the reason: only the hook's status line, no panic message.
        why = re.search(r"status=deferred \((.*)\)$", line or "")
        report(why is not None and why.group(1).strip() == "blackpony-mailer: internal error" and "dsn=4.3.0" in line,
               "[F] ... dsn=4.3.0, and the mailer printed only its status line",
               "reason %r" % (why.group(1) if why else None))
        flog = since("a-fault", fm)
        report("internal error (panic)" in flog and "fault injected at after-rcpt" in flog,
               "[F] the panic is in the mailer's log, after B accepted the recipient",
               "a-fault.log: %r" % flog[-400:])
        report(re.search(r"RCPT from \S+: |to=<panic@pb.test>", since("b", bm)) is None
               and count_mail("b", "pb/panic", tok) == 0,
               "[F] B did not take the message (no DATA reached it)")
        q = subprocess.run(["postqueue", "-c", os.path.join(D, "a"), "-j"], capture_output=True, text=True)
        entry = next((ln for ln in q.stdout.splitlines() if qid and '"queue_id": "%s"' % qid in ln), "")
        report('"queue_name": "deferred"' in entry and "panic@pb.test" in entry,
               "[F] postqueue -j: %s is in the deferred queue, for panic@pb.test" % qid,
               "postqueue -j: %r" % (entry or q.stdout[-400:] + q.stderr))
        bounce = find_mail("a", "pa/alice", tok, timeout=1)
        report(bounce is None, "[F] no bounce to alice@pa.test")


def load():
    """[L] 500 connections at once through xinetd and through blackpony
    --listen, each one message to B's Postfix (tests/e2e/load.py)."""
    if os.environ.get("E2E_LOAD", "1") == "0":
        print("SKIP  [L] 500 connections at once (E2E_LOAD=0)", flush=True)
        return
    n = int(os.environ.get("E2E_LOAD_N", "500"))
    maildir = os.path.join(D, "b", "mail", "pb", "load")

    def pid_of(name):
        return int(read(os.path.join(D, "run", name + ".pid")).strip())

    paths = []
    if os.path.exists(os.path.join(D, "run", "xinetd-l.cmd")):
        paths.append(("xinetd", ("127.0.0.26", 25), "xinetd-l", lambda: load_checks.xinetd_measure(pid_of("xinetd-l"), n)))
    else:
        report(False, "[L] xinetd: cannot get xinetd (apt-get download xinetd); E2E_LOAD=0 skips [L]")
    paths.append(("--listen", ("127.0.0.27", 2525), "listen-l", None))
    lines = []
    for label, addr, daemon, measure in paths:
        ctl("start", daemon)
        try:
            if measure is None:  # --listen: its RSS before any connection
                time.sleep(0.5)
                pid = pid_of(daemon)
                measure = load_checks.listen_measure(pid, n, load_checks.proc_kb(pid, "VmRSS"))
            else:
                measure = measure()
            lines += load_checks.load_group(sys.modules[__name__], "[L]", n, [(label, addr, measure)],
                                            maildir, "load@pb.test")
        finally:
            ctl("stop", daemon)
    print("load: " + "; ".join(lines), flush=True)


def records():
    """The session records went to the run's files (--record), one line per
    session or delivery, naming the suite; none to the system's default."""
    if not RECORD_DIR:
        info("the binaries have no --record: session records not checked")
        return
    with Test("[J] session records (--record)"):
        for name, want in (("a-mailer", FS), ("direct-mailer", FS), ("b-proxy", FS), ("b-xclient", FS),
                           ("b-control", None)):
            lines = read(os.path.join(RECORD_DIR, name + ".jsonl")).splitlines()
            ok = bool(lines) and all(ln.startswith("{") and ln.endswith("}") for ln in lines)
            if want:
                ok = ok and any('"suite":"%s"' % want in ln for ln in lines)
            report(ok, "[J] %s.jsonl: %d record(s)%s" % (name, len(lines), ", with %s" % want if want else ""),
                   "first: %r" % (lines[:1],))


def main():
    # E2E_ONLY=pipelining,smuggling: run only these groups, to iterate on one.
    only = [w for w in os.environ.get("E2E_ONLY", "").split(",") if w]
    for group in (lambda: backend_tests("P", B_PROXY, "pb.test", "bob@pb.test", "pb/bob", "b-proxy"),
                  lambda: backend_tests("X", B_XCLIENT, "px.test", "xavier@px.test", "px/xavier", "b-xclient"),
                  xclient_spoof, relay_control, smuggling, pipelining, sender_tests, plain_tests,
                  misconfigured_transport, deferred_then_delivered, forced_panic, load, records):
        if not only or getattr(group, "__name__", "") in only:
            group()
    if known_bugs:
        print("%d known bug(s) (XFAIL): %s" % (len(known_bugs), "; ".join(known_bugs)), flush=True)
    print("%d check(s) failed%s" % (len(failures), "" if not failures else ": " + "; ".join(failures)), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
