"""carl_status, carl_logs and carl_stop over real job processes (scripted, no training)."""

from __future__ import annotations

import pytest

from carl_engine.errors import InvalidSpecError, JobNotFoundError
from carl_studio.tools.jobs import LOGS, STATUS, STOP
from carl_studio.tools.models import poll_after
from carl_studio.tools.train import TRAIN
from tests.tools.support import FINAL, scripted_context, wait_for


def _start(ctx, **fields):
    return TRAIN.call({"max_steps": 3, **fields}, ctx)


def test_status_of_a_finished_job_reports_its_steps_metrics_and_checkpoint():
    ctx = scripted_context()
    job_id = _start(ctx).job_id
    job = wait_for(lambda: (s := STATUS.call({"job_id": job_id}, ctx).job) and s.state in FINAL and s)
    assert job.state == "succeeded" and job.step == 3 and job.max_steps == 3 and job.progress == 1.0
    assert job.metrics["carl/phi_mean"] == 0.5 and job.checkpoint.endswith("checkpoint-3")
    assert job.poll_after_s is None and job.error is None and job.created_at.endswith("+00:00")


def test_status_without_a_job_id_lists_jobs_newest_first_and_filters_by_state():
    ctx = scripted_context(step_s=5)
    first, second = _start(ctx).job_id, _start(ctx).job_id
    listed = STATUS.call({}, ctx)
    assert [j.job_id for j in listed.jobs][:2] == [second, first] and listed.job is None
    STOP.call({"job_id": first}, ctx)
    assert [j.job_id for j in STATUS.call({"state": "cancelled"}, ctx).jobs] == [first]
    STOP.call({"job_id": second}, ctx)


def test_an_unknown_job_id_is_named_in_the_error():
    with pytest.raises(JobNotFoundError, match="zzzz9999"):
        STATUS.call({"job_id": "zzzz9999"}, scripted_context())


def test_logs_page_through_the_job_output_with_a_cursor():
    ctx = scripted_context()
    job_id = _start(ctx).job_id
    wait_for(lambda: STATUS.call({"job_id": job_id}, ctx).job.state in FINAL)
    first = LOGS.call({"job_id": job_id, "limit": 2}, ctx)
    rest = LOGS.call({"job_id": job_id, "cursor": first.next_cursor}, ctx)
    lines = first.lines + rest.lines
    assert first.more and len(first.lines) == 2
    assert any("step 3/3" in line for line in lines) and not rest.more
    events = LOGS.call({"job_id": job_id, "stream": "events"}, ctx)
    assert any('"carl/phi_mean"' in line for line in events.lines)


def test_stop_cancels_a_running_job_and_is_idempotent():
    ctx = scripted_context(step_s=5)
    job_id = _start(ctx, max_steps=50).job_id
    wait_for(lambda: STATUS.call({"job_id": job_id}, ctx).job.state == "running")
    stopped = STOP.call({"job_id": job_id, "reason": "test"}, ctx)
    assert stopped.job.state == "cancelled" and not stopped.already_ended
    again = STOP.call({"job_id": job_id}, ctx)
    assert again.job.state == "cancelled" and again.already_ended


def test_a_bad_argument_names_its_field_and_rule():
    with pytest.raises(InvalidSpecError) as err:
        LOGS.call({"job_id": "abc", "limit": 0}, scripted_context())
    assert err.value.field == "limit" and "must be between 1 and 1,000; got 0" in str(err.value)
    with pytest.raises(InvalidSpecError, match="job_id"):
        STATUS.call({"job_id": "../etc"}, scripted_context())
    with pytest.raises(InvalidSpecError, match="jobid: is not a field of StatusRequest .did you mean job_id"):
        STATUS.call({"jobid": "abc"}, scripted_context())


def test_poll_after_is_a_tenth_of_the_remaining_run_within_bounds():
    assert poll_after("running", 10, 110, 0.0, now=100.0) == 100
    assert poll_after("running", 1, 2, 0.0, now=0.1) == 5
    assert poll_after("running", 1, 100_000, 0.0, now=100.0) == 600
    assert poll_after("queued", 0, 10, None) == 10
    assert poll_after("failed", 3, 10, 0.0) is None


def test_status_shows_the_main_metrics_by_default_and_every_one_when_asked():
    ctx = scripted_context()
    job_id = _start(ctx).job_id
    wait_for(lambda: STATUS.call({"job_id": job_id}, ctx).job.state in FINAL)
    ctx.jobs.store.update(job_id, metrics={"carl/phi_mean": 0.5, "train_runtime": 1.0, "rewards/arithmetic/std": 0.1})
    main = STATUS.call({"job_id": job_id}, ctx).job
    assert main.metrics == {"carl/phi_mean": 0.5} and main.metrics_omitted == 2
    everything = STATUS.call({"job_id": job_id, "metrics": "all"}, ctx).job
    assert set(everything.metrics) == {"carl/phi_mean", "train_runtime", "rewards/arithmetic/std"}
    assert everything.metrics_omitted == 0
