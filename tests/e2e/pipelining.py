"""RFC 2920 synchronization checks shared by the sendmail and Postfix
end-to-end runs (issue 16): clients that do not wait where RFC 2920 says a
group of commands ends (after EHLO, HELO, DATA, the end of data, BDAT LAST,
NOOP, QUIT, and before the greeting), sent the same bytes straight to the
MTA and through blackpony in front of it. Every message carries its own
marker, so deliveries are counted per message. Through blackpony the
outcome must be the MTA alone's or safer: the messages delivered through
blackpony are a subset of those the MTA alone delivered, never one more.
The control (legitimate RFC 2920 pipelining of MAIL, RCPT, RCPT, DATA) must
be delivered both ways: the counting works and pipelining still passes."""

import re
import time

from smuggling import RawSmtp

SENDER = "pipeliner@pipelining.test"


class Step:
    """One write of the client: DATA (bytes), then up to N replies read.
    WHEN: send only if the last reply so far had this code (the 354 a
    conforming client waits for before the body). PRE: sent before the
    greeting is read (talk before the greeting); the greeting is then one
    of the N replies."""

    def __init__(self, data, n, when=None, pre=False, label=None):
        self.data, self.n, self.when, self.pre = data, n, when, pre
        self.label = label or data.split(b"\r\n", 1)[0].decode("ascii", "replace")


def body(tok):
    """A message with the marker TOK and its end of data."""
    return ("Subject: pipelining %s\r\n\r\nbody %s\r\n" % (tok, tok)).encode()


def envelope(rcpts, data=True):
    cmds = ["MAIL FROM:<%s>" % SENDER] + ["RCPT TO:<%s>" % r for r in rcpts] + (["DATA"] if data else [])
    return "".join(c + "\r\n" for c in cmds).encode()


def case_steps(name, toks, rcpt, rcpt2):
    """The client's writes for case NAME; TOKS are the markers of its messages."""
    t1, t2 = toks
    ehlo = b"EHLO pipeliner.e2e.test\r\n"
    lock_step = [Step(ehlo, 1), Step(("MAIL FROM:<%s>\r\n" % SENDER).encode(), 1),
                 Step(("RCPT TO:<%s>\r\n" % rcpt).encode(), 1), Step(b"DATA\r\n", 1)]
    if name == "a":  # a second transaction right behind the end of data
        return lock_step + [Step(body(t1) + b".\r\n" + envelope([rcpt]), 4, when=354,
                                 label="body m1 . MAIL RCPT DATA"),
                            Step(body(t2) + b".\r\n", 1, when=354, label="body m2 .")]
    if name == "a2":  # the same with the second body too: all in one write
        return lock_step + [Step(body(t1) + b".\r\n" + envelope([rcpt]) + body(t2) + b".\r\n", 5, when=354,
                                 label="body m1 . MAIL RCPT DATA body m2 .")]
    if name == "b":  # the body right behind DATA, before the 354
        return lock_step[:3] + [Step(b"DATA\r\n" + body(t1) + b".\r\n", 2, label="DATA body m1 .")]
    if name in ("c", "d", "f"):  # MAIL RCPT DATA behind EHLO, NOOP (after the EHLO reply) or HELO
        first = {"c": ehlo, "d": b"NOOP\r\n", "f": b"HELO pipeliner.e2e.test\r\n"}[name]
        verb = first.split(b"\r\n")[0].split(b" ")[0].decode()
        return ([Step(ehlo, 1)] if name == "d" else []) + [
            Step(first + envelope([rcpt]), 4, label=verb + " MAIL RCPT DATA"),
            Step(body(t1) + b".\r\n", 1, when=354, label="body m1 .")]
    if name == "e":  # a transaction behind QUIT
        return [Step(ehlo, 1), Step(b"QUIT\r\n" + envelope([rcpt]) + body(t1) + b".\r\n", 4,
                                    label="QUIT MAIL RCPT DATA body m1 .")]
    if name == "g":  # a second transaction right behind BDAT LAST
        chunk = body(t1)
        return lock_step[:3] + [Step(b"BDAT %d LAST\r\n" % len(chunk) + chunk + envelope([rcpt]), 4,
                                     label="BDAT LAST m1 MAIL RCPT DATA"),
                                Step(body(t2) + b".\r\n", 1, when=354, label="body m2 .")]
    if name in ("h", "h-pause"):  # talk before the greeting
        return [Step(ehlo + envelope([rcpt]), 5, pre=True, label="(before 220) EHLO MAIL RCPT DATA"),
                Step(body(t1) + b".\r\n", 1, when=354, label="body m1 .")]
    if name == "i":  # the control: legitimate RFC 2920 pipelining
        return [Step(ehlo, 1), Step(envelope([rcpt, rcpt2]), 4, label="MAIL RCPT RCPT DATA"),
                Step(body(t1) + b".\r\n", 1, when=354, label="body m1 .")]
    raise ValueError(name)


CASES = (
    # (name, what, messages)
    ("a", "second transaction right behind the end-of-data dot", 2),
    ("a2", "the same with the second body too, before its 354", 2),
    ("b", "body right behind DATA, before the 354", 1),
    ("c", "MAIL RCPT DATA in one write with EHLO", 1),
    ("d", "MAIL RCPT DATA behind NOOP", 1),
    ("e", "MAIL RCPT DATA and a body behind QUIT", 1),
    ("f", "MAIL RCPT DATA in one write with HELO", 1),
    ("g", "second transaction right behind BDAT LAST", 2),
    ("h", "EHLO MAIL RCPT DATA before the greeting", 1),
    ("h-pause", "the same, MTA with greet_pause for the client", 1),
    ("i", "control: MAIL RCPT RCPT DATA after the EHLO reply (RFC 2920)", 1),
)


def run_session(server, source, steps):
    """Send STEPS; returns (replies [(code, text)], events [str]) where the
    events say what was sent, skipped and whether the server closed."""
    c = RawSmtp(server, source, timeout=30.0)
    replies, events = [], []
    try:
        if not (steps and steps[0].pre):
            r = c.reply()
            if r is None:
                return replies, ["no greeting"]
            replies.append(r)
        for st in steps:
            if st.when is not None and (not replies or replies[-1][0] != st.when):
                events.append("(not sent: %s)" % st.label)
                continue
            if c.closed:
                events.append("(closed before: %s)" % st.label)
                break
            try:
                c.s.sendall(st.data)
            except OSError as e:
                events.append("(send failed: %s: %s)" % (st.label, e))
                break
            events.append(st.label)
            # The first reply may take a while (a delivery); then each
            # pipelined reply follows at once, or not at all.
            # After the replies expected, a pipelined write (or the last
            # one) waits a moment for more: a refusal may follow them.
            grace = 0.7 if st.n > 1 or st is steps[-1] else None
            got = 0
            r = c.reply(timeout=30.0)
            while r is not None:
                replies.append(r)
                got += 1
                if got >= st.n and grace is None:
                    break
                r = c.reply(timeout=10.0 if got < st.n else grace)
        if c.closed:
            events.append("closed by the server")
        else:
            try:
                c.s.sendall(b"QUIT\r\n")
                c.reply(timeout=5.0)
            except OSError:
                pass
        return replies, events
    finally:
        c.close()


ACCEPTED = re.compile(r"^250[ -]2\.0\.0 .*(accepted|queued)", re.I)


def accepted(replies):
    return sum(1 for code, text in replies if code == 250 and ACCEPTED.search(text))


def show(replies):
    """Codes in order; the text of refusals (4xx, 5xx) in brackets."""
    out = []
    for code, text in replies:
        first = text.splitlines()[-1][4:] if code >= 400 else ""
        out.append("%d%s" % (code, "(%s)" % first[:48] if first else ""))
    return " ".join(out) or "(none)"


def wait_delivered(toks, count, want, wait):
    """Wait up to WAIT seconds until WANT markers of TOKS are delivered."""
    deadline = time.time() + wait
    while sum(1 for t in toks if count(t)) < want and time.time() < deadline:
        time.sleep(0.05)


def marks(toks, count):
    """Which messages of TOKS were delivered: {"1", "2"} for m1, m2."""
    return {t.rsplit("-m", 1)[1] for t in toks if count(t)}


def pipelining_group(run, tag, title, paths, rcpts, count, mta, skip=None, pause=None):
    """For each case, the same bytes to every server of PATHS [(label,
    (addr, port))]; the first is the MTA alone (named MTA), the others
    blackpony in front of it. RCPTS: two local recipients; COUNT(tok): how
    many delivered files hold the marker TOK. SKIP: {case: why}. PAUSE:
    the client address the MTA pauses its greeting for (greet_pause), used
    for the h-pause case, else that case is skipped. RUN is the calling
    run.py module (its Test, report, info and RUN_ID). Every case's
    outcome is reported; the blackpony paths must deliver a subset of what
    the MTA alone delivered (and accept no more), the control everything."""
    skip = dict(skip or {})
    if pause is None:
        skip.setdefault("h-pause", "no greet_pause configured")
    table = []  # (case, what, [session dict per path] or None, why skipped)
    with run.Test(title):
        for name, what, nmsg in CASES:
            if name in skip:
                table.append((name, what, None, skip[name]))
                continue
            source = pause if name == "h-pause" else "127.0.0.1"
            got = []
            for label, server in paths:
                slug = re.sub(r"[^a-z0-9]+", "", label.lower())
                toks = ["pipe-%s-%s-%s-m%d" % (run.RUN_ID, name, slug, k + 1) for k in range(nmsg)]
                ses = {"label": label, "toks": toks, "replies": [], "events": [], "accepted": 0, "skipped": None}
                got.append(ses)
                if name == "g":
                    # BDAT only where the EHLO reply offers CHUNKING.
                    probe, _ = run_session(server, source, [Step(b"EHLO pipeliner.e2e.test\r\n", 1)])
                    if not any(code == 250 and re.search(r"^250[ -]CHUNKING\b", text, re.M | re.I)
                               for code, text in probe):
                        ses["skipped"] = "the EHLO reply lacks CHUNKING"
                        continue
                steps = case_steps(name, toks + [None] * (2 - nmsg), rcpts[0], rcpts[1])
                ses["replies"], ses["events"] = run_session(server, source, steps)
                ses["accepted"] = accepted(ses["replies"])
                # The messages the client saw accepted must show up.
                wait_delivered(toks, count, ses["accepted"], 20.0)
            table.append((name, what, got, None))
        # Then, once for all: a moment for deliveries the client did not
        # see accepted (through blackpony: up to as many as the MTA alone).
        deadline = time.time() + 2.0
        while time.time() < deadline and any(
                len(marks(ses["toks"], count)) < len(marks(got[0]["toks"], count))
                for _, _, got, _ in table if got for ses in got[1:] if not ses["skipped"]):
            time.sleep(0.1)
        time.sleep(0.3)
        for name, what, got, why in table:
            if got is None:
                run.info("%s %s: skipped: %s" % (tag, name, why))
                continue
            for ses in got:
                ses["marks"] = marks(ses["toks"], count)
                run.info("%s %s via %s: %s" % (tag, name, ses["label"], "skipped: " + ses["skipped"] if ses["skipped"]
                         else "sent %s; replies %s; %d accepted; delivered %s"
                         % (" | ".join(ses["events"]), show(ses["replies"]), ses["accepted"], fmt(ses["marks"]))))
            alone = got[0]
            if name == "i":
                for ses in got:
                    files = count(ses["toks"][0])
                    run.report(ses["marks"] == {"1"} and files == 2 and ses["accepted"] == 1,
                               "%s i control: legitimate RFC 2920 pipelining (MAIL RCPT RCPT DATA) delivered via %s "
                               "to both recipients" % (tag, ses["label"]),
                               "replies %s; %d accepted; %d files with the marker"
                               % (show(ses["replies"]), ses["accepted"], files))
                continue
            for ses in got[1:]:
                if ses["skipped"]:
                    continue
                a, b = alone["marks"], ses["marks"]
                run.report(b <= a and ses["accepted"] <= max(alone["accepted"], len(a)),
                           "%s %s %s: through %s %s %s alone (delivered: %s alone %s, through %s %s)"
                           % (tag, name, what, ses["label"], "the same as" if a == b else
                              ("safer than" if b <= a else "LESS SAFE than"), mta, mta,
                              fmt(a), ses["label"], fmt(b)),
                           "%s alone: replies %s; through %s: replies %s"
                           % (mta, show(alone["replies"]), ses["label"], show(ses["replies"])))
    print_table(run, tag, table)
    return table


def fmt(idx):
    return "{%s}" % ",".join("m" + i for i in sorted(idx))


def print_table(run, tag, table):
    """The per-case comparison, for the reader of the run's output."""
    run.info("%s RFC 2920 synchronization: what was delivered (and the client's replies)" % tag)
    for name, what, got, why in table:
        if got is None:
            run.info("  %-7s %-58s skipped: %s" % (name, what, why))
            continue
        run.info("  %-7s %s" % (name, what))
        for ses in got:
            run.info("          %-14s %s" % (ses["label"], "(skipped: %s)" % ses["skipped"] if ses["skipped"]
                                              else "%-10s %s" % (fmt(ses["marks"]), show(ses["replies"]))))
