#!/usr/bin/env python3
"""Loopback demo of blackpony, run by scripts/demo.sh after it has built the
binaries (their paths come in BLACKPONY_BIN and BLACKPONY_MAILER_BIN).

    site A                                        site B
    "sendmail" (this script) --pipe--> blackpony-mailer --TCP--> tap --TCP--> blackpony --TCP--> SMTP sink

The SMTP sink stands in for site B's MTA, the tap records every byte between
the two sites, and this script plays sendmail: it speaks SMTP to
blackpony-mailer over its stdin/stdout exactly as a sendmail prog mailer
would. Standard library only.
"""

import os
import re
import select
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

TIMEOUT = 30  # seconds for any one step

SENDER = "alice@site-a.example"
RECIPIENT = "bob@site-b.example"
SUBJECT = "the eagle lands at midnight"
CLIENT_NAME = "site-a.example"

# The message as sendmail has it (CRLF lines, before dot-stuffing).
MESSAGE = (
    "From: Alice <" + SENDER + ">\r\n"
    "To: Bob <" + RECIPIENT + ">\r\n"
    "Subject: " + SUBJECT + "\r\n"
    "Message-ID: <demo.1@site-a.example>\r\n"
    "\r\n"
    "Bob,\r\n"
    "\r\n"
    "bring the blue umbrella.\r\n"
    ".this line starts with a dot, so it travels as '..this line'\r\n"
    ".\r\n"
    "Alice\r\n"
).encode()

# What must not be readable on the wire once encryption is on.
SECRETS = [b"Subject: " + SUBJECT.encode(), SUBJECT.encode(), b"blue umbrella",
           SENDER.encode(), RECIPIENT.encode()]


def dot_stuff(data):
    return b"".join(b"." + l if l.startswith(b".") else l for l in data.splitlines(True))


def dot_unstuff(data):
    return b"".join(l[1:] if l.startswith(b".") else l for l in data.splitlines(True))


def heading(title):
    print()
    print("== " + title + " ==")


def show(b):
    """Bytes as readable text: printable ASCII as is, the rest escaped."""
    out = []
    for c in b:
        if 32 <= c < 127:
            out.append(chr(c))
        else:
            out.append("\\x%02x" % c)
    return "".join(out)


def shorten(line, limit=72):
    if len(line) <= limit:
        return line
    return line[:limit] + "... (%d more characters)" % (len(line) - limit)


def hexdump(data, base=0, indent="    "):
    for off in range(0, len(data), 16):
        chunk = data[off:off + 16]
        hexpart = " ".join("%02x" % c for c in chunk[:8]) + "  " + " ".join("%02x" % c for c in chunk[8:])
        asc = "".join(chr(c) if 32 <= c < 127 else "." for c in chunk)
        print("%s%04x  %-49s |%s|" % (indent, base + off, hexpart, asc))


# The default suite (handshake v2, docs/PROTOCOL.md section 3B): Noise XX
# on first contact. Message 1 (site A's fresh X25519 share) rides in the
# XBLACKPONY command; after the 220 come messages 2 and 3, framed as
# type(u8) || length(u16 BE) || body (src/suite/message.rs). Records start
# with a u32 length, so 0x00.
SUITE = "NOISE-25519-CHACHAPOLY-SHA256"
NOISE_MESSAGE = 4
HANDSHAKE = {
    ("S", NOISE_MESSAGE): ("Noise XX message 2", "site B's fresh X25519 share, then its static key, host key"
                           " and certificate, encrypted"),
    ("C", NOISE_MESSAGE): ("Noise XX message 3", "site A's static key, host key and certificate, encrypted"),
}


def split_handshake(data, direction):
    """The handshake messages at the start of `data` (sent by `direction`, C
    or S), and where records begin."""
    msgs, pos = [], 0
    while pos + 3 <= len(data) and (direction, data[pos]) in HANDSHAKE:
        size = 3 + (data[pos + 1] << 8 | data[pos + 2])
        if pos + size > len(data):
            break
        msgs.append((data[pos], size))
        pos += size
    return msgs, pos


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- the sink ---

class SinkHandler(socketserver.StreamRequestHandler):
    """A minimal SMTP server: site B's MTA. Stores each message's raw DATA."""

    def reply(self, text):
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        sink = self.server
        mail_from, rcpts = None, []
        self.reply("220 mx.site-b.example ESMTP demo sink")
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            sink.log.append(line)
            verb = line.split(b" ", 1)[0].split(b":", 1)[0].strip().upper()
            if verb == b"EHLO":
                self.reply("250-mx.site-b.example hello\r\n250-PIPELINING\r\n250 8BITMIME")
            elif verb == b"HELO":
                self.reply("250 mx.site-b.example hello")
            elif verb == b"MAIL":
                mail_from, rcpts = line.rstrip(b"\r\n"), []
                self.reply("250 2.1.0 Sender ok")
            elif verb == b"RCPT":
                if mail_from is None:
                    self.reply("503 5.5.1 MAIL first")
                    continue
                rcpts.append(line.rstrip(b"\r\n"))
                self.reply("250 2.1.5 Recipient ok")
            elif verb == b"DATA":
                if not rcpts:
                    self.reply("503 5.5.1 RCPT first")
                    continue
                self.reply("354 Send the message, end with <CRLF>.<CRLF>")
                raw = bytearray()
                while True:
                    l = self.rfile.readline(65536)
                    if not l:
                        return
                    if l == b".\r\n":
                        break
                    raw += l
                sink.messages.append({"mail_from": mail_from, "rcpts": rcpts, "raw": bytes(raw)})
                mail_from, rcpts = None, []
                self.reply("250 2.0.0 Message accepted")
            elif verb in (b"RSET", b"NOOP"):
                if verb == b"RSET":
                    mail_from, rcpts = None, []
                self.reply("250 2.0.0 OK")
            elif verb == b"QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("500 5.5.2 Command not recognised")


class Sink(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        socketserver.ThreadingTCPServer.__init__(self, ("127.0.0.1", 0), SinkHandler)
        self.messages = []
        self.log = []
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


# ----------------------------------------------------------------- the tap ---

class Tap:
    """Listens on a port, connects each client to `upstream` and forwards both
    ways, recording every chunk with its direction ('C' client to server,
    'S' server to client) before passing it on."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.events = []  # (direction, bytes) in the order they were seen
        self.streams = {"C": bytearray(), "S": bytearray()}
        self.connections = 0
        self.threads = []
        self.errors = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=TIMEOUT)
                upstream.settimeout(None)
            except OSError as e:
                self.errors.append("tap: cannot connect to 127.0.0.1:%d: %s" % (self.upstream_port, e))
                client.close()
                continue
            with self.lock:
                self.connections += 1
            for src, dst, d in ((client, upstream, "C"), (upstream, client, "S")):
                t = threading.Thread(target=self._pump, args=(src, dst, d), daemon=True)
                t.start()
                self.threads.append(t)

    def _pump(self, src, dst, direction):
        sender, receiver = ("site A", "site B") if direction == "C" else ("site B", "site A")
        try:
            while True:
                try:
                    data = src.recv(65536)
                except OSError as e:
                    self.errors.append("%s reset the connection instead of closing it (%s)" % (sender, e.strerror or e))
                    break
                if not data:
                    break
                with self.lock:
                    self.events.append((direction, data))
                    self.streams[direction] += data
                try:
                    dst.sendall(data)
                except OSError as e:
                    self.errors.append("%s's end of the connection failed while %d bytes from %s were passed on (%s)"
                                       % (receiver, len(data), sender, e.strerror or e))
                    break
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def wait(self, timeout):
        deadline = time.time() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.time()))

    def close(self):
        self.sock.close()


# ------------------------------------------------------------ the "sendmail" ---

class MailerFailed(Exception):
    pass


class ReplyReader:
    """Reads SMTP replies from blackpony-mailer's stdout, with a timeout."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = b""

    def line(self):
        deadline = time.time() + TIMEOUT
        while b"\n" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                raise MailerFailed("no reply from blackpony-mailer within %d seconds" % TIMEOUT)
            r, _, _ = select.select([self.fd], [], [], left)
            if not r:
                continue
            chunk = os.read(self.fd, 4096)
            if not chunk:
                raise MailerFailed("blackpony-mailer closed its stdout"
                                   + (" (unanswered: %r)" % self.buf if self.buf else ""))
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def reply(self):
        """One reply, multi-line aware: returns (code, [lines])."""
        lines = []
        while True:
            l = self.line()
            lines.append(l)
            print("S: " + show(l.rstrip(b"\r\n")))
            if len(l) < 4 or l[3:4] != b"-":
                break
        try:
            code = int(lines[-1][:3])
        except ValueError:
            raise MailerFailed("not an SMTP reply: %r" % lines[-1])
        return code, lines


class Sendmail:
    """Plays sendmail's side of the prog mailer dialogue."""

    def __init__(self, proc):
        self.proc = proc
        self.replies = ReplyReader(proc.stdout.fileno())

    def send(self, text, show_lines=None):
        for l in show_lines if show_lines is not None else text.splitlines():
            print("C: " + shorten(show(l)))
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def expect(self, what, want):
        return self.expect_all([(what, want)])[0]

    def expect_all(self, wants):
        """Read one reply per (what, code), as sendmail reads the replies to
        pipelined commands: all of them, then judge."""
        got = [self.replies.reply() for _ in wants]
        for (what, want), (code, lines) in zip(wants, got):
            if code != want:
                raise MailerFailed("%s: expected %d, got %s" % (what, want, show(b"".join(lines).rstrip(b"\r\n"))))
        return [lines for _, lines in got]

    def deliver(self):
        self.expect("greeting", 220)
        self.send(("EHLO %s\r\n" % CLIENT_NAME).encode())
        ehlo = self.expect("EHLO", 250)
        pipelining = any(l[4:].strip().upper() == b"PIPELINING" for l in ehlo)
        mail = ("MAIL From:<%s>\r\n" % SENDER).encode()
        rcpt = ("RCPT To:<%s>\r\n" % RECIPIENT).encode()
        if pipelining:
            # sendmail sends MAIL and the RCPTs in one go, then reads the replies.
            self.send(mail + rcpt)
            self.expect_all([("MAIL", 250), ("RCPT", 250)])
        else:
            self.send(mail)
            self.expect("MAIL", 250)
            self.send(rcpt)
            self.expect("RCPT", 250)
        self.send(b"DATA\r\n")
        self.expect("DATA", 354)
        self.send(dot_stuff(MESSAGE) + b".\r\n")
        self.expect("end of data", 250)
        self.send(b"QUIT\r\n")
        self.expect("QUIT", 221)

    def quit_after_error(self):
        """Like sendmail after a failure: QUIT, and read until the 221 or the end."""
        try:
            self.proc.stdin.write(b"QUIT\r\n")
            self.proc.stdin.flush()
            print("C: QUIT")
            for _ in range(5):
                if self.replies.reply()[0] == 221:
                    break
        except (OSError, MailerFailed, ValueError):
            pass


# ------------------------------------------------------------------ the demo ---

def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def wait_listening(proc, port, log_path):
    """Wait until blackpony --listen accepts connections, without connecting
    (a probe connection would be a session of its own in the log)."""
    deadline = time.time() + TIMEOUT
    hexport = ":%04X" % port
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        if "listening on" in read_text(log_path):
            return True
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for row in read_text(table).splitlines()[1:]:
                f = row.split()
                if len(f) > 3 and f[1].endswith(hexport) and f[3] == "0A":
                    return True
        time.sleep(0.05)
    return False


def plain_end_client(stream):
    """Where the client's plain text ends: after the XBLACKPONY command line."""
    i = stream.find(b"XBLACKPONY")
    if i < 0:
        return None
    j = stream.find(b"\n", i)
    return None if j < 0 else j + 1


def plain_end_server(stream):
    """Where the server's plain text ends: after the 220 that answers
    XBLACKPONY (the first 220 reply after the EHLO reply)."""
    pos, seen_ehlo = 0, False
    while True:
        j = stream.find(b"\n", pos)
        if j < 0:
            return None
        line = stream[pos:j + 1]
        pos = j + 1
        if line.startswith(b"250"):
            seen_ehlo = True
        elif seen_ehlo and line.startswith(b"220 "):
            return pos


def print_wire(tap, ends):
    """The plain part in the order it crossed the wire, one line per line."""
    offset = {"C": 0, "S": 0}
    partial = {"C": b"", "S": b""}
    for d, data in tap.events:
        start = offset[d]
        offset[d] += len(data)
        end = ends[d] if ends[d] is not None else 0
        if start >= end:
            continue
        partial[d] += data[:end - start]
        while b"\n" in partial[d]:
            line, partial[d] = partial[d].split(b"\n", 1)
            text = show(line.rstrip(b"\r"))
            if text.upper().startswith("XBLACKPONY ") and len(text) > 72:
                # The argument is site A's ClientHello (nonce and public key), base64.
                text = "%s... [%d base64 chars: ClientHello]" % (text[:40], len(text.split()[-1]))
            else:
                text = shorten(text)
            print("%s: %s" % (d, text))


def main():
    keep = "--keep" in sys.argv[1:]
    unknown = [a for a in sys.argv[1:] if a != "--keep"]
    if unknown:
        print("usage: scripts/demo.sh [--keep]", file=sys.stderr)
        return 2
    blackpony = os.environ.get("BLACKPONY_BIN", "target/release/blackpony")
    mailer_bin = os.environ.get("BLACKPONY_MAILER_BIN", "target/release/blackpony-mailer")
    for b in (blackpony, mailer_bin):
        if not os.access(b, os.X_OK):
            print("demo: %s not found; run scripts/demo.sh (it builds first)" % b, file=sys.stderr)
            return 1

    # Clean up (processes, work directory) on SIGTERM and SIGHUP too.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    work = tempfile.mkdtemp(prefix="blackpony-demo.")
    procs = []
    try:
        return run(work, blackpony, mailer_bin, procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if keep:
            print("\n(work directory kept: %s)" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(work, blackpony, mailer_bin, procs):
    path = lambda name: os.path.join(work, name)
    results = []

    def check(ok, text, detail=None):
        results.append(ok)
        print("%s  %s" % ("PASS" if ok else "FAIL", text))
        if detail and not ok:
            for l in detail.rstrip("\n").splitlines():
                print("      " + l)

    print()
    print("Site A sends one message to site B, over loopback. At site A, this script")
    print("plays sendmail and runs blackpony-mailer; at site B, blackpony sits in")
    print("front of a small SMTP sink (standing in for the MTA). A tap between the")
    print("two sites records every byte.")
    print("work directory: %s" % work)

    heading("Host keys (blackpony --generate-key)")
    fps = {}
    for site, name, role in (("A", "a.key", "sender, used by blackpony-mailer"),
                             ("B", "b.key", "receiver, used by blackpony")):
        r = subprocess.run([blackpony, "--generate-key", "--key", path(name)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        if r.returncode != 0:
            print("demo: key generation failed (exit %d): %s" % (r.returncode, r.stderr.decode().strip()))
            return 1
        fps[site] = r.stdout.decode().split()[0] if r.stdout.split() else ""
        print("site %s, %s (%s):" % (site, name, role))
        print("  " + r.stdout.decode().strip().replace(work + os.sep, ""))

    heading("Site B")
    sink = Sink()
    print("SMTP sink (site B's MTA)      127.0.0.1:%d" % sink.port)
    p2 = free_port()
    inbound_log = path("inbound.log")
    cmd = [blackpony, "--listen", "127.0.0.1:%d" % p2, "--backend", "127.0.0.1:%d" % sink.port,
           "--key", path("b.key"), "--log", inbound_log, "--record", path("inbound.jsonl")]
    inbound = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(inbound)
    if not wait_listening(inbound, p2, inbound_log):
        out = b""
        if inbound.poll() is not None:
            out = inbound.stdout.read() + inbound.stderr.read()
        print("demo: blackpony did not start listening on 127.0.0.1:%d" % p2)
        print(show(out) + read_text(inbound_log))
        return 1
    print("blackpony                     127.0.0.1:%d" % p2)
    print("  $ blackpony --listen 127.0.0.1:%d --backend 127.0.0.1:%d --key b.key --log inbound.log"
          % (p2, sink.port))
    tap = Tap(p2)
    print("tap (records the wire)        127.0.0.1:%d -> 127.0.0.1:%d" % (tap.port, p2))

    heading("What sendmail saw (blackpony-mailer's stdin/stdout)")
    mailer_log = path("mailer.log")
    known_peers = path("known_peers")
    print("$ blackpony-mailer --port %d --key a.key --known-peers known_peers --log mailer.log '[127.0.0.1]'"
          % tap.port)
    mailer = subprocess.Popen([mailer_bin, "--port", str(tap.port), "--key", path("a.key"),
                               "--known-peers", known_peers, "--log", mailer_log, "--record", path("mailer.jsonl"), "[127.0.0.1]"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(mailer)
    sm = Sendmail(mailer)
    dialogue_error = None
    try:
        sm.deliver()
    except (MailerFailed, OSError) as e:
        dialogue_error = str(e)
        print("!! " + dialogue_error)
        sm.quit_after_error()
    try:
        mailer.stdin.close()
    except OSError:
        pass
    try:
        mailer_rc = mailer.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        mailer.kill()
        mailer_rc = mailer.wait()
        print("!! blackpony-mailer did not exit after QUIT; killed")
    mailer_err = mailer.stderr.read()
    if mailer_err:
        print("blackpony-mailer wrote to stderr: " + show(mailer_err))
    print("(blackpony-mailer exited with status %d)" % mailer_rc)

    tap.wait(10)
    # blackpony writes its session line once the connection is over.
    deadline = time.time() + 10
    while time.time() < deadline and "session " not in read_text(inbound_log):
        time.sleep(0.05)
    inbound.terminate()
    inbound.wait(5)
    sink.shutdown()
    tap.close()

    heading("What the wire between the sites looked like")
    with tap.lock:
        c_stream, s_stream = bytes(tap.streams["C"]), bytes(tap.streams["S"])
    ends = {"C": plain_end_client(c_stream), "S": plain_end_server(s_stream)}
    switched = ends["C"] is not None and ends["S"] is not None
    print("Plain text, up to the switch to encryption (C: site A, S: site B):")
    print_wire(tap, {"C": ends["C"] if ends["C"] is not None else len(c_stream),
                     "S": ends["S"] if ends["S"] is not None else len(s_stream)})
    for d, name, stream in (("C", "site A -> site B", c_stream), ("S", "site B -> site A", s_stream)):
        end = ends[d]
        if end is None:
            print("\n%s: no switch to encryption found" % name)
            continue
        rest = stream[end:]
        print("\nThen %s: %d bytes of binary, no more text." % (name, len(rest)))
        msgs, records = split_handshake(rest, d)
        for kind, size in msgs:
            name_, what = HANDSHAKE[(d, kind)]
            print("  %-26s %4d bytes  %s" % ("handshake " + name_, size, what))
        shown = rest[records:records + 256]
        print("  %-26s %4d bytes  the SMTP dialogue: records of a 4-byte length," % ("encrypted records", len(rest) - records))
        print("  %-26s %4s        ChaCha20-Poly1305 ciphertext and its 16-byte tag" % ("", ""))
        print("  The first %d bytes of the records:" % len(shown))
        hexdump(shown, base=records)
    print()
    print("Total on the wire: site A -> site B %d bytes, site B -> site A %d bytes (%d TCP connection%s)."
          % (len(c_stream), len(s_stream), tap.connections, "" if tap.connections == 1 else "s"))
    for e in tap.errors:
        print("(the tap saw: " + e + ")")

    heading("What site B's MTA received")
    for m in sink.messages:
        print(show(m["mail_from"]))
        for r in m["rcpts"]:
            print(show(r))
        print("DATA:")
        for l in m["raw"].splitlines():
            print("  | " + show(l))
    if not sink.messages:
        print("(nothing)")

    heading("Known peers at site A (%s)" % os.path.basename(known_peers))
    peers_text = read_text(known_peers)
    print(peers_text.rstrip("\n") if peers_text.strip() else "(empty or missing)")

    heading("Log lines")
    inbound_lines = [l for l in read_text(inbound_log).splitlines() if "session " in l]
    mailer_lines = [l for l in read_text(mailer_log).splitlines() if "delivery " in l]
    print("inbound.log (site B):")
    for l in inbound_lines or ["(no 'session ' line)"]:
        print("  " + l)
    print("mailer.log (site A):")
    for l in mailer_lines or ["(no 'delivery ' line)"]:
        print("  " + l)

    heading("Checks")
    check(dialogue_error is None and mailer_rc == 0,
          "sendmail's dialogue: 220, EHLO 250, MAIL/RCPT 250, DATA 354, 250, QUIT 221; mailer exit 0",
          (dialogue_error or "") + "\nblackpony-mailer exit status %d\nmailer.log:\n%s" % (mailer_rc, read_text(mailer_log)))
    got = sink.messages[0]["raw"] if len(sink.messages) == 1 else None
    check(got is not None and dot_unstuff(got) == MESSAGE,
          "site B's MTA received the message byte for byte (%d bytes)" % len(MESSAGE),
          "messages received: %d\nsent:     %r\nreceived: %r"
          % (len(sink.messages), MESSAGE, dot_unstuff(got) if got is not None else None))
    env_ok = (got is not None and sink.messages[0]["mail_from"] == b"MAIL From:<" + SENDER.encode() + b">"
              and sink.messages[0]["rcpts"] == [b"RCPT To:<" + RECIPIENT.encode() + b">"])
    check(env_ok, "site B's MTA got the envelope MAIL From:<%s> RCPT To:<%s>" % (SENDER, RECIPIENT),
          "\n".join(show(l.rstrip(b"\r\n")) for l in sink.log))
    check(switched, "the sites switched to encryption (XBLACKPONY, then 220)",
          "client stream starts: %r\nserver stream starts: %r" % (c_stream[:300], s_stream[:300]))
    after = (c_stream[ends["C"]:] if ends["C"] is not None else c_stream) + b"\0" + \
            (s_stream[ends["S"]:] if ends["S"] is not None else s_stream)
    leaked = [s.decode() for s in SECRETS if s.lower() in after.lower()]
    check(switched and not leaked,
          "after the 220 nothing readable: no subject, no body, no envelope addresses on the wire",
          "found: %s" % ", ".join(leaked) if leaked else "no encrypted part to search")
    before = c_stream[:ends["C"] or 0] + s_stream[:ends["S"] or 0]
    leaked_before = [s.decode() for s in SECRETS if s.lower() in before.lower()]
    check(switched and not leaked_before, "the plain part before the switch carries none of them either",
          "found: %s" % ", ".join(leaked_before) if leaked_before else "no switch to encryption")
    pinned = [l for l in peers_text.splitlines() if fps["B"] and fps["B"] in l]
    check(bool(pinned), "known_peers has a pin of site B's key %s" % fps["B"],
          "known_peers:\n" + (peers_text or "(empty or missing)"))
    check(any("127.0.0.1" in l for l in pinned), "the pin names the remote ([127.0.0.1])",
          "pin lines: %r" % pinned)
    command = re.search(rb"XBLACKPONY (\S+) (XX|IK) ", c_stream)
    check(command is not None and command.group(1).decode() == SUITE and command.group(2) == b"XX",
          "site A asked for the default suite: XBLACKPONY %s XX (first contact: Noise XX)" % SUITE,
          "client stream starts: %r" % c_stream[:300])
    check(("220 2.0.0 Go ahead with %s\r\n" % SUITE).encode() in s_stream,
          "site B answered 220 2.0.0 Go ahead with %s" % SUITE, "server stream starts: %r" % s_stream[:300])
    check(any("suite=%s" % SUITE in l for l in inbound_lines),
          "inbound.log: session ... suite=%s" % SUITE, read_text(inbound_log))
    check(any("suite=%s" % SUITE in l for l in mailer_lines),
          "mailer.log: delivery ... suite=%s" % SUITE, read_text(mailer_log))
    check(any("peer=" + fps["B"] in l for l in mailer_lines) and any("peer=" + fps["A"] in l for l in inbound_lines),
          "each side logged the other's key (mailer: site B's, blackpony: site A's)",
          "site A %s\nsite B %s" % (fps["A"], fps["B"]))

    print()
    failed = results.count(False)
    if failed:
        print("FAILED: %d of %d checks. scripts/demo.sh --keep keeps the keys, logs and known_peers." % (failed, len(results)))
        return 1
    print("All %d checks passed: the message went from site A to site B encrypted." % len(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
