"""The weights of the CARL composite reward, with the two presets of CARL_MATH.md.

Imports nothing heavy: training specs validate weights without loading torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from carl_engine.errors import InvalidSpecError

PRESETS = ("paper", "guarded")


@dataclass(frozen=True)
class CARLWeights:
    """Weights of `R = w_ms·R_ms + w_cloud·R_cloud + w_disc·R_disc + w_div·R_div`.

    The weights are used as given (not renormalised). Each must be a finite number >= 0
    and at least one must be positive.

    Args:
        multiscale: weight of the multiscale coherence `R_ms` (paper: 0.50).
        cloud: weight of the cloud quality `R_cloud` (paper: 0.30).
        discontinuity: weight of the discontinuity score `R_disc` (paper: 0.20).
        diversity: weight of the group diversity `R_div` (0 in the paper; see `guarded`).
            When positive, `CoherenceField.scores` needs the per-sample diversity.

    Raises:
        InvalidSpecError (a ValueError): a negative or non-finite weight (field
            `weights.<name>`), or all weights zero (field `weights`).

    >>> CARLWeights.guarded().diversity
    0.2
    """

    multiscale: float = 0.50
    cloud: float = 0.30
    discontinuity: float = 0.20
    diversity: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidSpecError(f"weights.{name}", "must be a number >= 0", got=value)
            if not math.isfinite(value) or value < 0:
                raise InvalidSpecError(f"weights.{name}", "must be a finite number >= 0", got=value)
            object.__setattr__(self, name, float(value))
        if not any(asdict(self).values()):
            raise InvalidSpecError("weights", "at least one weight must be positive", got=asdict(self))

    @classmethod
    def paper(cls) -> CARLWeights:
        """The paper's composite: 0.50·R_ms + 0.30·R_cloud + 0.20·R_disc."""
        return cls(0.50, 0.30, 0.20, 0.0)

    @classmethod
    def guarded(cls) -> CARLWeights:
        """The composite with the diversity guard against mode collapse: 0.40/0.25/0.15/0.20."""
        return cls(0.40, 0.25, 0.15, 0.20)

    @classmethod
    def preset(cls, name: str) -> CARLWeights:
        """The preset called `name` ("paper" or "guarded").

        Raises:
            InvalidSpecError: an unknown preset name (field `preset`).
        """
        if name not in PRESETS:
            raise InvalidSpecError("preset", f"must be one of {', '.join(PRESETS)}", got=name)
        return cls.paper() if name == "paper" else cls.guarded()

    def as_dict(self) -> dict[str, float]:
        """The four weights by name, for logs and model cards."""
        return asdict(self)
