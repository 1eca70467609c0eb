"""The CARL coherence math (../shared/CARL_MATH.md) on torch tensors, numpy in -> numpy out.

    from carl_engine.coherence import CoherenceField, CARLWeights, group_diversity
    f = CoherenceField.from_logits(logits, token_ids, mask=None, temperature=1.0)   # [B,T,V], [B,T], [B,T]
    f = CoherenceField.from_stats(entropy, selected_logprob, vocab_size, mask=None) # [B,T] each
    s = f.scores(CARLWeights())            # [B] arrays: multiscale, cloud, discontinuity, composite, ...
    s = f.scores(CARLWeights.guarded(), diversity=group_diversity(token_id_lists, group_size))

Where this departs from the paper's implementation is listed at the top of `field.py`.
`CARLWeights` and `group_diversity` import no torch; `CoherenceField` loads torch on first use,
so a spec can validate its weights in a process that never trains.
"""

from __future__ import annotations

from typing import Any

from carl_engine.coherence.diversity import group_diversity
from carl_engine.coherence.weights import PRESETS, CARLWeights

__all__ = ["PRESETS", "SCORE_KEYS", "CARLWeights", "CoherenceField", "group_diversity"]


def __getattr__(name: str) -> Any:
    if name in ("CoherenceField", "SCORE_KEYS"):
        from carl_engine.coherence import field

        return getattr(field, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
