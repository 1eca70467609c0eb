"""Every tool through the in-memory MCP client: schemas, annotations, answers and errors."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client
from pydantic import BaseModel

from carl_studio.server.app import build_server
from carl_studio.tools.base import Request, Response, ToolSpec
from carl_studio.tools.registry import TOOLS
from tests.tools.support import FINAL, scripted_jobs

pytestmark = pytest.mark.anyio


async def _wait_state(client, job_id, states, timeout_s=30):
    with anyio.fail_after(timeout_s):
        while True:
            job = (await client.call_tool("carl_status", {"job_id": job_id})).structured_content["job"]
            if job["state"] in states:
                return job
            await anyio.sleep(0.05)


async def test_every_tool_is_listed_with_flat_described_arguments_and_honest_hints():
    async with Client(build_server(jobs=scripted_jobs())) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(listed) == {spec.name for spec in TOOLS}
    for spec in TOOLS:
        tool = listed[spec.name]
        properties = tool.input_schema["properties"]
        assert set(properties) == set(spec.request.model_fields)
        assert all(prop.get("description") for prop in properties.values()), spec.name
        assert tool.output_schema is not None and tool.description
    hints = {name: tool.annotations for name, tool in listed.items()}
    for name in ("carl_status", "carl_logs", "carl_compute"):
        assert hints[name].read_only_hint and not hints[name].destructive_hint
    assert hints["carl_stop"].destructive_hint and hints["carl_stop"].idempotent_hint
    assert not hints["carl_train"].read_only_hint and not hints["carl_train"].idempotent_hint


async def test_train_status_logs_stop_through_the_client():
    async with Client(build_server(jobs=scripted_jobs(step_s=0.5))) as client:
        started = await client.call_tool("carl_train", {"max_steps": 40})
        assert not started.is_error, started.content
        job_id = started.structured_content["job_id"]
        running = await _wait_state(client, job_id, {"running"})
        assert running["poll_after_s"] >= 5
        with anyio.fail_after(30):
            while not (logs := await client.call_tool("carl_logs", {"job_id": job_id})).structured_content["lines"]:
                await anyio.sleep(0.1)
        assert logs.structured_content["more"] and logs.structured_content["state"] == "running"
        stopped = await client.call_tool("carl_stop", {"job_id": job_id, "reason": "enough"})
        assert stopped.structured_content["job"]["state"] == "cancelled"
        again = await client.call_tool("carl_stop", {"job_id": job_id})
        assert again.structured_content["already_ended"] is True
        listed = await client.call_tool("carl_status", {"state": "cancelled"})
        assert [job["job_id"] for job in listed.structured_content["jobs"]] == [job_id]


async def test_a_finished_job_reports_its_carl_metrics():
    async with Client(build_server(jobs=scripted_jobs())) as client:
        job_id = (await client.call_tool("carl_train", {"max_steps": 2})).structured_content["job_id"]
        job = await _wait_state(client, job_id, FINAL)
    assert job["state"] == "succeeded" and job["metrics"]["carl/phi_mean"] == 0.5


async def test_compute_lists_backends_with_credential_presence_only():
    async with Client(build_server(jobs=scripted_jobs())) as client:
        answer = (await client.call_tool("carl_compute", {})).structured_content
    by_name = {b["name"]: b for b in answer["backends"]}
    assert by_name["local"]["ready"] and not by_name["tinker"]["supported"] and not by_name["prime"]["supported"]


async def test_engine_errors_name_the_field_and_write_nothing():
    jobs = scripted_jobs()
    async with Client(build_server(jobs=jobs)) as client:
        bad = await client.call_tool("carl_train", {"method": "sft", "rewards": {"carl": 1}})
        unknown = await client.call_tool("carl_status", {"job_id": "zzzz9999"})
        misspelt = await client.call_tool("carl_train", {"max_step": 3})
        out_of_range = await client.call_tool("carl_train", {"max_steps": 0})
    assert bad.is_error and "rewards: apply to method grpo only" in bad.content[0].text
    assert unknown.is_error and "no job with job_id 'zzzz9999'" in unknown.content[0].text
    assert misspelt.is_error and "max_step: is not a field of TrainRequest (did you mean max_steps" in misspelt.content[0].text
    assert out_of_range.is_error and "max_steps: must be between 1 and 1,000,000; got 0" in out_of_range.content[0].text
    assert jobs.store.count() == 0


class _Boom(Request):
    pass


class _Never(Response):
    pass


def _explode(request, ctx):
    raise RuntimeError("secret internal detail at /private/path")


async def test_an_unexpected_error_reaches_the_client_as_advice_without_its_traceback(caplog):
    boom = ToolSpec(name="carl_boom", title="Boom", description="fails", request=_Boom, response=_Never, fn=_explode)
    async with Client(build_server(tools=[boom], jobs=scripted_jobs(), log_file="/tmp/x.log")) as client:
        answer = await client.call_tool("carl_boom", {})
    text = answer.content[0].text
    assert answer.is_error and "internal error (RuntimeError)" in text and "/tmp/x.log" in text
    assert "secret" not in text and "Traceback" not in text
    assert "secret internal detail" in caplog.text  # the log keeps it, with its traceback


def test_response_models_are_pydantic_models_with_described_fields():
    for spec in TOOLS:
        for model in (spec.request, spec.response):
            assert issubclass(model, BaseModel)
            for name, field in model.model_fields.items():
                assert field.description or name == "job_id", f"{model.__name__}.{name}"
