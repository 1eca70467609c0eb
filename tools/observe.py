"""carl_observe: how a run is learning — phases, transition step, trends, stop rules, a plot.

Reads a job (its run directory), a run directory, a trainer_state.json, a JSONL metrics file
or a local trackio project; never blocks on a running job (it reads what is logged so far).
The PNG plot is saved (by default in the run directory) and, for MCP clients, also returned
as image content next to the structured response (see `inline_images`). With
`diagnose=true`, Claude writes a diagnosis of the structured summary (needs ANTHROPIC_API_KEY;
without it the response says so in `diagnosis_note` and everything else is still answered).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PrivateAttr

from carl_engine.observe.diagnose import Diagnosis
from carl_engine.observe.models import MetricSummary, Observation, Phase, Signals, SourceKind, StopRuleVerdict
from carl_studio.tools.base import Request, Response, ToolContext, ToolSpec


class ObserveRequest(Request):
    source: str = Field(
        ..., min_length=1, max_length=4096,
        description="What to observe: a job id, a run directory, a trainer_state.json, a JSONL metrics file "
        "(one object a line with 'step' and TRL metric names), 'trackio:<project>[:<run>]', or a trackio .db file.",
    )
    tail_fraction: float = Field(
        0.2, ge=0.05, le=0.5,
        description="Share of the logged points (0.05-0.5) the flat-reward, coherence-trap and length-drift rules look at.",
    )
    phi_high: float = Field(0.9, gt=0.0, le=1.0, description="Mean Φ at or above which the coherence trap can fire (0-1].")
    length_drift: float = Field(
        0.5, gt=0.0, le=10.0, description="Relative change of mean completion length that counts as drift (0.5 = ±50%)."
    )
    plot: bool = Field(True, description="Draw the PNG plot (reward, entropy/Φ, accuracy by step, phases shaded).")
    plot_path: str | None = Field(
        None, min_length=1, max_length=4096,
        description="Where to save the PNG; default observe.png in the run directory (next to the file for files).",
    )
    include_image: bool = Field(True, description="Also return the PNG as image content to the MCP client.")
    diagnose: bool = Field(False, description="Ask Claude for a written diagnosis (needs ANTHROPIC_API_KEY).")
    diagnose_model: str | None = Field(
        None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$",
        description="Claude model for the diagnosis (default: $CARL_DIAGNOSE_MODEL, else the built-in default).",
    )


class ObserveResponse(Response):
    source: str = Field(description="What was read.")
    source_kind: SourceKind = Field(description="run_dir, trainer_state, jsonl or trackio.")
    job_id: str | None = Field(None, description="The job observed, if the source was a job or its run directory.")
    n_points: int = Field(description="Logged steps read.")
    first_step: int | None = Field(None, description="First logged step.")
    last_step: int | None = Field(None, description="Last logged step.")
    transition_step: int | None = Field(
        None, description="First step of the transition (the largest significant rise of accuracy/reward); null if none yet."
    )
    phases: list[Phase] = Field(default_factory=list, description="baseline/melting/transition/crystallization/converged with step ranges.")
    change_points: list[int] = Field(default_factory=list, description="Steps where the task/disorder signals change their mean.")
    stop_rules: list[StopRuleVerdict] = Field(default_factory=list, description="Each stop rule's verdict with its evidence.")
    should_stop: bool = Field(description="True when any stop rule triggered.")
    summary: str = Field(description="A few sentences describing the run.")
    signals: Signals = Field(description="Which logged metrics were used as task, disorder, Φ, reward, diversity, length.")
    metrics: list[MetricSummary] = Field(default_factory=list, description="Every logged metric: first/last, min/max, slope, trend.")
    plot_path: str | None = Field(None, description="The PNG written (null when plot=false or nothing is logged).")
    diagnosis: Diagnosis | None = Field(None, description="Claude's written diagnosis (diagnose=true).")
    diagnosis_note: str | None = Field(None, description="Why there is no diagnosis although one was asked for.")
    next: str = Field(description="What to do next.")

    _image_path: str | None = PrivateAttr(None)

    def inline_images(self) -> list[tuple[str, bytes]]:
        """(mime type, bytes) of the images a front end may show with this response."""
        if self._image_path and Path(self._image_path).is_file():
            return [("image/png", Path(self._image_path).read_bytes())]
        return []


def _next(obs: Observation, job_id: str | None) -> str:
    who = job_id or "the job"
    if any(r.rule == "non_finite" and r.status == "triggered" for r in obs.stop_rules):
        return f"Stop {who} (carl_stop) and resume from an earlier checkpoint with a lower learning_rate."
    if any(r.rule == "coherence_trap" and r.status == "triggered" for r in obs.stop_rules):
        return f"Stop {who} (carl_stop); retrain with carl preset 'guarded' (diversity term) or from an earlier checkpoint."
    if obs.should_stop:
        return f"The run has plateaued or drifted: stop {who} (carl_stop) if it is still running, then carl_eval its checkpoint."
    if obs.n_points == 0:
        return "Nothing logged yet: ask again after a few steps (carl_status shows progress)."
    if obs.transition_step is None:
        return "No transition yet: let it train and call carl_observe again later."
    return "Evaluate the latest checkpoint with carl_eval; push it with carl_push if the gate passes."


def observe_tool(request: ObserveRequest, ctx: ToolContext) -> ObserveResponse:
    """Observe a run and answer with its phases, stop rules and plot (and a diagnosis when asked)."""
    from carl_engine.errors import MissingCredentialsError, ServiceError
    from carl_engine.observe import diagnose, observe

    obs = observe(
        request.source,
        tail_fraction=request.tail_fraction,
        phi_high=request.phi_high,
        length_drift=request.length_drift,
        plot=request.plot,
        plot_path=request.plot_path,
    )
    diagnosis, note = None, None
    if request.diagnose:
        try:
            diagnosis = diagnose(obs, model=request.diagnose_model)
        except (MissingCredentialsError, ServiceError) as err:
            note = f"no diagnosis: {err}"
    fields = {name: getattr(obs, name) for name in ObserveResponse.model_fields if hasattr(obs, name)}
    response = ObserveResponse(**fields, diagnosis=diagnosis, diagnosis_note=note, next=_next(obs, obs.job_id))
    if request.include_image:
        response._image_path = obs.plot_path
    return response


OBSERVE = ToolSpec(
    name="carl_observe",
    title="Observe a run's learning",
    description=(
        "How a run is learning: per-metric trends, the phases (baseline, melting, transition, crystallization, "
        "converged) with the transition step, found by change-point detection on accuracy/reward and entropy/Φ; "
        "stop-rule verdicts (non-finite values, flat reward, coherence trap, completion-length drift) with evidence; "
        "and a PNG plot returned as an image. Works on a job id, a run directory, trainer_state.json, a JSONL "
        "metrics file or a local trackio project, while the job runs or after. diagnose=true adds Claude's reading."
    ),
    request=ObserveRequest,
    response=ObserveResponse,
    fn=observe_tool,
    read_only=False,  # writes the PNG plot
    idempotent=True,
    open_world=True,  # diagnose=true calls Claude's API
)
