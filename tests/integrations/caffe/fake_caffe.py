"""A stand-in for the ``caffe`` binary (not installable here): replays a log.

    python fake_caffe.py train -solver S --log LOG [--exit N | --abort] [--pause-at TEXT]
        [--touch-snapshots]

Writes LOG's bytes to stderr (where glog writes) line by line, flushing each. With
``--pause-at``, stops after the first line containing TEXT and waits for a signal: on
SIGINT it prints Caffe's 'stopped early' lines and exits 0, on SIGTERM it exits by the
signal. ``--touch-snapshots`` creates each file a 'Snapshotting to' line names.
``--abort`` ends with abort(), as glog does after a failed CHECK.
"""

import argparse
import os
import re
import signal
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("action")
p.add_argument("-solver")
p.add_argument("--log", required=True)
p.add_argument("--exit", type=int, default=0)
p.add_argument("--abort", action="store_true")
p.add_argument("--pause-at")
p.add_argument("--touch-snapshots", action="store_true")
a = p.parse_args()
out = sys.stderr.buffer
SNAP = re.compile(rb"Snapshotting (?:solver state )?to \w+(?: proto)? file (\S+)")


def stop(signum, frame):
    out.write(b"I0101 00:00:00.000000 1 solver.cpp:1] Optimization stopped early.\n")
    out.write(b"I0101 00:00:00.000000 1 caffe.cpp:1] Optimization Done.\n")
    out.flush()
    sys.exit(0)


signal.signal(signal.SIGINT, stop)
with open(a.log, "rb") as f:
    for line in f:
        m = SNAP.search(line)
        if m and a.touch_snapshots:
            with open(m.group(1), "wb") as snap:
                snap.write(b"weights")
        out.write(line)
        out.flush()
        if a.pause_at and a.pause_at.encode() in line:
            while True:
                time.sleep(0.05)
if a.abort:
    os.abort()
sys.exit(a.exit)
