"""A written diagnosis of an Observation by Claude (the anthropic SDK's Messages API).

Only the structured summary is sent (metric summaries, phases, stop rules): no log lines,
no file contents, no paths beyond the source name. The API key comes from
`ANTHROPIC_API_KEY` (or the `api_key` argument); it never appears in a result or an error —
error texts from the SDK are scrubbed of it before they are raised. `ANTHROPIC_BASE_URL`
(or `base_url`) points the client at another server, e.g. the tests' stand-in.
"""

from __future__ import annotations

import json
import os

from pydantic import BaseModel, Field

from carl_engine.errors import InvalidSpecError, MissingCredentialsError, ServiceError
from carl_engine.observe.models import Observation

DEFAULT_MODEL = "claude-sonnet-4-6"
MODEL_ENV = "CARL_DIAGNOSE_MODEL"

_SYSTEM = (
    "You diagnose language-model fine-tuning runs trained with CARL (coherence-aware reinforcement "
    "learning). Phases of a healthy run: baseline, melting (entropy rises), transition (accuracy jumps), "
    "crystallization, converged. Known failure: the coherence trap, where mean order parameter Φ nears 1 "
    "while group diversity falls (mode collapse that CARL rewards). You get a JSON summary of one run. "
    "Answer in at most 200 words: what the run is doing, whether to stop, continue or change settings, "
    "and which single change to try first. Quote the numbers you rely on; do not invent any."
)


class Diagnosis(BaseModel):
    """Claude's written diagnosis of one observation."""

    model: str = Field(..., description="The Claude model that wrote it.")
    text: str = Field(..., description="The diagnosis.")
    input_tokens: int | None = Field(None, description="Tokens sent.")
    output_tokens: int | None = Field(None, description="Tokens written.")


def _payload(obs: Observation) -> str:
    data = obs.model_dump(mode="json", exclude={"plot_path"})
    return json.dumps(data, indent=1)


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def diagnose(
    obs: Observation,
    *,
    model: str | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    max_tokens: int = 800,
    timeout_s: float = 60.0,
) -> Diagnosis:
    """Ask Claude for a written diagnosis of `obs`.

    Args:
        obs: the observation to diagnose.
        model: Claude model; default `$CARL_DIAGNOSE_MODEL`, else DEFAULT_MODEL.
        api_key: default `$ANTHROPIC_API_KEY`.
        base_url: default `$ANTHROPIC_BASE_URL`, else Anthropic's API.
        max_tokens: longest answer, 64-4096.
        timeout_s: per-request timeout in seconds.
    Returns:
        The Diagnosis.
    Raises:
        MissingCredentialsError: no API key.
        InvalidSpecError: max_tokens out of range.
        ServiceError: the API refused or could not be reached (message scrubbed of the key).
    """
    key = api_key or os.environ.get("ANTHROPIC_API_KEY", "")
    if not key:
        raise MissingCredentialsError("ANTHROPIC_API_KEY", "a written diagnosis by Claude")
    if not 64 <= max_tokens <= 4096:
        raise InvalidSpecError("max_tokens", "must be between 64 and 4096", got=max_tokens)
    import anthropic

    chosen = model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    client = anthropic.Anthropic(api_key=key, base_url=base_url, timeout=timeout_s, max_retries=1)
    try:
        reply = client.messages.create(
            model=chosen,
            max_tokens=max_tokens,
            system=_SYSTEM,
            messages=[{"role": "user", "content": f"Run summary (JSON):\n{_payload(obs)}"}],
        )
    except anthropic.APIStatusError as exc:
        detail = _scrub(str(getattr(exc, "message", "")) or type(exc).__name__, key)
        raise ServiceError(
            f"Claude's Messages API answered {exc.status_code}: {detail}",
            hint="check ANTHROPIC_API_KEY and the model name (CARL_DIAGNOSE_MODEL)",
        ) from None
    except anthropic.APIError as exc:
        raise ServiceError(f"Claude's Messages API could not be reached: {_scrub(str(exc), key)}") from None
    text = "\n".join(block.text for block in reply.content if getattr(block, "type", "") == "text").strip()
    if not text:
        raise ServiceError("Claude's Messages API returned no text")
    usage = getattr(reply, "usage", None)
    return Diagnosis(
        model=reply.model or chosen,
        text=text,
        input_tokens=getattr(usage, "input_tokens", None),
        output_tokens=getattr(usage, "output_tokens", None),
    )
