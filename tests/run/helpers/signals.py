"""A job that logs every signal it receives: `signals.py LOG [N]`.

Appends "NAME monotonic-time" to LOG for each of TERM, INT, HUP, USR1, USR2 and WINCH, prints
"ready" once its handlers are in place, and exits 0 after N distinct signals (never if N is 0).
"""

import os
import signal
import sys
import time

log, wanted = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0
seen = set()
NAMES = ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH")


def record(signum, frame):
    name = signal.Signals(signum).name
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, f"{name} {time.monotonic()}\n".encode())
    os.close(fd)
    seen.add(name)
    if wanted and len(seen) >= wanted:
        os._exit(0)


for name in NAMES:
    signal.signal(getattr(signal, name), record)
print("ready", flush=True)
while True:
    signal.pause()
