"""Metrics are read alike from a run directory, a trainer_state.json, a JSONL file and a trackio project."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest
from standins.carl_runs import paper_run, write_jsonl, write_run_dir

from carl_engine.errors import InvalidSpecError, JobNotFoundError
from carl_engine.observe import observe, resolve
from carl_engine.observe.readers import trackio_db_path
from carl_engine.runs import RunDir


def test_a_job_id_reads_its_run_directory_events(carl_home):
    write_run_dir(RunDir.for_job("job7"), paper_run(0))
    log = resolve("job7")
    assert log.source_kind == "run_dir" and log.job_id == "job7"
    assert len(log.series["accuracy"]) == 47 and log.series["entropy"][0][0] == 0


def test_a_run_without_metric_events_falls_back_on_its_latest_trainer_state(tmp_path):
    run = RunDir(tmp_path / "run").create()
    run.write_spec({"kind": "train"})
    for step in (2, 4):
        ckpt = run.checkpoints_dir / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        history = [{"step": s, "loss": 1.0 / s, "mean_token_accuracy": 0.1 * s} for s in range(1, step + 1)]
        (ckpt / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    log = resolve(str(run.path))
    assert [s for s, _ in log.series["loss"]] == [1, 2, 3, 4]


def test_trainer_state_log_history_is_read_and_non_numbers_skipped(tmp_path):
    path = tmp_path / "trainer_state.json"
    history = [{"step": 1, "loss": 2.0, "epoch": 0.1, "note": "x"}, {"step": 2, "loss": math.nan, "entropy": 1.5}]
    path.write_text(json.dumps({"log_history": history, "global_step": 2}))
    log = resolve(str(path))
    assert log.source_kind == "trainer_state"
    assert set(log.series) == {"loss", "entropy"}
    assert math.isnan(log.series["loss"][1][1])


def test_a_jsonl_file_tolerates_a_partial_last_line(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", paper_run(1)[:10])
    with open(path, "a") as fh:
        fh.write('{"step": 10, "accur')
    log = resolve(str(path))
    assert len(log.series["accuracy"]) == 10


def test_a_broken_jsonl_line_in_the_middle_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 0, "loss": 1}\nnot json\n{"step": 1, "loss": 0.5}\n')
    with pytest.raises(InvalidSpecError, match="line 2"):
        resolve(str(path))


def _trackio_db(path, rows, *, old_schema=False):
    """A database laid out as trackio writes it (table `metrics`; JSON text or bytes; NaN as a string)."""
    with sqlite3.connect(path) as conn:
        project_col = "project_name TEXT NOT NULL," if old_schema else ""
        conn.execute(
            "CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT NOT NULL, "
            f"{project_col} run_name TEXT NOT NULL, step INTEGER NOT NULL, metrics TEXT NOT NULL)"
        )
        for run, step, metrics in rows:
            blob = json.dumps(metrics)
            values = ("2026-11-25T10:00:00", *(["proj"] if old_schema else []), run, step, blob.encode() if step % 2 else blob)
            marks = ", ".join("?" * len(values))
            cols = "timestamp, " + ("project_name, " if old_schema else "") + "run_name, step, metrics"
            conn.execute(f"INSERT INTO metrics ({cols}) VALUES ({marks})", values)


@pytest.mark.parametrize("old_schema", [False, True])
def test_a_local_trackio_project_is_read_from_its_sqlite_store(tmp_path, monkeypatch, old_schema):
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    (tmp_path / "trackio").mkdir()
    rows = [("run-a", r["step"], {k: v for k, v in r.items() if k != "step"}) for r in paper_run(2)]
    rows.append(("run-b", 0, {"reward": "NaN"}))
    _trackio_db(trackio_db_path("my project!"), rows, old_schema=old_schema)

    log = resolve("trackio:my project!:run-a")
    assert log.source_kind == "trackio" and len(log.series["accuracy"]) == 47
    other = resolve("trackio:my project!:run-b")
    assert math.isnan(other.series["reward"][0][1])
    obs = observe("trackio:my project!:run-a")
    assert 20 <= obs.transition_step <= 25
    assert obs.plot_path.endswith("observe/trackio-myproject-run-a.png")
    assert sorted(p.name for p in (tmp_path / "trackio").iterdir()) == ["myproject.db"]  # trackio's folder untouched


def test_a_trackio_project_with_several_runs_asks_which(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path))
    _trackio_db(tmp_path / "p.db", [("a", 0, {"loss": 1}), ("b", 0, {"loss": 2})])
    with pytest.raises(InvalidSpecError, match="trackio:<project>:<run>"):
        resolve("trackio:p")
    with pytest.raises(InvalidSpecError, match="no run 'c'"):
        resolve("trackio:p:c")
    with pytest.raises(InvalidSpecError, match="no trackio project"):
        resolve("trackio:absent")


def test_an_unknown_job_id_names_the_id():
    with pytest.raises(JobNotFoundError, match="nojob42"):
        resolve("nojob42")


@pytest.mark.parametrize("bad", ["", "/no/such/file.jsonl", "missing.jsonl"])
def test_a_missing_source_is_a_clear_error_on_the_source_field(bad):
    with pytest.raises(InvalidSpecError) as info:
        resolve(bad)
    assert info.value.field == "source"


def test_an_unreadable_file_kind_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidSpecError, match="expected a .jsonl"):
        resolve(str(tmp_path / "notes.txt"))
    (tmp_path / "x.db").write_text("not sqlite")
    with pytest.raises(InvalidSpecError, match="not a readable trackio database"):
        resolve(str(tmp_path / "x.db"))
