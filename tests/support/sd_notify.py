#!/usr/bin/env python3
"""A test service that speaks sd_notify by script: argv[1] is a file it appends what it
sees to, each further argument is either a message for NOTIFY_SOCKET ("READY=1",
"WATCHDOG=1", ...), "sleep SECONDS", "ping SECONDS COUNT" (WATCHDOG=1 every SECONDS,
COUNT times), or "slow-stop USEC SECONDS" (on SIGTERM: send EXTEND_TIMEOUT_USEC=USEC, take
SECONDS, exit 0). Then it sleeps until it is stopped.

First line of the file: "env <its pid> <WATCHDOG_PID> <WATCHDOG_USEC>". On SIGABRT it
appends "abrt" and exits 3 (no core dump), so a test sees that the watchdog's signal came.
"""
import os
import signal
import socket
import sys
import time

out = sys.argv[1]


def note(line):
    with open(out, "a") as f:
        f.write(line + "\n")


def on_abort(*_):
    note("abrt")
    os._exit(3)


signal.signal(signal.SIGABRT, on_abort)
note("env %d %s %s" % (os.getpid(), os.environ.get("WATCHDOG_PID", "-"),
                       os.environ.get("WATCHDOG_USEC", "-")))
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
target = os.environ["NOTIFY_SOCKET"]
for step in sys.argv[2:]:
    if step.startswith("sleep "):
        time.sleep(float(step.split()[1]))
    elif step.startswith("slow-stop "):
        _, usec, seconds = step.split()

        def on_term(*_, usec=usec, seconds=seconds):
            sock.sendto(("EXTEND_TIMEOUT_USEC=" + usec).encode(), target)
            time.sleep(float(seconds))
            note("stopped slowly")
            os._exit(0)

        signal.signal(signal.SIGTERM, on_term)
    elif step.startswith("ping "):
        _, every, count = step.split()
        for _ in range(int(count)):
            sock.sendto(b"WATCHDOG=1", target)
            time.sleep(float(every))
    else:
        sock.sendto(step.encode(), target)
        note("sent " + step)
while True:
    time.sleep(1000)
