#!/usr/bin/env python3
"""Legitimate RFC 2920 pipelining through blackpony: messages/s on one
connection, the client sending each transaction as one group (MAIL, RCPT,
RCPT, DATA in one write, then the body, the dot and the next group's
commands never before their replies), straight to bpsink and through
`blackpony --listen` in front of it, in the same run; plus the same client
in lock-step (one command, one reply) through blackpony. Not part of CI.

usage: scripts/bench/pipelining.py [MESSAGES] [ROUNDS]
With BLACKPONY_COMPARE=PATH, a second blackpony (e.g. a build from before a
change) runs beside the first, in the same rounds: an A/B of the change.
Needs target/release/blackpony and scripts/bench/target/release/bpsink
(cargo build --release; cd scripts/bench && cargo build --release).
"""
import os, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
BODY = b"Subject: pipelining\r\n\r\n" + b"x" * 2000 + b"\r\n"


def wait_port(port):
    t = time.time()
    while time.time() - t < 10:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit("port %d did not come up" % port)


def replies(f, n):
    codes = []
    for _ in range(n):
        while True:
            line = f.readline()
            if not line:
                sys.exit("connection closed")
            if line[3:4] != b"-":
                codes.append(int(line[:3]))
                break
    return codes


def session(port, pipelined):
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    replies(f, 1)
    s.sendall(b"EHLO bench.test\r\n")
    replies(f, 1)
    group = [b"MAIL FROM:<a@x.test>\r\n", b"RCPT TO:<b@y.test>\r\n", b"RCPT TO:<c@y.test>\r\n", b"DATA\r\n"]
    t = time.perf_counter()
    for _ in range(N):
        if pipelined:
            s.sendall(b"".join(group))
            codes = replies(f, 4)
        else:
            codes = []
            for cmd in group:
                s.sendall(cmd)
                codes += replies(f, 1)
        s.sendall(BODY + b".\r\n")
        codes += replies(f, 1)
        if codes != [250, 250, 250, 354, 250]:
            sys.exit("unexpected replies %r" % codes)
    elapsed = time.perf_counter() - t
    s.sendall(b"QUIT\r\n")
    replies(f, 1)
    s.close()
    return N / elapsed


def main():
    sink_port, bp_port = 46025, 46026
    log = tempfile.mkdtemp(prefix="bp-pipelining-")
    sink = subprocess.Popen([ROOT + "/scripts/bench/target/release/bpsink", "--listen", "127.0.0.1:%d" % sink_port])
    bp = subprocess.Popen([ROOT + "/target/release/blackpony", "--listen", "127.0.0.1:%d" % bp_port,
                           "--backend", "127.0.0.1:%d" % sink_port, "--log", log + "/bp.log",
                           "--record", log + "/bp.jsonl"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    other = os.environ.get("BLACKPONY_COMPARE")
    cmp = other and subprocess.Popen([other, "--listen", "127.0.0.1:%d" % (bp_port + 1),
                                      "--backend", "127.0.0.1:%d" % sink_port, "--log", log + "/cmp.log"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(sink_port)
        wait_port(bp_port)
        runs = {"sink direct, pipelined": [], "blackpony, pipelined": [], "blackpony, lock-step": []}
        if cmp:
            wait_port(bp_port + 1)
            runs["compare build, pipelined"] = []
        for _ in range(ROUNDS):  # interleaved, so drift hits all alike
            runs["sink direct, pipelined"].append(session(sink_port, True))
            runs["blackpony, pipelined"].append(session(bp_port, True))
            runs["blackpony, lock-step"].append(session(bp_port, False))
            if cmp:
                runs["compare build, pipelined"].append(session(bp_port + 1, True))
        base = statistics.median(runs["sink direct, pipelined"])
        print("%d messages per connection, %d rounds, medians:" % (N, ROUNDS))
        for name, v in runs.items():
            m = statistics.median(v)
            print("  %-24s %8.0f msg/s  %.2fx direct" % (name, m, m / base))
    finally:
        bp.terminate()
        sink.terminate()
        if cmp:
            cmp.terminate()
            cmp.wait()
        bp.wait()
        sink.wait()


if __name__ == "__main__":
    main()
