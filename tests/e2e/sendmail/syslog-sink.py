#!/usr/bin/python3
"""Minimal /dev/log for machines without a syslog daemon: appends every
datagram as one line to OUTFILE. Started only when /dev/log is missing, and
the socket is removed again by ctl.sh (only if it is still this one)."""
import os
import socket
import sys

path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
with open(out, "ab", buffering=0) as f:
    while True:
        f.write(s.recv(65536).rstrip(b"\n\0") + b"\n")
