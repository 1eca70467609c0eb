"""from_logits stays within its chunk budget: no second full-size copy of the logits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Runs in a fresh process: the kernel's RSS high-water mark (VmHWM) before and after one call.
PROBE = """
import gc, sys, torch
from carl_engine.coherence import CoherenceField

def hwm_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024

sliced, chunk_bytes = sys.argv[1] == "sliced", int(sys.argv[2])
CoherenceField.from_logits(torch.randn(2, 3, 50), torch.zeros(2, 3, dtype=torch.int64)).scores()  # warm-up
logits = torch.randn(4, 257, 8000)  # ~31 MiB of float32
ids, mask = torch.randint(0, 8000, (4, 257)), torch.rand(4, 257) < 0.7
if sliced:  # a [B, T, V] view that cannot be flattened to [B*T, V] without a copy
    logits, ids, mask = logits[:, 1:], ids[:, 1:], mask[:, 1:]
gc.collect()
before = hwm_mib()
CoherenceField.from_logits(logits, ids, None if sliced else mask, chunk_bytes=chunk_bytes).scores()
print(hwm_mib() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the kernel's RSS high-water mark")
@pytest.mark.parametrize("layout", ["contiguous", "sliced"])
def test_from_logits_peak_memory_stays_within_one_chunk(layout):
    chunk_mib = 2
    out = subprocess.run(
        [sys.executable, "-c", PROBE, layout, str(chunk_mib * 2**20)],
        capture_output=True, text=True, timeout=120, env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    growth_mib = float(out.stdout.strip().splitlines()[-1])
    assert growth_mib < chunk_mib + 1, f"peak RSS grew {growth_mib:.1f} MiB over ~31 MiB of logits"
