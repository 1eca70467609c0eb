"""A real SSH server on 127.0.0.1 for tests: asyncssh's server running commands with bash.

Each session's command runs as `bash -c <command>` in a fake home folder (SFTP is chrooted
there too), so the remote job directory, nohup/setsid, kill and tail are all real. The host
key and the client key are generated per server; `env` holds what the client side needs
(CARL_SSH_KEY, CARL_SSH_KNOWN_HOSTS), so host keys are really checked.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import asyncssh
import pytest


class SSHServerStandin:
    """Start with `start()`, stop with `stop()`; `target` is `user@127.0.0.1:port`."""

    def __init__(self, root: Path, *, user: str = "carl") -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.port = 0
        self.commands: list[str] = []  # every command a client ran, in order
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncssh.SSHAcceptor | None = None
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key_path = root / "id_ed25519"
        client_key.write_private_key(str(self.client_key_path))
        client_key.write_public_key(str(root / "id_ed25519.pub"))
        self._authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
        self._host_key = host_key
        self.known_hosts_path = root / "known_hosts"

    @property
    def target(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {"CARL_SSH_KEY": str(self.client_key_path), "CARL_SSH_KNOWN_HOSTS": str(self.known_hosts_path)}

    async def _run_command(self, process: asyncssh.SSHServerProcess) -> None:
        command = process.command or "true"
        self.commands.append(command)
        env = {**os.environ, "HOME": str(self.home)}
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", command, cwd=self.home, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()  # our commands are short: they detach their jobs
        process.stdout.write(out)
        process.stderr.write(err)
        process.exit(proc.returncode)

    async def _start(self) -> None:
        self._server = await asyncssh.create_server(
            asyncssh.SSHServer,
            "127.0.0.1",
            0,
            server_host_keys=[self._host_key],
            authorized_client_keys=self._authorized,
            process_factory=self._run_command,
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(self.home).encode()),
            encoding=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> SSHServerStandin:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        public = self._host_key.export_public_key().decode().strip()
        self.known_hosts_path.write_text(f"[127.0.0.1]:{self.port} {public}\n")
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory):
    """One SSH server per test module."""
    server = SSHServerStandin(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture
def ssh_env(ssh_server, monkeypatch) -> SSHServerStandin:
    """The SSH server, with this test's environment pointing the client at it."""
    for key, value in ssh_server.env.items():
        monkeypatch.setenv(key, value)
    return ssh_server
