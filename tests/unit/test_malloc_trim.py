"""``memory.malloc_trim`` gives a burst's freed memory back to the kernel (decision 159).

Run in a child process of its own, so that the RSS read is that of a known heap: 150,000
objects of 1.5 KB (malloc's, not pymalloc's: over 512 bytes) are made and all but every 50th
freed; RSS stays near its peak until the trim.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

CHILD = """
import json
from streamspace_operator.memory import malloc_trim

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

blobs = [bytes(1500) + str(i).encode() for i in range(150_000)]
peak = rss_mib()
kept = blobs[::50]
del blobs
freed = rss_mib()
trim = malloc_trim()
trim()
print(json.dumps({"peak": peak, "freed": freed, "trimmed": rss_mib(), "kept": len(kept)}))
"""


def test_a_trim_returns_what_a_burst_freed() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
    rss = json.loads(out.stdout)
    assert rss["kept"] == 3000
    burst = rss["peak"] - rss["trimmed"]
    # 220 MB were made; freed, they stay in the process until the trim gives them back
    assert rss["freed"] > rss["trimmed"] + 150, rss
    assert burst > 150, rss
