"""The job store: compare-and-set transitions recorded with their reasons, progress updates,
filtered lists that stay fast with 10,000 jobs, migrations, and several processes at once."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import time
from itertools import product

import pytest

from carl_engine.errors import IllegalTransitionError, JobNotFoundError
from carl_engine.jobs import store as store_module
from carl_engine.jobs.states import ALLOWED, TERMINAL, JobState, check_transition, sources_of
from carl_engine.jobs.store import ID_ALPHABET, JobStore, SchemaVersionError, new_job_id
from carl_engine.paths import jobs_db


def make(store: JobStore, kind: str = "train", **kwargs):
    return store.create(kind=kind, spec={"max_steps": 3}, backend="local", target=None, run_dir_for=lambda i: f"/runs/{i}", **kwargs)


# the state machine ------------------------------------------------------------------------
LEGAL = {
    ("queued", "starting"), ("queued", "cancelled"), ("queued", "failed"),
    ("starting", "running"), ("starting", "succeeded"), ("starting", "failed"), ("starting", "cancelled"),
    ("starting", "lost"),
    ("running", "succeeded"), ("running", "failed"), ("running", "cancelled"), ("running", "lost"),
}  # fmt: skip


@pytest.mark.parametrize("src,dst", list(product(JobState, JobState)))
def test_the_state_machine_allows_exactly_the_documented_transitions(src, dst):
    legal = (src.value, dst.value) in LEGAL
    assert (dst in ALLOWED.get(src, frozenset())) == legal
    assert (src in sources_of(dst)) == legal
    if legal:
        check_transition(src, dst)
    else:
        with pytest.raises(IllegalTransitionError):
            check_transition(src, dst)


@pytest.mark.parametrize("src,dst", sorted(product([s.value for s in JobState], repeat=2)))
def test_the_store_applies_a_transition_only_when_the_state_machine_allows_it(src, dst):
    store = JobStore()
    job = make(store)
    path = {"queued": [], "starting": ["starting"], "running": ["starting", "running"],
            "succeeded": ["starting", "succeeded"], "failed": ["failed"], "cancelled": ["cancelled"],
            "lost": ["starting", "lost"]}[src]  # fmt: skip
    for state in path:
        store.transition(job.job_id, JobState(state), reason="setup")
    before = store.events(job.job_id)
    if (src, dst) in LEGAL:
        after = store.transition(job.job_id, JobState(dst), reason="because")
        assert after.state == JobState(dst)
        assert (store.events(job.job_id)[-1].from_state, store.events(job.job_id)[-1].reason) == (JobState(src), "because")
    else:
        with pytest.raises(IllegalTransitionError, match=f"from {src} to {dst}"):
            store.transition(job.job_id, JobState(dst), reason="never")
        assert store.get(job.job_id).state == JobState(src)
        assert store.events(job.job_id) == before  # nothing written


# ids, create, get, update -----------------------------------------------------------------
def test_job_ids_are_eight_crockford_characters_and_collisions_are_retried(monkeypatch):
    assert all(len(i) == 8 and set(i) <= set(ID_ALPHABET) for i in (new_job_id() for _ in range(200)))
    store = JobStore()
    first = make(store)
    ids = iter([first.job_id, first.job_id, "zzzzzzzz"])
    monkeypatch.setattr(store_module, "new_job_id", lambda: next(ids))
    assert make(store).job_id == "zzzzzzzz"
    assert store.count() == 2


def test_a_new_job_is_queued_with_its_creation_recorded():
    store = JobStore()
    job = make(store, attempt=2, max_steps=3, reason="resumes x")
    assert (job.state, job.attempt, job.max_steps, job.run_dir) == (JobState.QUEUED, 2, 3, f"/runs/{job.job_id}")
    assert job.created_at.tzinfo is not None and job.started_at is None
    [event] = store.events(job.job_id)
    assert (event.from_state, event.to_state, event.reason) == (None, JobState.QUEUED, "resumes x")
    assert store.path == jobs_db()


def test_an_unknown_job_id_is_named_in_the_error():
    store = JobStore()
    for call in (lambda: store.get("nope1234"), lambda: store.transition("nope1234", JobState.STARTING, reason="x"),
                 lambda: store.update("nope1234", step=3)):  # fmt: skip
        with pytest.raises(JobNotFoundError, match="nope1234"):
            call()


def test_transitions_set_fields_and_progress_updates_use_a_cursor_compare_and_set():
    store = JobStore()
    job = make(store)
    job = store.transition(job.job_id, JobState.STARTING, reason="go", handle={"pid": 7, "start_time": 1})
    assert job.handle == {"pid": 7, "start_time": 1}
    assert store.update(job.job_id, cursor_from=0, events_cursor=120, step=2, metrics={"loss": 0.5}, checkpoint="/c/2")
    assert not store.update(job.job_id, cursor_from=0, events_cursor=99, step=1)  # lost the race: no change
    job = store.get(job.job_id)
    assert (job.events_cursor, job.step, job.metrics, job.checkpoint) == (120, 2, {"loss": 0.5}, "/c/2")
    with pytest.raises(ValueError, match="cannot set column 'state'"):
        store.update(job.job_id, state="running")
    done = store.transition(job.job_id, JobState.SUCCEEDED, reason="done", ended_at=time.time())
    assert done.ended_at is not None and done.state.is_terminal()


def test_expect_narrows_the_compare_and_set_to_the_state_the_caller_saw():
    store = JobStore()
    job = make(store)
    store.transition(job.job_id, JobState.STARTING, reason="go")
    with pytest.raises(IllegalTransitionError):
        store.transition(job.job_id, JobState.CANCELLED, reason="x", expect=JobState.QUEUED)
    assert store.transition(job.job_id, JobState.CANCELLED, reason="x", expect=[JobState.STARTING]).state == JobState.CANCELLED


# lists ----------------------------------------------------------------------------------
def test_list_filters_by_state_kind_and_time_newest_first():
    store = JobStore()
    a = make(store)
    b = make(store, kind="eval")
    cut = time.time()
    time.sleep(0.01)
    c = make(store)
    store.transition(c.job_id, JobState.STARTING, reason="go")
    assert [j.job_id for j in store.list()] == [c.job_id, b.job_id, a.job_id]
    assert [j.job_id for j in store.list(state="starting")] == [c.job_id]
    assert [j.job_id for j in store.list(state=["queued", JobState.STARTING], kind="train")] == [c.job_id, a.job_id]
    assert [j.job_id for j in store.list(since=cut)] == [c.job_id]
    assert len(store.list(limit=1)) == 1
    with pytest.raises(ValueError, match="limit"):
        store.list(limit=0)


def test_listing_stays_fast_with_ten_thousand_jobs():
    store = JobStore()
    conn = sqlite3.connect(store.path)
    now = time.time()
    rows = [(f"j{i:07d}", "train" if i % 3 else "eval", "{}", "local", ["queued", "running", "succeeded"][i % 3], now + i, now + i, f"/r/{i}")
            for i in range(10_000)]  # fmt: skip
    conn.executemany("INSERT INTO jobs (job_id, kind, spec, backend, state, created_at, updated_at, run_dir) VALUES (?,?,?,?,?,?,?,?)", rows)
    conn.commit()
    plans = [" ".join(r[-1] for r in conn.execute(f"EXPLAIN QUERY PLAN SELECT * FROM jobs WHERE {w} ORDER BY created_at DESC LIMIT 50"))
             for w in ("state IN ('running')", "kind = 'eval'", "created_at >= 0")]  # fmt: skip
    conn.close()
    assert all("USING INDEX" in plan for plan in plans), plans
    began = time.perf_counter()
    for _ in range(10):
        running = store.list(state="running", limit=50)
        recent = store.list(kind="eval", since=now + 9_000, limit=50)
    per_call_ms = (time.perf_counter() - began) / 20 * 1000
    assert len(running) == 50 and all(j.state == JobState.RUNNING for j in running)
    assert recent[0].job_id == "j0009999" and len(recent) == 50
    assert per_call_ms < 50, per_call_ms


# migrations -----------------------------------------------------------------------------
def test_a_new_database_is_at_the_latest_schema_and_reopening_migrates_nothing():
    store = JobStore()
    assert store.schema_version() == len(store_module.MIGRATIONS)
    make(store)
    assert JobStore().count() == 1


def test_an_older_database_is_migrated_forward_keeping_its_rows(monkeypatch):
    store = JobStore()
    job = make(store)
    store.close()
    extra = ("ALTER TABLE jobs ADD COLUMN note TEXT", "UPDATE jobs SET note = 'migrated'")
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, extra])
    upgraded = JobStore()
    assert upgraded.schema_version() == 2
    assert upgraded.get(job.job_id).job_id == job.job_id
    conn = sqlite3.connect(upgraded.path)
    assert conn.execute("SELECT note FROM jobs").fetchone() == ("migrated",)
    conn.close()


def test_a_database_from_a_newer_version_is_refused_with_a_clear_error():
    JobStore().close()
    conn = sqlite3.connect(jobs_db())
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaVersionError, match="schema version 99"):
        JobStore()


# several processes ----------------------------------------------------------------------
def _worker(path: str, n: int, seed: int, out) -> None:
    """Create n jobs, then race every job in the store through the state machine."""
    import random

    rng = random.Random(seed)
    store = JobStore(path)
    mine = [make(store).job_id for _ in range(n)]
    illegal = 0
    for job_id in rng.sample(mine * 3, len(mine) * 3):
        target = rng.choice([JobState.STARTING, JobState.RUNNING, JobState.SUCCEEDED, JobState.CANCELLED, JobState.LOST])
        try:
            store.transition(job_id, target, reason=f"worker {seed}")
        except IllegalTransitionError:
            illegal += 1
        store.update(job_id, step=rng.randrange(100))
    out.put((mine, illegal))


def test_several_processes_creating_and_updating_at_once_lose_nothing_and_never_record_an_illegal_step():
    path = str(jobs_db())
    JobStore(path).close()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(path, 100, seed, out)) for seed in range(4)]
    for w in workers:
        w.start()
    results = [out.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(30)
        assert w.exitcode == 0
    created = [job_id for mine, _ in results for job_id in mine]
    store = JobStore(path)
    assert store.count() == len(created) == len(set(created)) == 400
    conn = sqlite3.connect(path)
    history: dict[str, list[tuple[str | None, str]]] = {}
    for job_id, src, dst in conn.execute("SELECT job_id, from_state, to_state FROM job_events ORDER BY id"):
        history.setdefault(job_id, []).append((src, dst))
    conn.close()
    for job_id in created:
        steps = history[job_id]
        assert steps[0] == (None, "queued")
        for (_, prev_dst), (src, dst) in zip(steps, steps[1:]):
            assert src == prev_dst  # each transition starts where the last one ended
            check_transition(JobState(src), JobState(dst))
        assert store.get(job_id).state.value == steps[-1][1]
    assert sum(1 for s in history.values() if JobState(s[-1][1]) in TERMINAL) > 0


def _open(path: str, out) -> None:
    out.put(JobStore(path).schema_version())


def test_several_processes_opening_a_fresh_database_at_once_all_see_one_schema():
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    openers = [ctx.Process(target=_open, args=(str(jobs_db()), out)) for _ in range(4)]
    for p in openers:
        p.start()
    versions = [out.get(timeout=60) for _ in openers]
    for p in openers:
        p.join(30)
    assert versions == [len(store_module.MIGRATIONS)] * 4
    conn = sqlite3.connect(jobs_db())
    assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (1,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
