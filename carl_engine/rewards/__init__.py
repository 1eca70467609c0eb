"""TRL reward functions and the cascade gate.

Reward functions follow TRL's signature, `(prompts, completions, completion_ids, **kwargs)
-> list[float | None]`, are pure (None skips a completion) and log their parts through the
`log_metric` kwarg TRL passes:

    task.py       TaskReward: a built-in task's exact-answer verifier (needs the `answer` column)
    carl.py       CarlReward: the CARL composite from captured per-token statistics
    diversity.py  DiversityReward: the group diversity term (and the grouping helper)
    cascade.py    CascadeGate: when CARL's weight switches on (off | steps | auto)
"""
