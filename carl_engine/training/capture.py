"""Per-token entropy and sampled-token log-probability, captured while `generate` samples.

The CARL reward needs, for every completion token k, the entropy H_k of the sampling
distribution softmax(logits_k / tau) and log p_k(t_k) of the token actually sampled. The
paper's code re-ran the model once per completion to get them. Here they fall out of the
generation loop itself:

    step k:   generate hands the processor the next-token logits z_k       [B, V]
              processor: logp_k = log_softmax(z_k / tau); H_k = -sum p logp  -> keeps H_k   [B]
              and keeps logp_k for one step                                  (O(B x V))
    step k+1: input_ids now end with t_k, the token sampled at step k
              processor: log p_k(t_k) = logp_k[b, t_k]                        -> keeps it   [B]
    the end:  the last token comes from the returned sequences (`finish`).

Only [B] numbers per step are kept, plus one [B, V] row block: never O(B x T x V).

Which distribution: the processor sits before generate's warpers (temperature, top-k,
top-p), so it sees the model's logits and divides by tau itself: softmax(z / tau) over
the full vocabulary, exactly the distribution TRL's training forward scores (TRL also
ignores top-k/top-p there). Processors that run before it (repetition penalty,
suppressed tokens; all off by default in GRPO) would be reflected in the numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList


class TokenStatsProcessor(LogitsProcessor):
    """A logits processor that records per-step entropy and selected log-prob; scores pass unchanged.

    One instance serves one `generate` call.

    Args:
        temperature: tau of the sampling distribution softmax(logits / tau).
    """

    def __init__(self, temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0; got {temperature}")
        self.temperature = float(temperature)
        self.prompt_length: int | None = None
        self.vocab_size: int | None = None  # V, the scores' last dimension
        self.entropy_steps: list[torch.Tensor] = []  # one [B] per step
        self.selected_steps: list[torch.Tensor] = []  # one [B] per step whose token is known
        self._prev_logp: torch.Tensor | None = None  # [B, V], the latest step only

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
            self.vocab_size = scores.shape[-1]
        elif self._prev_logp is not None:
            sampled = input_ids[:, -1:]  # [B, 1]: the token drawn at the previous step
            self.selected_steps.append(self._prev_logp.gather(1, sampled).squeeze(1))
        z = scores.float() if self.temperature == 1.0 else scores.float() / self.temperature
        logp = torch.log_softmax(z, dim=-1)  # [B, V]
        # p log p is NaN only where p = 0 (logp = -inf, a masked token), whose term is 0.
        p_logp = logp.exp().mul_(logp).nan_to_num_(0.0)
        self.entropy_steps.append(p_logp.sum(dim=-1).neg_())
        self._prev_logp = logp
        return scores

    def finish(self, sequences: torch.LongTensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Close the capture with the sequences `generate` returned.

        Args:
            sequences: [B, P + T] prompt and generated ids as returned by generate.

        Returns:
            (entropy [B, T], selected_logprob [B, T]) in float32 on the scores' device. Rows
            past a sequence's EOS hold the numbers for the pad tokens generate wrote there;
            callers cut each row at its completion length.
        """
        if self.prompt_length is None:
            empty = torch.zeros(sequences.shape[0], 0)
            return empty, empty.clone()
        steps = sequences.shape[1] - self.prompt_length
        if len(self.selected_steps) < steps and self._prev_logp is not None:
            last = sequences[:, self.prompt_length + steps - 1 : self.prompt_length + steps]
            self.selected_steps.append(self._prev_logp.gather(1, last.to(self._prev_logp.device)).squeeze(1))
        self._prev_logp = None
        entropy = torch.stack(self.entropy_steps[:steps], dim=1) if steps else torch.zeros(sequences.shape[0], 0)
        selected = torch.stack(self.selected_steps[:steps], dim=1) if steps else torch.zeros(sequences.shape[0], 0)
        return entropy, selected


@dataclass
class CapturedStats:
    """Per-completion token statistics, cut at each completion's length (lists of floats)."""

    entropy: list[list[float]]
    selected_logprob: list[list[float]]
    vocab_size: int

    @classmethod
    def from_tensors(
        cls, entropy_BT: torch.Tensor, selected_BT: torch.Tensor, vocab_size: int, completion_ids: list[list[int]]
    ) -> CapturedStats | None:
        """Cut [B, T] statistics to each completion's length; None when they do not cover the completions."""
        lengths = [len(ids) for ids in completion_ids]
        if entropy_BT.shape[0] != len(lengths) or any(n > entropy_BT.shape[1] for n in lengths):
            return None
        entropy_rows, selected_rows = entropy_BT.float().cpu().tolist(), selected_BT.float().cpu().tolist()
        return cls(
            entropy=[row[:n] for row, n in zip(entropy_rows, lengths)],
            selected_logprob=[row[:n] for row, n in zip(selected_rows, lengths)],
            vocab_size=int(vocab_size),
        )


class GenerateCapture:
    """Adds a `TokenStatsProcessor` to every `generate` call on one model object while attached.

    Used by the GRPO trainer around TRL's own generation code, which calls
    `model.generate(...)` without a `logits_processor` argument; the capture wraps that
    method on the instance for the duration of a `with capture.attached(model)` block.
    """

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature
        self.calls: list[tuple[torch.Tensor, torch.Tensor, int]] = []  # (entropy [B,T], selected [B,T], V) per call

    @contextlib.contextmanager
    def attached(self, model: Any) -> Iterator[GenerateCapture]:
        had_own = "generate" in vars(model)
        original = model.generate
        capture = self

        def generate_with_capture(*args: Any, **kwargs: Any) -> Any:
            processor = TokenStatsProcessor(capture.temperature)
            extra = LogitsProcessorList([processor])
            if kwargs.get("logits_processor"):
                extra = LogitsProcessorList([processor, *kwargs["logits_processor"]])
            kwargs["logits_processor"] = extra
            output = original(*args, **kwargs)
            sequences = output if isinstance(output, torch.Tensor) else output.sequences
            capture.calls.append((*processor.finish(sequences), processor.vocab_size or 0))
            return output

        model.generate = generate_with_capture
        try:
            yield self
        finally:
            if had_own:
                model.generate = original
            else:
                del model.generate  # back to the class's method

    def per_completion(self, completion_ids: list[list[int]]) -> CapturedStats | None:
        """The statistics of the single recorded call, cut to each completion's length.

        Returns:
            None when there was not exactly one generate call covering these completions
            (e.g. a tool-calling loop that generated several times).
        """
        if len(self.calls) != 1:
            return None
        entropy, selected, vocab_size = self.calls[0]
        return CapturedStats.from_tensors(entropy, selected, vocab_size, completion_ids)
