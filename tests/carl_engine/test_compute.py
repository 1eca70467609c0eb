"""Flavors (catalogue and live), the VRAM estimate, and which flavors a run fits."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from carl_engine import compute
from carl_engine.compute import catalogue, estimate_vram, fit_flavor, fits, list_flavors
from carl_engine.errors import InvalidSpecError
from carl_engine.models import ModelSpec

LLAMA_7B = ModelSpec.from_config(
    {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
     "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000, "tie_word_embeddings": False},
    name="llama-2-7b-like", list_modules=False,
)
LLAMA_13B = ModelSpec.from_config(
    {"model_type": "llama", "hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40,
     "num_attention_heads": 40, "vocab_size": 32000},
    name="llama-2-13b-like", list_modules=False,
)


def _flavor(backend, name):
    return next(f for f in catalogue(backend).flavors if f.name == name)


def test_the_catalogue_is_dated_and_every_gpu_flavor_has_memory():
    listing = catalogue()
    assert listing.as_of[:4] == "2026" and set(listing.sources) == {"hf_jobs", "runpod"}
    for flavor in listing.flavors:
        assert (flavor.gpu is None) == (flavor.gpu_count == 0)
        if flavor.gpu:
            assert flavor.vram_gb_per_gpu > 0 and flavor.vram_gb == flavor.vram_gb_per_gpu * flavor.gpu_count
    for backend in ("hf_jobs", "runpod"):
        names = [f.name for f in catalogue(backend).flavors]
        assert len(names) == len(set(names))
    assert _flavor("hf_jobs", "a10g-large").price_per_hour_usd == 1.50
    assert all(f.gpu_type_id for f in catalogue("runpod").flavors)


def test_the_hf_catalogue_names_exactly_the_flavors_huggingface_hub_knows():
    from huggingface_hub._jobs_api import JobHardware

    assert {f.name for f in catalogue("hf_jobs").flavors} == {h.value for h in JobHardware}


def test_a_7b_full_fine_tune_does_not_fit_24_gb_but_lora_4bit_does():
    a10g = _flavor("hf_jobs", "a10g-large")
    full = fit_flavor(estimate_vram(LLAMA_7B, method="grpo"), a10g)
    qlora = fit_flavor(estimate_vram(LLAMA_7B, method="grpo", lora=True, quantization="4bit"), a10g)
    assert full.fits is False and full.headroom_gb < -50
    assert qlora.fits is True and qlora.headroom_gb > 0
    assert 100 < full.needed_gb < 160  # about 16 bytes a parameter, plus activations
    a100x8 = fit_flavor(estimate_vram(LLAMA_7B, method="sft"), _flavor("hf_jobs", "a100x8"))
    assert a100x8.fits is False and a100x8.fits_sharded is True


def test_the_estimate_grows_with_every_size():
    base = dict(method="grpo", lora=True, quantization="none")
    by_seq = [estimate_vram(LLAMA_7B, seq_len=s, batch=4, **base).needed_gb for s in (128, 512, 2048, 8192)]
    by_batch = [estimate_vram(LLAMA_7B, seq_len=512, batch=b, **base).needed_gb for b in (1, 4, 16, 64)]
    by_rank = [estimate_vram(LLAMA_7B, lora_rank=r, **base).needed_gb for r in (4, 16, 64)]
    by_quant = [estimate_vram(LLAMA_7B, method="sft", lora=True, quantization=q).needed_gb
                for q in ("4bit", "8bit", "none")]
    assert by_seq == sorted(set(by_seq)) and by_batch == sorted(set(by_batch))
    assert by_rank == sorted(set(by_rank)) and by_quant == sorted(set(by_quant))
    assert estimate_vram(LLAMA_13B).needed_gb > estimate_vram(LLAMA_7B).needed_gb
    assert estimate_vram(LLAMA_7B, lora=True).needed_gb < estimate_vram(LLAMA_7B).needed_gb
    assert (estimate_vram(LLAMA_7B, gradient_checkpointing=False).needed_gb
            > estimate_vram(LLAMA_7B, gradient_checkpointing=True).needed_gb)


def test_method_specific_parts_appear_where_they_belong():
    assert estimate_vram(LLAMA_7B, method="grpo").breakdown_gb["kv_cache"] > 0
    assert estimate_vram(LLAMA_7B, method="sft").breakdown_gb["kv_cache"] == 0
    dpo_full, dpo_lora = estimate_vram(LLAMA_7B, method="dpo"), estimate_vram(LLAMA_7B, method="dpo", lora=True)
    assert dpo_full.breakdown_gb["reference"] == pytest.approx(LLAMA_7B.num_parameters * 2 / 2**30, rel=1e-3)
    assert dpo_lora.breakdown_gb["reference"] == 0
    sft, dpo = estimate_vram(LLAMA_7B, method="sft", lora=True), dpo_lora
    assert dpo.breakdown_gb["activations"] == pytest.approx(2 * sft.breakdown_gb["activations"], rel=1e-3)


def test_the_parts_add_up_to_the_need_with_the_margin():
    est = estimate_vram(LLAMA_7B, method="sft", lora=True, quantization="8bit", margin=0.25)
    parts = est.breakdown_gb
    static = parts["weights"] + parts["gradients"] + parts["optimizer"] + parts["reference"]
    transient = max(parts["activations"] + parts["logits"], parts["kv_cache"])
    assert est.needed_gb == pytest.approx((static + transient + parts["cuda_context"]) * 1.25, abs=0.01)
    assert est.trainable_parameters == compute.lora_parameters(LLAMA_7B, 16)
    assert est.trainable_parameters == 32 * 16 * (4 * (4096 + 4096) + 3 * (4096 + 11008))


def test_carl_tiny_fits_every_gpu_and_cpu_flavors_say_unknown():
    tiny = ModelSpec.from_pretrained("carl-tiny", list_modules=False)
    results = fits(tiny, method="grpo", seq_len=64, batch=8)
    assert results and all(r.needed_gb < 2 for r in results)
    assert all(r.fits for r in results if r.flavor.gpu)
    assert all(r.fits is None for r in results if not r.flavor.gpu)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"method": "ppo"}, "method"),
        ({"quantization": "3bit", "lora": True}, "quantization"),
        ({"quantization": "4bit", "lora": False}, "quantization"),
        ({"seq_len": 0}, "seq_len"),
        ({"batch": 2.5}, "batch"),
        ({"lora": True, "lora_rank": -1}, "lora_rank"),
    ],
)
def test_bad_estimate_arguments_name_their_field(kwargs, field):
    with pytest.raises(InvalidSpecError) as info:
        estimate_vram(LLAMA_7B, **kwargs)
    assert info.value.field == field


def test_an_unknown_backend_names_the_field():
    with pytest.raises(InvalidSpecError) as info:
        list_flavors("lambda", live=False)
    assert info.value.field == "backend" and "hf_jobs" in str(info.value)


def test_offline_or_not_asked_the_catalogue_is_used_and_says_why():
    offline = list_flavors(live=True)
    assert offline.sources["hf_jobs"].startswith("catalogue 2026") and "HF_HUB_OFFLINE" in offline.sources["hf_jobs"]
    assert "live not requested" in list_flavors(live=False).sources["runpod"]
    assert list_flavors("runpod").sources.keys() == {"runpod"}


HARDWARE = [
    {"name": "cpu-basic", "prettyName": "CPU Basic", "cpu": "2 vCPU", "ram": "16 GB", "accelerator": None,
     "unitCostMicroUSD": 167, "unitCostUSD": 0.000167, "unitLabel": "minute"},
    {"name": "l4x4", "prettyName": "4x Nvidia L4", "cpu": "48 vCPU", "ram": "186 GB",
     "accelerator": {"type": "gpu", "model": "L4", "quantity": "4", "vram": "96 GB", "manufacturer": "Nvidia"},
     "unitCostMicroUSD": 63333, "unitCostUSD": 0.063333, "unitLabel": "minute"},
]


@pytest.fixture
def hardware_api(monkeypatch):
    """A stand-in Hub answering GET /api/jobs/hardware; `state` picks the behaviour."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_never_shown")
    state = {"mode": "ok", "seen_auth": None}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            state["seen_auth"] = self.headers.get("authorization")
            if state["mode"] == "slow":
                time.sleep(1.5)
            status, body = (500, b"{}") if state["mode"] == "error" else (200, json.dumps(HARDWARE).encode())
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["endpoint"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_live_hf_flavors_replace_the_catalogue_when_the_api_answers(hardware_api):
    listing = list_flavors(endpoint=hardware_api["endpoint"])
    assert listing.sources["hf_jobs"].startswith("live")
    hf = {f.name: f for f in listing.flavors if f.backend == "hf_jobs"}
    assert set(hf) == {"cpu-basic", "l4x4"}
    assert (hf["l4x4"].gpu, hf["l4x4"].gpu_count, hf["l4x4"].vram_gb_per_gpu) == ("L4", 4, 24.0)
    assert hf["l4x4"].price_per_hour_usd == pytest.approx(3.8, abs=0.01)
    assert hf["cpu-basic"].gpu is None and hf["cpu-basic"].price_per_hour_usd == pytest.approx(0.01, abs=0.001)
    assert any(f.backend == "runpod" for f in listing.flavors)
    assert hardware_api["seen_auth"] == "Bearer hf_secret_value_never_shown"


@pytest.mark.parametrize(("mode", "reason"), [("error", "HfHubHTTPError"), ("slow", "no answer within 0.3 s")])
def test_a_failing_or_slow_api_falls_back_to_the_catalogue(hardware_api, mode, reason):
    hardware_api["mode"] = mode
    started = time.monotonic()
    listing = list_flavors("hf_jobs", endpoint=hardware_api["endpoint"], timeout_s=0.3)
    assert time.monotonic() - started < 1.2
    assert listing.sources["hf_jobs"].startswith("catalogue") and reason in listing.sources["hf_jobs"]
    assert "hf_secret" not in listing.model_dump_json()
    assert len(listing.flavors) == len(catalogue("hf_jobs").flavors)


def test_importing_compute_loads_no_heavy_library():
    code = "import sys, carl_engine.compute; print(sorted({'torch','transformers','huggingface_hub','datasets'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
