"""Synthetic training runs for the observe/push tests: the CARL paper's phase table as noisy per-step series.

The paper's table (steps, accuracy, entropy): 0-10 baseline (3%, 1.0), 10-20 melting (8%, entropy
rising to 9.3), 20-25 transition (65%, 4.1), 25-35 crystallization (99%, 0.4), 35-46 converged
(99.3%, 0.12). Accuracy is drawn as a binomial proportion over `group` completions; entropy gets
10% multiplicative noise. Everything is seeded.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from carl_engine.runs import RunDir

PAPER_PHASES = [
    # name, first step, end step (exclusive), accuracy, entropy at the end of the phase
    ("baseline", 0, 10, 0.03, 1.0),
    ("melting", 10, 20, 0.08, 9.3),
    ("transition", 20, 25, 0.65, 4.1),
    ("crystallization", 25, 35, 0.99, 0.4),
    ("converged", 35, 47, 0.993, 0.12),
]


def paper_run(seed: int, *, group: int = 64, vocab: int = 32000) -> list[dict[str, float]]:
    """One record per step: step, accuracy, entropy, carl/phi_mean, reward, completions/mean_length."""
    rng = random.Random(seed)
    records = []
    entropy_before = 1.0
    for name, first, end, accuracy, entropy_end in PAPER_PHASES:
        for k, step in enumerate(range(first, end)):
            if name == "melting":  # entropy climbs from the baseline level to 9.3
                level = entropy_before + (entropy_end - entropy_before) * (k + 1) / (end - first)
            else:
                level = entropy_end
            acc = sum(rng.random() < accuracy for _ in range(group)) / group
            ent = level * math.exp(rng.gauss(0.0, 0.1))
            records.append(
                {
                    "step": step,
                    "accuracy": acc,
                    "entropy": ent,
                    "carl/phi_mean": max(0.0, 1.0 - ent / math.log(vocab)),
                    "reward": acc + rng.gauss(0.0, 0.02),
                    "completions/mean_length": 20.0 + rng.gauss(0.0, 1.0),
                }
            )
        entropy_before = entropy_end
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_run_dir(run: RunDir, records: list[dict], *, spec: dict | None = None) -> RunDir:
    """A run directory as a training job leaves it: spec.json and one metrics event per step."""
    run.create()
    run.write_spec(spec or {"kind": "train", "method": "grpo", "model": "carl-tiny"})
    for record in records:
        metrics = {k: v for k, v in record.items() if k != "step"}
        run.append_event("metrics", step=record["step"], metrics=metrics)
    return run
