#!/usr/bin/python3
"""Inclusive instruction counts per function symbol from a callgrind output file.

callgrind_annotate splits a function's cost by the source file of inlined
code; here the key is the symbol (fn=) alone, so a function's inclusive
count is its own cost plus the inclusive cost of every call it makes.
(No function of interest here is recursive, so there is no double count.)

usage: cgincl.py FILE [REGEX ...]   prints "inclusive self symbol" for matching symbols
as a module: load(path) -> (total, {symbol: (inclusive, self)})
"""
import re
import sys


def load(path):
    names = {}

    def name(spec):
        m = re.match(r"\((\d+)\)(?: (.*))?", spec)
        if not m:
            return spec
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), spec)

    self_cost, call_cost = {}, {}
    cur = None
    in_call = False
    total = 0
    ev_idx = 0
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("events:"):
                ev_idx = line.split()[1:].index("Ir")
            elif line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1 + ev_idx]))
            elif line.startswith("fn="):
                cur = name(line[3:].strip())
                in_call = False
            elif line.startswith("cfn="):
                name(line[4:].strip())
            elif line.startswith("calls="):
                in_call = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                # one position column (line numbers), then the events
                ir = int(parts[1 + ev_idx]) if len(parts) > 1 + ev_idx else 0
                if in_call:
                    call_cost[cur] = call_cost.get(cur, 0) + ir
                    in_call = False
                else:
                    self_cost[cur] = self_cost.get(cur, 0) + ir
    out = {}
    for fn in set(self_cost) | set(call_cost):
        s = self_cost.get(fn, 0)
        out[fn] = (s + call_cost.get(fn, 0), s)
    return total, out


if __name__ == "__main__":
    total, fns = load(sys.argv[1])
    print(f"total {total}")
    pats = [re.compile(p) for p in sys.argv[2:]] or [re.compile(".")]
    rows = [(v[0], v[1], k) for k, v in fns.items() if any(p.search(k) for p in pats)]
    for incl, s, k in sorted(rows, reverse=True)[:60]:
        print(f"{incl:>14,} {s:>14,}  {k[:150]}")
