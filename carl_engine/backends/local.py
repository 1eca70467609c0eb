"""The local backend: the job runs on this machine as a detached process group.

`python -m carl_engine.run <run_dir>` starts in a new session (`setsid`), so it has its own
process group, no controlling terminal, stdin from /dev/null and stdout + stderr appended to
`<run_dir>/train.log` — never the parent's stdout (a stdio MCP server's stdout is its protocol).
It outlives the process that started it.

The handle is `{"pid", "start_time", "run_dir"}`. `start_time` is the process's start time in
clock ticks since boot (field 22 of `/proc/<pid>/stat`, so Linux only); a pid counts as our job only when both
match, so a recycled pid cannot pass for it after a restart.

States: result.json present -> its verdict; process alive -> starting until events.jsonl has a
line, then running; process gone (or a zombie) without result.json -> failed when it exited
with a known non-zero code (a crash before training could write a verdict), else lost.
Cancel sends SIGTERM to the group and returns at once; a small detached watcher sends SIGKILL
after `grace_s` if the same process is still there (so a short-lived CLI can cancel too).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from carl_engine.backends.base import Handle, LogPage, PollResult
from carl_engine.errors import BackendError, InvalidSpecError
from carl_engine.jobs.states import JobState
from carl_engine.paths import carl_home, models_dir
from carl_engine.runs import RunDir

DEFAULT_GRACE_S = 20.0

# Children started by this process: exit codes reaped by one waiter thread each (no zombies,
# no blocking), keyed by (pid, start_time).
_EXIT_CODES: dict[tuple[int, int], int] = {}
_LOCK = threading.Lock()


class LocalBackend:
    """Runs jobs as detached local processes.

    Args:
        grace_s: seconds between SIGTERM and SIGKILL on cancel (default $CARL_LOCAL_GRACE_S or 20).
        command: the program to run before the run dir argument; default
            `[sys.executable, "-m", "carl_engine.run"]`.
    """

    name: ClassVar[str] = "local"
    credentials: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, grace_s: float | None = None, command: Sequence[str] | None = None) -> None:
        env_grace = os.environ.get("CARL_LOCAL_GRACE_S")
        self.grace_s = float(grace_s if grace_s is not None else env_grace or DEFAULT_GRACE_S)
        self.command = list(command) if command else [sys.executable, "-m", "carl_engine.run"]

    # submit -----------------------------------------------------------------------------
    def submit(self, *, job_id: str, run_dir: RunDir, target: str | None) -> Handle:
        """Start the job whose spec.json is in `run_dir`.

        Returns:
            `{"pid", "start_time", "run_dir"}`.

        Raises:
            InvalidSpecError: a target was given (local takes none).
            BackendError: the process could not be started.
        """
        if target:
            raise InvalidSpecError("compute", "local takes no target; write 'local'", got=f"local:{target}")
        if not Path("/proc/self/stat").exists():
            raise BackendError("the local backend needs Linux's /proc to tell its processes apart", backend="local")
        run_dir.create()
        env = {
            **os.environ,
            "CARL_HOME": str(carl_home()),
            "CARL_MODELS_DIR": str(models_dir()),
            "CARL_JOB_ID": job_id,
            "PYTHONUNBUFFERED": "1",
        }
        try:
            with open(run_dir.log_path, "ab") as log:
                proc = subprocess.Popen(
                    [*self.command, str(run_dir.path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=run_dir.path,
                    env=env,
                    start_new_session=True,  # setsid: own group, no terminal, survives us
                    close_fds=True,
                )
        except OSError as err:
            raise BackendError(f"could not start the local job process: {err}", backend="local") from err
        start_time = process_start_time(proc.pid)
        if start_time is None:  # it died already and was reaped? not before we wait on it
            raise BackendError("the local job process vanished at start", backend="local")
        _watch(proc, start_time)
        return {"pid": proc.pid, "start_time": start_time, "run_dir": str(run_dir.path)}

    # poll -------------------------------------------------------------------------------
    def poll(self, handle: Handle) -> PollResult:
        """Where the job stands: its result.json verdict, or whether its process still lives."""
        run_dir = RunDir(handle["run_dir"])
        result = run_dir.read_result()
        if result is not None:
            return PollResult(JobState(result.status), _exit_code(handle), f"result.json says {result.status}")
        if is_alive(handle):
            has_events = run_dir.events_path.exists() and run_dir.events_path.stat().st_size > 0
            return PollResult(JobState.RUNNING if has_events else JobState.STARTING, None, "process alive")
        # The process may have written result.json between our two looks.
        result = run_dir.read_result()
        if result is not None:
            return PollResult(JobState(result.status), _exit_code(handle), f"result.json says {result.status}")
        code = _exit_code(handle)
        if code is not None and code > 0:
            return PollResult(JobState.FAILED, code, f"the process exited with code {code} without result.json")
        why = f"killed by signal {-code}" if code is not None else "exit status unknown"
        return PollResult(JobState.LOST, code, f"the process ended without result.json ({why})")

    # logs -------------------------------------------------------------------------------
    def logs(self, handle: Handle, *, cursor: int = 0, limit: int = 200) -> LogPage:
        """Lines of train.log from byte offset `cursor`.

        A line still being written is held back while the process lives. A carriage-return
        progress bar counts as its last frame.
        """
        path = RunDir(handle["run_dir"]).log_path
        try:
            with open(path, "rb") as fh:
                fh.seek(cursor)
                want = max(limit, 1) * 4096
                data = fh.read(want)
        except FileNotFoundError:
            return LogPage([], cursor)
        lines: list[str] = []
        offset = cursor
        pieces = [piece + b"\n" for piece in data.split(b"\n")]
        pieces[-1] = pieces[-1][:-1]  # what follows the last newline (maybe b"")
        for raw in pieces:
            if not raw:
                break
            if len(lines) >= limit:
                break
            if not raw.endswith(b"\n"):  # the last piece: a line still being written, or cut by `want`
                overlong = len(data) == want and not lines
                if not overlong and is_alive(handle):
                    break
            offset += len(raw)
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            lines.append(text.rsplit("\r", 1)[-1])
        return LogPage(lines, offset)

    # cancel -----------------------------------------------------------------------------
    def cancel(self, handle: Handle) -> None:
        """SIGTERM the job's process group; SIGKILL follows after `grace_s`. Returns at once.

        Idempotent: a process that is gone (or is not ours any more) is left alone.
        """
        if not is_alive(handle):
            return
        pid = int(handle["pid"])
        try:
            os.killpg(pid, signal.SIGTERM)  # start_new_session made pid the group id
        except ProcessLookupError:
            return
        except PermissionError as err:
            raise BackendError(f"not allowed to signal local job process {pid}: {err}", backend="local") from err
        watcher = subprocess.Popen(
            [sys.executable, "-m", "carl_engine.backends.local", "--kill-after",
             str(self.grace_s), str(pid), str(handle["start_time"])],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )  # fmt: skip
        _watch(watcher, None)

    # artifacts --------------------------------------------------------------------------
    def artifacts(self, handle: Handle, *, dest: Path) -> list[Path]:
        """The run's files. They are local already; copied only when `dest` is elsewhere."""
        source = Path(handle["run_dir"])
        dest = Path(dest)
        if dest.resolve() != source.resolve():
            shutil.copytree(source, dest, dirs_exist_ok=True)
        return sorted(p for p in dest.rglob("*") if p.is_file())


# processes ------------------------------------------------------------------------------
def process_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and parens
    return int(fields[19])  # field 22 overall; fields[0] is field 3 (state)


def _process_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2]


def is_alive(handle: Handle) -> bool:
    """The handle's process exists, is the same process (start time), and is not a zombie."""
    pid = int(handle["pid"])
    if process_start_time(pid) != int(handle["start_time"]):
        return False
    return _process_state(pid) not in (None, "Z", "X")


def _watch(proc: subprocess.Popen, start_time: int | None) -> None:
    """Reap `proc` when it ends, from a daemon thread; keep a job's exit code (start_time given)."""

    def wait() -> None:
        code = proc.wait()
        if start_time is not None:
            with _LOCK:
                _EXIT_CODES[(proc.pid, start_time)] = code

    threading.Thread(target=wait, name=f"carl-reap-{proc.pid}", daemon=True).start()


def _exit_code(handle: Handle) -> int | None:
    with _LOCK:
        return _EXIT_CODES.get((int(handle["pid"]), int(handle["start_time"])))


def _kill_after(grace_s: float, pid: int, start_time: int) -> None:
    """Wait up to `grace_s` for the process to end; SIGKILL its group if it is still the same one."""
    handle = {"pid": pid, "start_time": start_time}
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not is_alive(handle):
            return
        time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
    if is_alive(handle):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


if __name__ == "__main__":  # the detached SIGKILL watcher started by `cancel`
    if len(sys.argv) == 5 and sys.argv[1] == "--kill-after":
        _kill_after(float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit("usage: python -m carl_engine.backends.local --kill-after GRACE_S PID START_TIME")
