"""carl_push through the tool function and the in-memory MCP client, against the Hub stand-in."""

from __future__ import annotations

import pytest
from mcp import Client
from standins.hub_repos import hub_standin  # noqa: F401  (fixture)

from carl_engine.errors import GateRefusedError, InvalidSpecError, MissingCredentialsError
from carl_studio.server.app import build_server
from carl_studio.tools.base import ToolContext
from carl_studio.tools.push import PUSH
from tests.carl_engine.test_hub import make_job, write_eval


def test_the_tool_pushes_a_job_that_passed_its_eval(hub_standin):
    _, hub = hub_standin
    write_eval(make_job("p1"), passed=True)
    out = PUSH.call({"checkpoint": "p1", "repo": "alice/p1"}, ToolContext())
    assert out.gate.state == "passed" and out.url.endswith("/alice/p1") and "README.md" in out.files
    assert "README.md" in hub.repos["alice/p1"].files and out.next.startswith("Done:")


def test_local_dir_needs_no_repo_and_no_token(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    write_eval(make_job("p2"), passed=True)
    out = PUSH.call({"checkpoint": "p2", "local_dir": str(tmp_path / "out")}, ToolContext())
    assert out.local_dir and (tmp_path / "out" / "README.md").exists() and out.repo_id is None


@pytest.mark.parametrize(
    "arguments, error, field",
    [({"checkpoint": "p3", "repo": "bad repo"}, InvalidSpecError, "repo"),
     ({"checkpoint": "p3"}, InvalidSpecError, "repo"),
     ({"checkpoint": "/no/such/checkpoint", "repo": "alice/x"}, InvalidSpecError, "checkpoint"),
     ({"checkpoint": "p3", "repo": "alice/x", "force": "maybe"}, InvalidSpecError, "force")],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_pushed(hub_standin, arguments, error, field):
    _, hub = hub_standin
    write_eval(make_job("p3"), passed=True)
    with pytest.raises(error) as info:
        PUSH.call(arguments, ToolContext())
    assert info.value.field == field and hub.repos == {}


def test_no_token_is_a_clear_credentials_error(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    write_eval(make_job("p4"), passed=True)
    with pytest.raises(MissingCredentialsError, match="HF_TOKEN"):
        PUSH.call({"checkpoint": "p4", "repo": "alice/x"}, ToolContext())


@pytest.mark.anyio
async def test_through_the_mcp_client_a_failed_gate_is_a_refusal_that_says_how_to_lift_it(hub_standin):
    _, hub = hub_standin
    write_eval(make_job("p5"), passed=False)
    async with Client(build_server()) as client:
        refused = await client.call_tool("carl_push", {"checkpoint": "p5", "repo": "alice/p5"})
        forced = await client.call_tool("carl_push", {"checkpoint": "p5", "repo": "alice/p5", "force": True})
        unknown = await client.call_tool("carl_push", {"checkpoint": "nojob", "repo": "alice/p5"})
    assert refused.is_error and "failed" in refused.content[0].text and "force=true" in refused.content[0].text
    assert not forced.is_error and forced.structured_content["forced"] is True
    assert unknown.is_error and "nojob" in unknown.content[0].text
    assert "FAILED" in hub.repos["alice/p5"].files["README.md"].decode()
    assert GateRefusedError.__name__ not in refused.content[0].text  # a message, not a traceback
