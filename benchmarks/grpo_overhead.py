"""What the CARL reward costs on top of plain GRPO: three arms, same seed and config, one run.

    plain   trl.GRPOTrainer with the task reward only
    ours    CarlGRPOTrainer with task + carl: statistics captured during generation
    paper   trl.GRPOTrainer with task + carl computed the paper's way: one no-grad forward
            per completion on its decoded text re-tokenized alone (no prompt), then
            CoherenceField.from_logits (implemented in carl_engine.bench.grpo_overhead, as the baseline)

Reports the median wall time of a training step (generation, rewards, loss, backward,
optimizer; the first `--warmup` steps dropped) and the ratios to plain GRPO. The measuring
code lives in carl_engine.bench.grpo_overhead (shared with `carl bench reward --grpo-overhead`).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/grpo_overhead.py [--steps 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os

from carl_engine.bench.grpo_overhead import measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="carl-tiny")
    parser.add_argument("--steps", type=int, default=10, help="steps per arm per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="steps dropped at the start of each round")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--max-completion-length", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    options = {k: v for k, v in vars(args).items() if k != "json"}
    result = measure(**options)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for arm, ratio in result["ratio_to_plain"].items():
            print(f"{arm}: {ratio:.3f}x plain GRPO")


if __name__ == "__main__":
    main()
