"""A job that leaves orphans behind: `orphans.py N SECONDS`.

Double-forks N grandchildren (each intermediate exits at once, so the grandchild is orphaned
and re-parented to the nearest subreaper), prints "forked", and exits 0. Each grandchild
sleeps SECONDS and exits.
"""

import os
import sys
import time

count, seconds = int(sys.argv[1]), float(sys.argv[2])
for _ in range(count):
    pid = os.fork()
    if pid == 0:
        if os.fork() == 0:
            time.sleep(seconds)
            os._exit(0)
        os._exit(0)
    os.waitpid(pid, 0)
print("forked", flush=True)
