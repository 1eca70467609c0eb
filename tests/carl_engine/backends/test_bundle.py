"""The bundle is one script that parses, declares its dependencies and runs a spec to a result."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys

import pytest

from carl_engine.backends.bundle import (
    EVENT_MARK,
    RESULT_MARK,
    read_metadata,
    replay_relay,
    runtime_dependencies,
    write_bundle,
)
from carl_engine.errors import InvalidSpecError
from carl_engine.runs import RunDir

TINY_SPEC = {"kind": "train", "method": "sft", "model": "carl-tiny", "task": "arithmetic", "max_steps": 1, "seed": 0}


def test_the_bundle_is_valid_python_that_embeds_the_spec(tmp_path):
    path = write_bundle(TINY_SPEC, tmp_path, name="abc")
    assert path == tmp_path / "carl-job-abc.py"
    tree = ast.parse(path.read_text())
    spec_json = next(
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SPEC_JSON"
    )
    assert json.loads(spec_json) == TINY_SPEC


def test_without_a_name_the_script_is_named_after_the_kind_and_the_spec(tmp_path):
    first = write_bundle(TINY_SPEC, tmp_path)
    assert re.fullmatch(r"carl-job-train-[0-9a-f]{8}\.py", first.name)
    assert write_bundle(TINY_SPEC, tmp_path) == first
    assert write_bundle({**TINY_SPEC, "max_steps": 2}, tmp_path) != first


def test_its_metadata_block_is_toml_listing_carl_studio_and_its_runtime_dependencies(tmp_path):
    text = write_bundle(TINY_SPEC, tmp_path / "job.py").read_text()
    meta = read_metadata(text)
    assert meta["requires-python"] == ">=3.11"
    deps = meta["dependencies"]
    assert deps[0].startswith("carl-studio==")
    assert set(runtime_dependencies()) <= set(deps)
    assert any(dep.startswith("trl") and "<2" in dep for dep in deps)  # ranges kept
    assert not any(dep.startswith(("ray", "pytest", "anthropic")) for dep in deps)  # extras left out


def test_a_configurable_source_replaces_the_pypi_requirement(tmp_path, monkeypatch):
    monkeypatch.setenv("CARL_BUNDLE_SOURCE", "git+https://example.org/carl-studio@main")
    deps = read_metadata(write_bundle(TINY_SPEC, tmp_path).read_text())["dependencies"]
    assert deps[0] == "carl-studio @ git+https://example.org/carl-studio@main"


def test_bad_input_names_the_field(tmp_path):
    with pytest.raises(InvalidSpecError) as err:
        write_bundle(["not", "a", "mapping"], tmp_path)  # type: ignore[arg-type]
    assert err.value.field == "spec"
    with pytest.raises(InvalidSpecError) as err:
        write_bundle(TINY_SPEC, tmp_path, name="../escape")
    assert err.value.field == "name"
    with pytest.raises(InvalidSpecError) as err:
        write_bundle(TINY_SPEC, tmp_path, source="rm -rf /")
    assert err.value.field == "source"
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_relayed_log_lines_rebuild_events_and_result(tmp_path):
    lines = [
        "some trainer output",
        EVENT_MARK + json.dumps({"time": 1.0, "kind": "metrics", "step": 1, "metrics": {"loss": 2.5}}),
        EVENT_MARK + json.dumps({"time": 2.0, "kind": "checkpoint", "step": 1, "path": "checkpoints/checkpoint-1"}),
        RESULT_MARK + json.dumps({"status": "succeeded", "step": 1, "metrics": {"loss": 2.5}}),
    ]
    lines += ["  5%|#   | 1/20\r" + lines[1].replace('"step": 1', '"step": 2'), EVENT_MARK + '{"time": 3.0, "kind": "met']
    run = RunDir(tmp_path / "run")
    assert replay_relay(lines, run) == (3, True)  # the mark after a progress bar counts, the cut line not
    assert [e["kind"] for e in run.iter_events()] == ["metrics", "checkpoint", "metrics"]
    before = run.events_path.read_bytes()
    replay_relay(lines, run)
    assert run.events_path.read_bytes() == before  # a replay rewrites the same bytes: cursors stay valid
    assert run.read_result().status == "succeeded"


@pytest.mark.slow
def test_running_the_bundle_with_python_trains_a_tiny_spec_to_a_result(tmp_path):
    script = write_bundle(TINY_SPEC, tmp_path, name="tiny")
    run_dir = tmp_path / "somewhere" / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CARL_RELAY_EVENTS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(run_dir)], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "succeeded" and result["step"] == 1
    assert json.loads((run_dir / "spec.json").read_text()) == TINY_SPEC
    relayed = RunDir(tmp_path / "relayed")
    assert replay_relay(proc.stdout.splitlines(), relayed)[1]  # the log alone rebuilds the run's verdict
    assert relayed.read_result() == RunDir(run_dir).read_result()
    assert relayed.iter_events() == RunDir(run_dir).iter_events()
