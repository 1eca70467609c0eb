"""Fuzz every registered tool's input schema through the MCP client: random and malformed arguments.

The server must stay up, every answer must be either a result that validates against the tool's
response model or a tool error without traceback text, and a rejected call must write no job row.
Jobs that are accepted run scripted processes on every backend name (nothing leaves the machine).
"""

from __future__ import annotations

import sys

import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from carl_engine.backends import BACKENDS
from carl_engine.backends.local import LocalBackend
from carl_engine.jobs.manager import JobManager
from carl_studio.server.app import build_server
from carl_studio.tools.registry import TOOLS
from tests.tools.support import SCRIPT

TRACEBACK_MARKS = ("Traceback (most recent call last)", 'File "/', "site-packages", ".py\", line")
# values that tend to break naive code: empty, huge, negative, wrong types, path tricks, NaN-like strings
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30) | st.sampled_from(["", "../../etc/passwd", "NaN", "carl-tiny", "local", "-1", "1e309"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


def value_for(schema: dict) -> st.SearchStrategy:
    """Values shaped by the property's schema (enums, bounds) mixed with arbitrary JSON."""
    options = [JSON_VALUES]
    if "enum" in schema:
        options.append(st.sampled_from(schema["enum"]))
    kind = schema.get("type")
    if kind == "integer":
        low, high = schema.get("minimum", -(10**6)), schema.get("maximum", 10**6)
        options.append(st.integers(low - 2, min(high, low + 1000) + 2))
    if kind == "boolean":
        options.append(st.booleans())
    for alternative in schema.get("anyOf", ()):
        if alternative.get("type") != "null":
            options.append(value_for(alternative))
    return st.one_of(options)


def arguments_for(spec) -> st.SearchStrategy:
    properties = spec.request.model_json_schema()["properties"]
    known = st.fixed_dictionaries({}, optional={name: value_for(prop) for name, prop in properties.items()})
    extra = st.dictionaries(st.text(min_size=1, max_size=12), JSON_VALUES, max_size=2)
    return st.one_of(known, st.tuples(known, extra).map(lambda pair: {**pair[0], **pair[1]}))


@pytest.fixture(scope="module")
def served(tmp_path_factory, models_cache):
    """One server and one in-memory client for the whole module, driven from a blocking portal."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CARL_HOME", str(tmp_path_factory.mktemp("fuzz_home")))
        env.setenv("CARL_MODELS_DIR", models_cache)
        scripted = LocalBackend(command=[sys.executable, str(SCRIPT), "--step-s", "0"], grace_s=2)
        jobs = JobManager(backends={name: scripted for name in BACKENDS})
        with start_blocking_portal(backend="asyncio") as portal:
            client = portal.wrap_async_context_manager(Client(build_server(jobs=jobs)))
            with client as connected:
                yield portal, connected, jobs


@pytest.mark.parametrize("spec", TOOLS, ids=[spec.name for spec in TOOLS])
def test_random_and_malformed_arguments_never_crash_or_leak(spec, served):
    portal, client, jobs = served

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(arguments=arguments_for(spec))
    def check(arguments):
        before = jobs.store.count()
        answer = portal.call(client.call_tool, spec.name, arguments)
        text = " ".join(getattr(block, "text", "") for block in answer.content)
        if answer.is_error:
            assert not any(mark in text for mark in TRACEBACK_MARKS), text
            assert jobs.store.count() == before, f"rejected call wrote a job: {arguments}"
        else:
            spec.response.model_validate(answer.structured_content)

    check()
    assert portal.call(client.list_tools).tools  # still serving
