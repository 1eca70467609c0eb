"""The job store: one SQLite file (`$CARL_HOME/jobs.db`) shared by the server, the CLI and tests.

Every change of state is one compare-and-set, `UPDATE jobs SET state = ? … WHERE job_id = ?
AND state IN (<sources allowed by the state machine>)`, run inside a write transaction
(`BEGIN IMMEDIATE`) together with the `job_events` row that records it and its reason. A
change the state machine forbids, or one that lost a race to another process, raises
`IllegalTransitionError`; nothing is written then.

Concurrency: WAL journal (readers never wait for the writer), a busy timeout (writers queue
instead of failing), one connection per thread and process. The schema carries its version in
`schema_version`; `MIGRATIONS[i]` takes a database from version i to i + 1 and runs once,
under the write lock, so two processes opening a fresh file at the same moment are safe.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from carl_engine.errors import CarlError, IllegalTransitionError, JobNotFoundError
from carl_engine.jobs.states import ALLOWED, JobState, sources_of
from carl_engine.paths import jobs_db

JobKind = Literal["train", "eval", "bench", "pipeline"]
JOB_KINDS: tuple[str, ...] = ("train", "eval", "bench", "pipeline")

#: Crockford's base32 alphabet, lower case: no i, l, o or u, so ids read aloud without doubt.
ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
ID_LENGTH = 8  # 32**8 ≈ 1.1e12 ids; collisions are checked anyway

BUSY_TIMEOUT_S = 30.0

MIGRATIONS: list[Sequence[str]] = [
    # 0 -> 1: jobs, their transition history, and the indexes `list` filters use.
    (
        """
        CREATE TABLE jobs (
            job_id        TEXT PRIMARY KEY,
            kind          TEXT NOT NULL,
            spec          TEXT NOT NULL,           -- JSON
            backend       TEXT NOT NULL,
            target        TEXT,
            handle        TEXT NOT NULL DEFAULT '{}',  -- JSON
            state         TEXT NOT NULL,
            created_at    REAL NOT NULL,           -- epoch seconds
            started_at    REAL,
            ended_at      REAL,
            updated_at    REAL NOT NULL,
            step          INTEGER NOT NULL DEFAULT 0,
            max_steps     INTEGER,
            metrics       TEXT NOT NULL DEFAULT '{}',  -- JSON, latest value per name
            checkpoint    TEXT,
            error         TEXT,
            attempt       INTEGER NOT NULL DEFAULT 1,
            resumes       TEXT REFERENCES jobs(job_id),
            run_dir       TEXT NOT NULL,
            stage         TEXT,
            events_cursor INTEGER NOT NULL DEFAULT 0  -- bytes of events.jsonl already applied
        )
        """,
        """
        CREATE TABLE job_events (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id     TEXT NOT NULL REFERENCES jobs(job_id),
            time       REAL NOT NULL,
            from_state TEXT,                       -- NULL for the row's creation
            to_state   TEXT NOT NULL,
            reason     TEXT NOT NULL DEFAULT ''
        )
        """,
        "CREATE INDEX jobs_by_created ON jobs(created_at)",
        "CREATE INDEX jobs_by_state ON jobs(state, created_at)",
        "CREATE INDEX jobs_by_kind ON jobs(kind, created_at)",
        "CREATE INDEX job_events_by_job ON job_events(job_id, id)",
    ),
]


class SchemaVersionError(CarlError, RuntimeError):
    """The database was written by a newer CARL Studio than this one."""


class Job(BaseModel):
    """One job as the store knows it: the vocabulary of the CLI's JSON and the MCP responses."""

    job_id: str
    kind: JobKind
    spec: dict[str, Any] = Field(description="What was asked; for kind 'train' a TrainSpec as JSON.")
    backend: str = Field(description="local, ray, hf_jobs, runpod or ssh.")
    target: str | None = Field(None, description="The part of `compute` after 'backend:' (flavor, host…).")
    handle: dict[str, Any] = Field(default_factory=dict, description="What the backend needs to reattach.")
    state: JobState
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    step: int = Field(0, description="Latest global step reported.")
    max_steps: int | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="Latest value of each metric.")
    checkpoint: str | None = Field(None, description="Latest checkpoint folder.")
    error: str | None = None
    attempt: int = Field(1, description="1 for a fresh job, +1 for each resume.")
    resumes: str | None = Field(None, description="The job id this attempt resumes.")
    run_dir: str
    stage: str | None = Field(None, description="Current pipeline stage, for kind 'pipeline'.")
    events_cursor: int = Field(0, description="Bytes of events.jsonl already applied to this row.")


class JobEvent(BaseModel):
    """One recorded transition."""

    job_id: str
    time: datetime
    from_state: JobState | None
    to_state: JobState
    reason: str


_JSON_COLUMNS = ("spec", "handle", "metrics")
_TIME_COLUMNS = ("created_at", "started_at", "ended_at")
#: columns a transition or a progress update may set besides state
_SETTABLE = frozenset(
    {"handle", "started_at", "ended_at", "step", "max_steps", "metrics", "checkpoint", "error", "stage"}
    | {"events_cursor"}
)


class JobStore:
    """Jobs in one SQLite file. Safe to share between threads; open one per process.

    Args:
        path: the database file; default `paths.jobs_db()` (read at construction).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else jobs_db()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._migrate()

    # connection -------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # never reuse a connection across fork
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _write(self) -> _WriteTransaction:
        return _WriteTransaction(self._conn())

    def _migrate(self) -> None:
        with self._write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            if version > len(MIGRATIONS):
                raise SchemaVersionError(
                    f"{self.path} has schema version {version}; this CARL Studio knows up to {len(MIGRATIONS)}",
                    hint="upgrade carl-studio, or point CARL_HOME elsewhere",
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))

    def schema_version(self) -> int:
        return self._conn().execute("SELECT version FROM schema_version").fetchone()[0]

    # create and read --------------------------------------------------------------------
    def create(
        self,
        *,
        kind: str,
        spec: dict[str, Any],
        backend: str,
        target: str | None,
        run_dir_for: Any,
        max_steps: int | None = None,
        attempt: int = 1,
        resumes: str | None = None,
        reason: str = "submitted",
    ) -> Job:
        """Insert a new job in state `queued` under a fresh id.

        Args:
            kind: one of JOB_KINDS.
            spec: the validated spec (JSON-able).
            backend, target: where it will run.
            run_dir_for: `job_id -> path` of its run directory.
            max_steps, attempt, resumes: as in `Job`.
            reason: recorded with the creation event.

        Returns:
            The new job.
        """
        if kind not in JOB_KINDS:
            raise ValueError(f"kind must be one of {JOB_KINDS}; got {kind!r}")
        now = time.time()
        for _ in range(20):
            job_id = new_job_id()
            try:
                with self._write() as conn:
                    conn.execute(
                        "INSERT INTO jobs (job_id, kind, spec, backend, target, state, created_at, updated_at,"
                        " max_steps, attempt, resumes, run_dir) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            job_id, kind, json.dumps(spec), backend, target, JobState.QUEUED.value, now, now,
                            max_steps, attempt, resumes, str(run_dir_for(job_id)),
                        ),
                    )  # fmt: skip
                    _record(conn, job_id, None, JobState.QUEUED, reason, now)
                return self.get(job_id)
            except sqlite3.IntegrityError as err:
                if "jobs.job_id" not in str(err):
                    raise
        raise CarlError("could not find a free job id after 20 tries")  # pragma: no cover - 1e-12 odds

    def get(self, job_id: str) -> Job:
        """The stored row of `job_id`.

        Raises:
            JobNotFoundError: no such job.
        """
        row = self._conn().execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(job_id)
        return _to_job(row)

    def list(
        self,
        *,
        state: JobState | str | Iterable[JobState | str] | None = None,
        kind: str | None = None,
        since: datetime | float | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Jobs, newest first.

        Args:
            state: one state or several; None for all.
            kind: one kind; None for all.
            since: only jobs created at or after this time (datetime or epoch seconds).
            limit: at most this many (1..10,000).
        """
        if not 1 <= limit <= 10_000:
            raise ValueError(f"limit must be between 1 and 10,000; got {limit}")
        where, args = [], []
        if state is not None:
            states = [state] if isinstance(state, (str, JobState)) else list(state)
            values = [JobState(s).value for s in states]
            where.append(f"state IN ({','.join('?' * len(values))})")
            args += values
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if since is not None:
            where.append("created_at >= ?")
            args.append(since.timestamp() if isinstance(since, datetime) else float(since))
        sql = "SELECT * FROM jobs" + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY created_at DESC, job_id LIMIT ?"
        rows = self._conn().execute(sql, (*args, limit)).fetchall()
        return [_to_job(row) for row in rows]

    def count(self) -> int:
        return self._conn().execute("SELECT count(*) FROM jobs").fetchone()[0]

    def events(self, job_id: str) -> list[JobEvent]:
        """The recorded transitions of `job_id`, oldest first."""
        rows = self._conn().execute(
            "SELECT job_id, time, from_state, to_state, reason FROM job_events WHERE job_id = ? ORDER BY id",
            (job_id,),
        )
        return [
            JobEvent(
                job_id=r["job_id"],
                time=_dt(r["time"]),
                from_state=r["from_state"],
                to_state=r["to_state"],
                reason=r["reason"],
            )
            for r in rows
        ]

    # change -----------------------------------------------------------------------------
    def transition(
        self,
        job_id: str,
        target: JobState,
        *,
        reason: str,
        expect: JobState | Iterable[JobState] | None = None,
        **fields: Any,
    ) -> Job:
        """Move `job_id` to `target` with one compare-and-set, and record why.

        Args:
            job_id: the job.
            target: the new state.
            reason: why (recorded in job_events).
            expect: only move from these states (a subset of those the state machine allows).
            **fields: columns set in the same update (handle, started_at, ended_at, step,
                max_steps, metrics, checkpoint, error, stage, events_cursor).

        Returns:
            The job after the change.

        Raises:
            JobNotFoundError: no such job.
            IllegalTransitionError: the job's state does not allow `target` (or another process
                changed it first); nothing is written.
        """
        target = JobState(target)
        sources = set(sources_of(target))
        if expect is not None:
            sources &= {JobState(expect)} if isinstance(expect, (str, JobState)) else {JobState(s) for s in expect}
        sets, args = _set_clause({**fields, "state": target.value})
        now = time.time()
        with self._write() as conn:
            row = conn.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFoundError(job_id)
            current = JobState(row["state"])
            marks = ",".join("?" * len(sources)) or "NULL"
            cursor = conn.execute(
                f"UPDATE jobs SET {sets}, updated_at = ? WHERE job_id = ? AND state IN ({marks})",
                (*args, now, job_id, *(s.value for s in sources)),
            )
            if cursor.rowcount != 1:
                allowed = target in ALLOWED.get(current, frozenset())
                why = "" if not allowed else " (another process changed it first)"
                raise IllegalTransitionError(
                    f"job {job_id} cannot go from {current.value} to {target.value}{why}",
                    job_id=job_id,
                    current=current.value,
                    target=target.value,
                )
            _record(conn, job_id, current, target, reason, now)
        return self.get(job_id)

    def update(self, job_id: str, *, cursor_from: int | None = None, **fields: Any) -> bool:
        """Set progress columns (step, max_steps, metrics, checkpoint, stage, events_cursor, handle, error).

        Args:
            job_id: the job.
            cursor_from: when given, update only if `events_cursor` still equals it (so two
                processes reading the same events apply them once).
            **fields: the columns to set; never `state` (use `transition`).

        Returns:
            True when the row changed, False when another process moved the cursor first.

        Raises:
            JobNotFoundError: no such job.
        """
        if "state" in fields:
            raise ValueError("cannot set column 'state' with update; use transition")
        if not fields:
            return True
        sets, args = _set_clause(fields)
        sql = f"UPDATE jobs SET {sets}, updated_at = ? WHERE job_id = ?"
        args += [time.time(), job_id]
        if cursor_from is not None:
            sql += " AND events_cursor = ?"
            args.append(cursor_from)
        with self._write() as conn:
            changed = conn.execute(sql, args).rowcount == 1
            if not changed and conn.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is None:
                raise JobNotFoundError(job_id)
        return changed


class _WriteTransaction:
    """`BEGIN IMMEDIATE … COMMIT` (rollback on error): takes the write lock up front."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def new_job_id() -> str:
    """A short random id, e.g. `7q2m0kxd` (Crockford base32, lower case)."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


def _record(
    conn: sqlite3.Connection, job_id: str, src: JobState | None, dst: JobState, reason: str, now: float
) -> None:
    conn.execute(
        "INSERT INTO job_events (job_id, time, from_state, to_state, reason) VALUES (?, ?, ?, ?, ?)",
        (job_id, now, None if src is None else src.value, dst.value, reason),
    )


def _set_clause(fields: dict[str, Any]) -> tuple[str, list[Any]]:
    parts, args = [], []
    for name, value in fields.items():
        if name != "state" and name not in _SETTABLE:
            raise ValueError(f"cannot set column {name!r}; settable: {', '.join(sorted(_SETTABLE))}")
        if name in _JSON_COLUMNS:
            value = json.dumps(value)
        elif name in _TIME_COLUMNS and isinstance(value, datetime):
            value = value.timestamp()
        parts.append(f"{name} = ?")
        args.append(value)
    return ", ".join(parts), args


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=timezone.utc)


def _to_job(row: sqlite3.Row) -> Job:
    data = dict(row)
    data.pop("updated_at", None)
    for name in _JSON_COLUMNS:
        data[name] = json.loads(data[name])
    for name in _TIME_COLUMNS:
        data[name] = _dt(data[name])
    return Job.model_validate(data)
