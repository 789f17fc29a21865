"""W6: `flood.py` writes 50 MiB to stderr before it touches stdout, then one 16 MiB line
with no newline, invalid UTF-8 and NUL bytes to stdout. `flood.py --expect` prints the sha256
of what each stream must replay to, without running the flood."""

import hashlib
import sys

LINE = (bytes(range(32, 127)) * 11100)[: (1 << 20) - 1] + b"\n"  # printable, ~1 MiB a line
STDERR = LINE * 50 + b"bad utf-8: \xff\xfe \xc3( nul: \x00\x00 end\n"
STDOUT = b"x" * (16 << 20) + b" then \xe2\x82 \x00 and no newline"

if sys.argv[1:] == ["--expect"]:
    print(hashlib.sha256(STDOUT).hexdigest(), hashlib.sha256(STDERR).hexdigest())
else:
    sys.stderr.buffer.write(STDERR)
    sys.stderr.flush()
    sys.stdout.buffer.write(STDOUT)
    sys.stdout.flush()
