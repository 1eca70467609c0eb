"""What the CARL reward costs on top of plain GRPO: three arms, same seed and config, one run.

    plain   trl.GRPOTrainer with the task reward only
    ours    CarlGRPOTrainer with task + carl: statistics captured during generation
    paper   trl.GRPOTrainer with task + carl computed the paper's way: one no-grad forward
            per completion on its decoded text re-tokenized alone (no prompt), then
            CoherenceField.from_logits (implemented here, as the baseline)

Reports the median wall time of a training step (generation, rewards, loss, backward,
optimizer; the first `warmup` steps dropped) and the ratios to plain GRPO. The core of
`benchmarks/grpo_overhead.py` (the training engine's benchmark), here so that `carl bench
reward --grpo-overhead` and the `carl_bench` tool run the same measurement at a small size.
Imports torch/trl only inside functions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from typing import Any


ARMS = ("plain", "ours", "paper")


def quiet(trainer: Any) -> None:
    from transformers import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def step_timer() -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self._start)

    return StepTimer()


class PaperCarlReward:
    """CARL the paper's way: re-tokenize each completion's text and run the model on it alone."""

    __name__ = "carl_paper"

    def __init__(self, tokenizer: Any, weights: Any) -> None:
        self.tokenizer = tokenizer
        self.weights = weights
        self.model: Any = None  # set once the trainer exists

    def __call__(self, prompts, completions, completion_ids, **kwargs) -> list[float | None]:
        import torch

        from carl_engine.coherence import CoherenceField

        out: list[float | None] = []
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            for text in completions:
                ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
                if ids.shape[1] < 2:
                    out.append(None)
                    continue
                logits = self.model(input_ids=ids.to(self.model.device)).logits[:, :-1].float()  # [1, T-1, V]
                field = CoherenceField.from_logits(logits, ids[:, 1:].to(logits.device))
                value = float(field.scores(self.weights)["composite"][0])
                out.append(value)
        self.model.train(was_training)
        return out


def build(arm: str, spec: Any, out_dir: str) -> tuple[Any, Any]:
    from trl import GRPOTrainer

    from carl_engine.coherence import CARLWeights
    from carl_engine.models import load_model_and_tokenizer, resolve_model
    from carl_engine.rewards.task import TaskReward
    from carl_engine.runs import RunDir
    from carl_engine.training.builder import build_trainer
    from carl_engine.training.config import build_trl_config
    from carl_engine.training.data import load_training_dataset

    timer = step_timer()
    if arm == "ours":
        run_spec = spec.model_copy(update={"rewards": {"task": 1.0, "carl": 1.0}})
        return build_trainer(run_spec, RunDir(out_dir), callbacks=[timer]), timer
    config = build_trl_config(spec, out_dir)
    model, tokenizer = load_model_and_tokenizer(resolve_model(spec.model), torch_dtype="float32")
    rewards: list[Any] = [TaskReward("arithmetic")]
    if arm == "paper":
        rewards.append(PaperCarlReward(tokenizer, CARLWeights.paper()))
    config.reward_weights = [1.0] * len(rewards)
    trainer = GRPOTrainer(
        model=model, reward_funcs=rewards, args=config, train_dataset=load_training_dataset(spec),
        processing_class=tokenizer, callbacks=[timer],
    )
    if arm == "paper":
        rewards[1].model = trainer.model
    return trainer, timer


def measure(
    *,
    model: str = "carl-tiny",
    steps: int = 10,
    rounds: int = 3,
    warmup: int = 2,
    batch_size: int = 16,
    num_generations: int = 8,
    max_completion_length: int = 32,
) -> dict[str, Any]:
    """Median GRPO step time of the three arms and their ratios to plain GRPO.

    Args:
        model: the model (carl-tiny by default).
        steps: steps per arm per round; the first `warmup` of each round are dropped.
        rounds: interleaved rounds (plain, ours, paper, plain, ...), so machine load falls on all arms alike.
        batch_size, num_generations, max_completion_length: the GRPO shape (every completion runs to full length).

    Returns:
        A dict with `median_step_s` per arm and `ratio_to_plain` for ours and paper.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _measure(argparse.Namespace(model=model, steps=steps, rounds=rounds, warmup=warmup, batch_size=batch_size,
                                           num_generations=num_generations,
                                           max_completion_length=max_completion_length))


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import set_seed

    from carl_engine.training.spec import TrainSpec

    spec = TrainSpec(
        model=args.model, max_steps=args.steps, batch_size=args.batch_size, num_generations=args.num_generations,
        max_completion_length=args.max_completion_length, rewards={"task": 1.0}, cascade={"gate": "off"},
        num_examples=max(64, args.steps * args.batch_size), save_steps=1_000_000,
        # Every completion runs to full length in every arm, so the arms time the same token counts.
        trl={"generation_kwargs": {"min_new_tokens": args.max_completion_length}},
    )
    # Arms run in interleaved rounds (plain, ours, paper, plain, ...) so that load from other
    # processes on the machine falls on all three alike.
    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for round_index in range(args.rounds):
        for arm in ARMS:
            with tempfile.TemporaryDirectory() as out_dir:
                set_seed(spec.seed + round_index)
                trainer, timer = build(arm, spec, out_dir)
                trainer.args.save_strategy = "no"
                quiet(trainer)
                trainer.train()
                times[arm].extend(timer.times[args.warmup :])
    medians = {arm: statistics.median(values) for arm, values in times.items()}
    for arm in ARMS:
        print(f"{arm:6s} median step {medians[arm] * 1000:8.1f} ms over {len(times[arm])} steps", file=sys.stderr)
    return {
        "model": args.model,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "num_generations": args.num_generations,
        "max_completion_length": args.max_completion_length,
        "median_step_s": medians,
        "ratio_to_plain": {arm: medians[arm] / medians["plain"] for arm in ("ours", "paper")},
    }
