"""CarlGRPOTrainer: TRL's GRPOTrainer plus captured token statistics and the cascade gate.

Three small overrides, nothing copied from TRL:

- `_generate_single_turn`: wraps TRL's own generation with `GenerateCapture`, so every
  sampled token's entropy and log-probability are recorded while it is sampled.
- `_get_per_token_logps_and_entropies`: on the "forward" path (below) asks TRL's no-grad
  old-log-prob forward for entropies too and keeps that first result.
- `_calculate_rewards`: hands the statistics to reward functions as kwargs
  (`token_entropy`, `token_logprob`, `vocab_size`), sets the CARL reward's weight from the
  cascade gate, logs `gate/carl_weight` and `gate/state`, and shows the gate the task reward.

Which path gives the statistics (`capture_path`):
    generate  plain transformers `generate` (the default, CPU or GPU): the logits processor.
    forward   vLLM generation, which returns no full-vocabulary entropy: TRL already runs a
              no-grad forward over the completions for its importance-sampling correction
              (`vllm_importance_sampling_correction`, on by default); its fused kernel
              computes the entropy in the same pass. Also used when asked explicitly and
              TRL's forward runs anyway (generation and optimizer steps out of alignment).
Neither path adds a forward pass. Continuous batching, or vLLM with the correction off,
runs no such forward: the carl reward is refused there with a message saying what to set.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Literal

import torch
from trl import GRPOTrainer

from carl_engine.errors import InvalidSpecError
from carl_engine.rewards.cascade import STATE_CODES, CascadeGate
from carl_engine.training.capture import CapturedStats, GenerateCapture

GATE_FILE = "carl_gate.json"
STAT_REWARDS = ("carl",)  # reward function names that read the captured statistics


class CarlGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with captured per-token statistics and the CARL cascade gate.

    Args:
        *args, **kwargs: as GRPOTrainer.
        gate: the cascade gate on the reward named "carl" (None: no gating).
        task_reward: the name of the task reward the gate watches.
        capture: "auto" (generate unless vLLM/continuous batching), "generate" or "forward".

    Raises:
        InvalidSpecError: a statistics-reading reward on a path that cannot supply them.
    """

    def __init__(
        self,
        *args: Any,
        gate: CascadeGate | None = None,
        task_reward: str | None = None,
        capture: Literal["auto", "generate", "forward"] = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate
        self._carl_index = _index(self.reward_func_names, "carl")
        self._task_index = _index(self.reward_func_names, task_reward)
        self._base_weights = self.reward_weights.clone()
        self.needs_stats = any(name in STAT_REWARDS for name in self.reward_func_names)
        self.capture_path = self._choose_path(capture)
        self._captured: CapturedStats | None = None
        self._captured_forward: tuple[torch.Tensor, torch.Tensor, int] | None = None  # [B,T], [B,T], V
        self._forward_armed = False

    # which path -----------------------------------------------------------------------
    def _old_logps_forward_runs(self) -> bool:
        """Whether TRL runs its no-grad old-log-prob forward before the rewards (its own rule)."""
        generate_every = self.args.steps_per_generation * self.num_iterations
        misaligned = self.args.gradient_accumulation_steps % generate_every != 0
        return misaligned or (self.use_vllm and self.vllm_importance_sampling_correction)

    def _choose_path(self, capture: str) -> str:
        in_process = not self.use_vllm and not self.use_transformers_continuous_batching
        path = capture if capture != "auto" else ("generate" if in_process else "forward")
        if not self.needs_stats:
            return path
        if path == "generate" and not in_process:
            raise InvalidSpecError("trl", "capture during generate needs transformers generate (use_vllm off)")
        if path == "forward" and not self._old_logps_forward_runs():
            raise InvalidSpecError(
                "trl.vllm_importance_sampling_correction" if self.use_vllm else "trl",
                "the carl reward needs per-token entropy; with this generation backend it comes from TRL's "
                "importance-sampling forward, which is off",
                hint="set trl.vllm_importance_sampling_correction: true, or generate with transformers",
            )
        return path

    # capture --------------------------------------------------------------------------
    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        self._captured, self._captured_forward = None, None
        if not self.needs_stats or self.capture_path != "generate":
            self._forward_armed = self.needs_stats
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
        capture = GenerateCapture(self.temperature)
        with capture.attached(self.accelerator.unwrap_model(self.model_wrapped)):
            completion_ids, logprobs = super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        self._captured = capture.per_completion(completion_ids)
        return completion_ids, logprobs

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        if not (self._forward_armed and model is self.model):
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, *args, **kwargs
            )
        self._forward_armed = False  # only the first (old-log-prob) pass after generation
        wanted = kwargs.pop("compute_entropy", False)
        logps, entropies, aux = super()._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, *args, compute_entropy=True, **kwargs
        )
        self._captured_forward = (entropies.detach(), logps.detach(), self._vocab_size())
        return logps, entropies if wanted else None, aux

    def _vocab_size(self) -> int:
        head = self.accelerator.unwrap_model(self.model).get_output_embeddings()
        return int(head.weight.shape[0])

    # rewards and the gate ---------------------------------------------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        step = self.state.global_step
        if self.needs_stats:
            inputs = self._with_stats(inputs, completion_ids_list)
        if self.gate is not None and self._carl_index is not None:
            weight = self.gate.weight(step)
            self.reward_weights[self._carl_index] = self._base_weights[self._carl_index] * weight
            self._log_metric("gate/carl_weight", weight)
            self._log_metric("gate/state", STATE_CODES[self.gate.state(step)])
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.gate is not None and self._task_index is not None and self.model.training:
            task_mean = torch.nanmean(rewards_per_func[:, self._task_index]).item()
            if math.isfinite(task_mean):
                self.gate.observe(step, task_mean)
        return rewards_per_func

    def _with_stats(self, inputs: list[dict], completion_ids_list: list[list[int]]) -> list[dict]:
        stats = self._captured
        if self._captured_forward is not None:
            stats = CapturedStats.from_tensors(*self._captured_forward, completion_ids_list)
        self._captured, self._captured_forward = None, None
        if stats is None or len(stats.entropy) != len(inputs):
            raise RuntimeError(
                f"per-token statistics were not captured for this batch (path {self.capture_path}); "
                "the carl reward cannot be computed"
            )
        return [
            {**row, "token_entropy": h, "token_logprob": lp, "vocab_size": stats.vocab_size}
            for row, h, lp in zip(inputs, stats.entropy, stats.selected_logprob, strict=True)
        ]

    # checkpoints carry the gate --------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.gate is not None and self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            with open(os.path.join(folder, GATE_FILE), "w") as fh:
                json.dump(self.gate.state_dict(), fh)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if self.gate is not None and checkpoint is not None:
            path = os.path.join(checkpoint, GATE_FILE)
            if os.path.isfile(path):
                with open(path) as fh:
                    self.gate.load_state_dict(json.load(fh))


def _index(names: list[str], name: str | None) -> int | None:
    return names.index(name) if name is not None and name in names else None
