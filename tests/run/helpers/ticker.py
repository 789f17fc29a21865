"""W7: `ticker.py SECONDS SIDE` prints "tick N" about 1,000 times a second for SECONDS, and
writes to SIDE the longest time one write+flush of stdout took (a blocked pipe shows there)."""

import sys
import time

seconds, side = float(sys.argv[1]), sys.argv[2]
end = time.monotonic() + seconds
worst, n = 0.0, 0
while time.monotonic() < end:
    began = time.monotonic()
    sys.stdout.write(f"tick {n}\n")
    sys.stdout.flush()
    worst = max(worst, time.monotonic() - began)
    n += 1
    time.sleep(0.001)
with open(side, "w") as f:
    f.write(f"{n} {worst}")
