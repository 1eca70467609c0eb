"""The group diversity term R_div (CARL_MATH.md) as a TRL reward function.

Groups are the runs of consecutive completions that share a prompt, which is how TRL lays
out a GRPO batch; reading the groups from the prompts (instead of assuming G) stays right
when a group is split across processes.
"""

from __future__ import annotations

import math
from typing import Any

from carl_engine.coherence import group_diversity


def prompt_groups(prompts: list) -> list[tuple[int, int]]:
    """[start, end) index ranges of consecutive equal prompts.

    >>> prompt_groups(["a", "a", "b", "b", "b", "a"])
    [(0, 2), (2, 5), (5, 6)]
    """
    groups: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(prompts) + 1):
        if i == len(prompts) or prompts[i] != prompts[start]:
            groups.append((start, i))
            start = i
    return groups


def diversity_per_completion(prompts: list, completion_ids: list[list[int]]) -> list[float | None]:
    """R_div of each completion within its prompt group; None for a group of one."""
    out: list[float | None] = []
    for start, end in prompt_groups(prompts):
        group = completion_ids[start:end]
        out.extend(group_diversity(group, group_size=len(group)))
    return out


def nanmean(values: list[float | None]) -> float:
    """Mean of the defined, finite values; NaN when there are none."""
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else math.nan


class DiversityReward:
    """R_div = 1 - mean cosine similarity of a completion's bigram counts to its group's.

    Logs `carl/diversity` (the batch mean) through `log_metric`.

    >>> DiversityReward()(prompts=["p", "p"], completions=["", ""], completion_ids=[[1, 2], [3, 4]])
    [1.0, 1.0]
    """

    __name__ = "diversity"

    def __call__(self, prompts: list, completions: list, completion_ids: list, **kwargs: Any) -> list[float | None]:
        values = diversity_per_completion(prompts, completion_ids)
        log_metric = kwargs.get("log_metric")
        mean = nanmean(values)
        if log_metric is not None and math.isfinite(mean):
            log_metric("carl/diversity", mean)
        return values
