"""Tracking a job on another machine over SSH (asyncssh); shared by the ssh and runpod backends.

The remote job directory (relative to the login directory, default `.carl/jobs/<job-id>`):

```
carl-job.py   the bundle (see bundle.py)
run/          the run directory the bundle writes (events.jsonl, checkpoints/, result.json)
launched      written before the job starts (epoch seconds)
pid           the job's process group id (`setsid` makes the shell a group leader)
out.log       the job's stdout and stderr
exit_code     written when the job's command returns
cancelled     written by `cancel` before it signals the group
```
The job is started with `nohup setsid bash -c '…' </dev/null >/dev/null 2>&1 &` so it
outlives the SSH session. What the markers say:
exit_code → exited; cancelled and no live process → cancelled; `kill -0 <pid>` → running;
launched less than `START_GRACE_S` ago without pid → starting; no job directory → absent;
anything else → lost.

Every public call opens one connection and closes it; each runs its own event loop (in a
worker thread when the caller already has one running).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from carl_engine.errors import BackendError, InvalidSpecError

T = TypeVar("T")

START_GRACE_S = 60  # a launched job may take this long to write its pid
KILL_GRACE_S = 30  # SIGKILL follows SIGTERM after this many seconds
CONNECT_TIMEOUT_S = 20
LOG_CHUNK_BYTES = 1 << 20  # at most this much of out.log is read per `read_log`
_TARGET = re.compile(r"^(?:(?P<user>[A-Za-z_][A-Za-z0-9._-]{0,31})@)?(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))(?::(?P<port>\d{1,5}))?$")
_TARGET_RULE = "must be [user@]host[:port] (host a name or IPv4 address, port 1-65535)"


@dataclass(frozen=True)
class SSHTarget:
    user: str | None  # None: the local login name (asyncssh's default)
    host: str
    port: int = 22

    @classmethod
    def parse(cls, text: str | None) -> SSHTarget:
        """`[user@]host[:port]` -> SSHTarget.

        Raises:
            InvalidSpecError: field `compute`, when `text` is not of that form.
        """
        match = _TARGET.match((text or "").strip())
        port = int(match["port"]) if match and match["port"] else 22
        if not match or not 1 <= port <= 65535:
            raise InvalidSpecError("compute", f"ssh target {_TARGET_RULE}", got=text, hint="e.g. ssh:me@gpu-box:2222")
        return cls(match["user"], match["host"], port)

    def __str__(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"


@dataclass(frozen=True)
class RemoteStatus:
    state: str  # "absent" (no job dir) | "starting" | "running" | "exited" | "cancelled" | "lost"
    exit_code: int | None = None


def connect_options(*, known_hosts: str | None = None) -> dict[str, Any]:
    """asyncssh connect options from the environment.

    `$CARL_SSH_KEY` names the private key (else asyncssh's defaults in ~/.ssh);
    `$CARL_SSH_KNOWN_HOSTS` a known_hosts file, or `none` to skip host-key checks
    (else ~/.ssh/known_hosts). `known_hosts="none"` forces the latter (fresh RunPod pods).

    Raises:
        BackendError: `$CARL_SSH_KEY` names a file that does not exist.
    """
    options: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S}
    key = os.environ.get("CARL_SSH_KEY")
    if key:
        if not Path(key).expanduser().is_file():
            raise BackendError(f"CARL_SSH_KEY names {key!r}, which is not a file", hint="point it at a private key")
        options["client_keys"] = [str(Path(key).expanduser())]
    hosts = known_hosts or os.environ.get("CARL_SSH_KNOWN_HOSTS")
    if hosts:
        options["known_hosts"] = None if hosts.lower() == "none" else str(Path(hosts).expanduser())
    return options


def private_key_path() -> Path | None:
    """The client key: `$CARL_SSH_KEY`, else the first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa that exists."""
    key = os.environ.get("CARL_SSH_KEY")
    if key:
        return Path(key).expanduser()
    for name in ("id_ed25519", "id_ecdsa", "id_rsa"):
        path = Path.home() / ".ssh" / name
        if path.is_file():
            return path
    return None


def public_key_line(private_key: Path) -> str:
    """`<type> <base64>` of the public half of `private_key` (no comment), for authorized_keys.

    Raises:
        BackendError: the file is not a readable, unencrypted private key.
    """
    import asyncssh

    try:
        key = asyncssh.read_private_key(str(private_key))
    except (OSError, asyncssh.KeyImportError) as exc:
        raise BackendError(f"cannot read the SSH key {private_key}: {type(exc).__name__}") from None
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run the coroutine `make()` to completion from synchronous code, whatever thread we are in."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


async def _connect(target: SSHTarget, options: dict[str, Any]):
    import asyncssh

    try:
        return await asyncssh.connect(target.host, port=target.port, username=target.user, **options)
    except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
        raise BackendError(
            f"cannot reach {target} over SSH: {exc}",
            hint="check the host, CARL_SSH_KEY and CARL_SSH_KNOWN_HOSTS (or ~/.ssh/known_hosts)",
            target=str(target),
        ) from None


def _q(path: str) -> str:
    return shlex.quote(path)


def launch_script(remote_dir: str, command: str) -> str:
    """The shell text that starts `command` detached in `remote_dir` (idempotent: a launched job stays)."""
    inner = f"echo $$ > pid; ( {command} ) > out.log 2>&1; echo $? > exit_code.tmp; mv exit_code.tmp exit_code"
    return (
        f"mkdir -p {_q(remote_dir)}; cd {_q(remote_dir)} || exit 1; "
        "if [ -e launched ]; then exit 0; fi; date +%s > launched; "
        f"nohup setsid bash -c {_q(inner)} </dev/null >/dev/null 2>&1 &"
    )


def launch(target: SSHTarget, remote_dir: str, *, files: dict[str, str], command: str, options: dict[str, Any]) -> None:
    """Upload `files` (name -> text) into `remote_dir` and start `command` there, detached.

    Raises:
        BackendError: SSH or the remote shell failed.
    """

    async def go() -> None:
        async with await _connect(target, options) as conn:
            made = await conn.run(f"mkdir -p {_q(remote_dir)}", check=False)
            if made.exit_status != 0:
                raise BackendError(f"cannot create {remote_dir} on {target}: {str(made.stderr).strip()}")
            async with conn.start_sftp_client() as sftp:
                for name, text in files.items():
                    async with sftp.open(f"{remote_dir}/{name}", "w") as fh:
                        await fh.write(text)
            started = await conn.run(launch_script(remote_dir, command), check=False)
            if started.exit_status != 0:
                raise BackendError(f"cannot start the job on {target}: {str(started.stderr).strip()}")

    run_sync(go)


_STATUS_SCRIPT = (
    "cd {dir} 2>/dev/null || {{ echo absent; exit 0; }}; "
    "alive=no; if [ -s pid ] && kill -0 \"$(cat pid)\" 2>/dev/null; then alive=yes; fi; "
    "if [ -s exit_code ]; then echo \"exited $(cat exit_code)\"; "
    "elif [ -e cancelled ] && [ $alive = no ]; then echo cancelled; "
    "elif [ $alive = yes ]; then echo running; "
    "elif [ -e launched ] && [ ! -e pid ] && [ $(( $(date +%s) - $(cat launched) )) -lt {grace} ]; then echo starting; "
    "else echo lost; fi"
)


def status(target: SSHTarget, remote_dir: str, *, options: dict[str, Any]) -> RemoteStatus:
    """What the markers in `remote_dir` say (see the module docstring)."""

    async def go() -> RemoteStatus:
        async with await _connect(target, options) as conn:
            done = await conn.run(_STATUS_SCRIPT.format(dir=_q(remote_dir), grace=START_GRACE_S), check=False)
        words = str(done.stdout).split()
        if not words:
            return RemoteStatus("lost")
        if words[0] == "exited":
            code = int(words[1]) if len(words) > 1 and words[1].lstrip("-").isdigit() else None
            return RemoteStatus("exited", code)
        return RemoteStatus(words[0])

    return run_sync(go)


def read_log(target: SSHTarget, path: str, *, cursor: int, limit: int, options: dict[str, Any]) -> tuple[list[str], int]:
    """Whole lines of the remote file `path` from byte offset `cursor`, at most `limit` of them.

    Returns:
        (lines without their newline, the byte offset after the last line returned).
    """

    async def go() -> bytes:
        import asyncssh

        async with await _connect(target, options) as conn, conn.start_sftp_client() as sftp:
            try:
                async with sftp.open(path, "rb") as fh:
                    await fh.seek(cursor)
                    return await fh.read(LOG_CHUNK_BYTES)
            except asyncssh.SFTPNoSuchFile:
                return b""

    data = run_sync(go)
    lines, offset = [], cursor
    for raw in data.splitlines(keepends=True):
        if len(lines) >= limit or not raw.endswith(b"\n"):
            break
        offset += len(raw)
        lines.append(raw.rstrip(b"\r\n").decode(errors="replace"))
    return lines, offset


def cancel(target: SSHTarget, remote_dir: str, *, options: dict[str, Any]) -> None:
    """Write `cancelled`, then SIGTERM the job's process group (SIGKILL after KILL_GRACE_S). Idempotent."""
    kill_later = _q(f"sleep {KILL_GRACE_S}; kill -KILL -- -$P 2>/dev/null")
    script = (
        f"cd {_q(remote_dir)} 2>/dev/null || exit 0; [ -s exit_code ] && exit 0; touch cancelled; "
        "[ -s pid ] || exit 0; P=$(cat pid); kill -TERM -- -$P 2>/dev/null; "
        f"P=$P nohup bash -c {kill_later} </dev/null >/dev/null 2>&1 &"
    )

    async def go() -> None:
        async with await _connect(target, options) as conn:
            await conn.run(script, check=False)

    run_sync(go)


def fetch(target: SSHTarget, remote_path: str, dest: Path, *, names: tuple[str, ...] | None = None,
          options: dict[str, Any]) -> list[Path]:
    """Copy the remote folder `remote_path` (all of it, or only the top-level `names`) into `dest`.

    Returns:
        The local files written, sorted. A missing remote folder or name gives nothing.
    """

    async def go() -> None:
        import asyncssh

        async with await _connect(target, options) as conn, conn.start_sftp_client() as sftp:
            if not await sftp.isdir(remote_path):
                return
            entries = names if names is not None else [n for n in await sftp.listdir(remote_path) if n not in (".", "..")]
            for name in entries:
                source = f"{remote_path}/{name}"
                try:
                    if await sftp.isdir(source):
                        await sftp.get(source, str(dest / name), recurse=True)
                    else:  # whole files replace local ones atomically: readers never see half a file
                        partial = dest / f".{name}.fetch"
                        await sftp.get(source, str(partial))
                        os.replace(partial, dest / name)
                except asyncssh.SFTPNoSuchFile:
                    continue

    dest.mkdir(parents=True, exist_ok=True)
    run_sync(go)
    return sorted(p for p in dest.rglob("*") if p.is_file())


def fetch_run(target: SSHTarget, remote_run: str, dest: Path, *, options: dict[str, Any]) -> list[Path]:
    """Bring a finished run home: its top-level files and folders, and of `checkpoints/` only
    the latest complete one (with trainer_state.json) — what a resume needs.

    Returns:
        The local files under `dest`, sorted.
    """

    async def go() -> None:
        import asyncssh

        async with await _connect(target, options) as conn, conn.start_sftp_client() as sftp:
            if not await sftp.isdir(remote_run):
                return
            for name in await sftp.listdir(remote_run):
                source = f"{remote_run}/{name}"
                if name in (".", "..") or name == "checkpoints":
                    continue
                if await sftp.isdir(source):
                    await sftp.get(source, str(dest / name), recurse=True)
                else:
                    partial = dest / f".{name}.fetch"
                    await sftp.get(source, str(partial))
                    os.replace(partial, dest / name)
            steps = []
            if await sftp.isdir(f"{remote_run}/checkpoints"):
                for name in await sftp.listdir(f"{remote_run}/checkpoints"):
                    found = re.fullmatch(r"checkpoint-(\d+)", name)
                    if found and await sftp.exists(f"{remote_run}/checkpoints/{name}/trainer_state.json"):
                        steps.append(int(found[1]))
            if steps:
                latest = f"checkpoint-{max(steps)}"
                (dest / "checkpoints").mkdir(parents=True, exist_ok=True)
                try:
                    await sftp.get(f"{remote_run}/checkpoints/{latest}", str(dest / "checkpoints" / latest), recurse=True)
                except asyncssh.SFTPNoSuchFile:  # removed by the trainer's rotation meanwhile
                    pass

    dest.mkdir(parents=True, exist_ok=True)
    run_sync(go)
    return sorted(p for p in dest.rglob("*") if p.is_file())


def upload_dir(target: SSHTarget, local: Path, remote: str, *, options: dict[str, Any]) -> str:
    """Copy the local folder `local` to `remote` (relative to the login dir); returns its absolute path there.

    Raises:
        BackendError: SSH failed or the remote shell refused.
    """

    async def go() -> str:
        async with await _connect(target, options) as conn:
            made = await conn.run(f"mkdir -p {_q(remote)} && cd {_q(remote)} && pwd", check=False)
            if made.exit_status != 0:
                raise BackendError(f"cannot create {remote} on {target}: {str(made.stderr).strip()}")
            async with conn.start_sftp_client() as sftp:
                for child in local.iterdir():
                    await sftp.put(str(child), f"{remote}/{child.name}", recurse=True)
            return str(made.stdout).strip()

    return run_sync(go)
