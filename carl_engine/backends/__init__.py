"""Compute backends, one file each, looked up by name. Imported lazily: a backend's SDK
(ray, runpod, asyncssh, huggingface_hub) loads only when that backend is used."""

from __future__ import annotations

import importlib

from carl_engine.backends.base import Backend, Handle, LogPage, PollResult
from carl_engine.errors import InvalidSpecError, NotSupportedError

BACKENDS: dict[str, str] = {
    "local": "carl_engine.backends.local:LocalBackend",
    "ray": "carl_engine.backends.ray_jobs:RayBackend",
    "hf_jobs": "carl_engine.backends.hf_jobs:HFJobsBackend",
    "runpod": "carl_engine.backends.runpod:RunPodBackend",
    "ssh": "carl_engine.backends.ssh:SSHBackend",
}

NOT_SUPPORTED: dict[str, str] = {
    "tinker": "Tinker runs the training loop on the caller's machine and only the steps remotely, "
    "over its own protocol; TRL scripts cannot be submitted to it as jobs",
    "prime": "Prime Intellect compute is not integrated yet",
}


def get_backend(name: str) -> Backend:
    """The backend called `name`.

    Raises:
        NotSupportedError: a listed backend that is not built yet (tinker, prime).
        InvalidSpecError: an unknown name (field `compute`).
    """
    if name in NOT_SUPPORTED:
        raise NotSupportedError(f"backend {name!r} is not supported yet: {NOT_SUPPORTED[name]}", backend=name)
    if name not in BACKENDS:
        raise InvalidSpecError("compute", f"unknown backend; use one of {', '.join(BACKENDS)}", got=name)
    module_name, _, attr = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)()


__all__ = ["BACKENDS", "NOT_SUPPORTED", "Backend", "Handle", "LogPage", "PollResult", "get_backend"]
