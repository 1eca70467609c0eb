"""carl_observe through the tool function and the in-memory MCP client: structured answer plus the plot as an image."""

from __future__ import annotations

import base64

import pytest
from mcp import Client
from standins.anthropic_api import anthropic_standin  # noqa: F401  (fixture)
from standins.carl_runs import paper_run, write_jsonl, write_run_dir

from carl_engine.errors import InvalidSpecError, JobNotFoundError
from carl_engine.runs import RunDir
from carl_studio.server.app import build_server
from carl_studio.tools.base import ToolContext
from carl_studio.tools.observe import OBSERVE

PNG = b"\x89PNG\r\n\x1a\n"


def test_the_tool_answers_the_transition_phases_and_stop_rules_of_a_job():
    write_run_dir(RunDir.for_job("obs1"), paper_run(1))
    out = OBSERVE.call({"source": "obs1"}, ToolContext())
    assert 20 <= out.transition_step <= 25 and out.job_id == "obs1"
    assert [p.name for p in out.phases][2] == "transition"
    assert out.inline_images()[0][1][:8] == PNG
    assert out.diagnosis is None and out.diagnosis_note is None and "carl_stop" in out.next  # reward is flat at the end


def test_diagnose_without_a_key_still_answers_and_says_why_there_is_no_diagnosis(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", paper_run(2))
    out = OBSERVE.call({"source": str(path), "diagnose": True, "plot": False}, ToolContext())
    assert out.diagnosis is None and "ANTHROPIC_API_KEY" in out.diagnosis_note
    assert out.transition_step is not None and out.inline_images() == []


def test_diagnose_with_the_messages_stand_in_returns_claudes_text(tmp_path, anthropic_standin):
    path = write_jsonl(tmp_path / "m.jsonl", paper_run(2))
    out = OBSERVE.call({"source": str(path), "diagnose": True, "plot": False}, ToolContext())
    assert out.diagnosis.text.startswith("Diagnosis of") and anthropic_standin.api_key not in out.model_dump_json()


@pytest.mark.parametrize(
    "arguments, field",
    [({"source": ""}, "source"), ({"source": "x", "tail_fraction": 0.9}, "tail_fraction"),
     ({"source": "x", "phi_high": 1.5}, "phi_high"), ({"source": "x", "diagnose_model": "bad model!"}, "diagnose_model"),
     ({"source": "x", "colour": "red"}, "colour")],
)
def test_bad_arguments_name_their_field(arguments, field):
    with pytest.raises(InvalidSpecError) as info:
        OBSERVE.call(arguments, ToolContext())
    assert info.value.field == field


def test_an_unknown_job_is_named_and_nothing_is_written(carl_home):
    with pytest.raises(JobNotFoundError, match="ghost"):
        OBSERVE.call({"source": "ghost"}, ToolContext())
    assert not (carl_home / "runs" / "ghost").exists()


@pytest.mark.anyio
async def test_through_the_mcp_client_the_plot_comes_back_as_image_content():
    write_run_dir(RunDir.for_job("obs2"), paper_run(3))
    async with Client(build_server()) as client:
        result = await client.call_tool("carl_observe", {"source": "obs2"})
        no_image = await client.call_tool("carl_observe", {"source": "obs2", "include_image": False})
        missing = await client.call_tool("carl_observe", {"source": "ghost"})
    assert not result.is_error
    assert 20 <= result.structured_content["transition_step"] <= 25
    images = [c for c in result.content if c.type == "image"]
    assert len(images) == 1 and images[0].mime_type == "image/png" and base64.b64decode(images[0].data)[:8] == PNG
    assert [c.type for c in no_image.content] == ["text"] and no_image.structured_content["plot_path"]
    assert missing.is_error and "ghost" in missing.content[0].text


def test_a_collapsing_run_is_told_to_stop_and_retrain_guarded(tmp_path):
    rows = [{"step": s, "reward": 0.5 + s / 200, "carl/phi_mean": 0.97, "carl/diversity": 0.6 - 0.5 * s / 100,
             "completions/mean_length": 12.0} for s in range(100)]
    path = write_jsonl(tmp_path / "collapse.jsonl", rows)
    out = OBSERVE.call({"source": str(path), "plot": False}, ToolContext())
    trap = next(r for r in out.stop_rules if r.rule == "coherence_trap")
    assert trap.status == "triggered" and out.should_stop and "guarded" in out.next
