"""carl_compute: backends with credential presence (never values), flavors with their source, model fit."""

from __future__ import annotations

import pytest

from carl_engine.errors import InvalidSpecError
from carl_studio.tools.base import ToolContext
from carl_studio.tools.compute import COMPUTE
from carl_studio.tools.estimate import estimate_run


def test_backends_report_credential_presence_without_values(monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", "rp-secret-value")
    answer = COMPUTE.call({"live": False}, ToolContext())
    by_name = {b.name: b for b in answer.backends}
    assert {"local", "ray", "hf_jobs", "runpod", "ssh", "tinker", "prime"} <= set(by_name)
    assert by_name["local"].ready and by_name["tinker"].supported is False and "not supported" in by_name["tinker"].note
    assert "rp-secret-value" not in answer.model_dump_json()


def test_flavors_say_they_come_from_the_dated_catalogue_when_offline():
    answer = COMPUTE.call({}, ToolContext())
    assert answer.flavors and all(f.backend in {"hf_jobs", "runpod"} for f in answer.flavors)
    assert "catalogue" in answer.source and "HF_HUB_OFFLINE" in answer.source
    assert any(f.price_per_hour_usd for f in answer.flavors) and answer.fit is None


def test_a_model_gets_a_memory_estimate_and_a_fit_per_flavor():
    answer = COMPUTE.call({"model": "carl-tiny", "method": "grpo", "backend": "runpod", "live": False}, ToolContext())
    assert answer.fit.num_parameters > 0 and answer.fit.vram_needed_gb > 0
    assert all(f.fits is True for f in answer.flavors if f.gpu_count)  # a tiny model fits every GPU


def test_a_backend_without_flavors_says_so_and_an_unknown_one_is_named():
    assert "no flavor list" in COMPUTE.call({"backend": "ssh"}, ToolContext()).source
    with pytest.raises(InvalidSpecError, match="backend: unknown backend"):
        COMPUTE.call({"backend": "nimbus"}, ToolContext())


def test_the_train_estimate_checks_a_catalogue_flavor_and_leaves_own_machines_unknown():
    spec = {"model": "carl-tiny", "method": "grpo", "max_steps": 5, "batch_size": 8}
    local = estimate_run("train", spec, "local")
    assert local.max_steps == 5 and local.vram_needed_gb > 0 and local.fits is None
    from carl_engine.compute import catalogue

    gpu = next(f for f in catalogue("hf_jobs").flavors if f.gpu_count)
    rented = estimate_run("train", spec, f"hf_jobs:{gpu.name}")
    assert rented.fits is True and rented.vram_available_gb == gpu.vram_gb_per_gpu
