"""carl-tiny (deterministic, atomic, loadable by name), model name resolution, and ModelSpec."""

from __future__ import annotations

import os

import pytest

from carl_engine import models
from carl_engine.errors import InvalidSpecError
from carl_engine.models import (
    CARL_TINY,
    build_carl_tiny,
    carl_tiny_dir,
    ensure_carl_tiny,
    load_model_and_tokenizer,
    resolve_model,
)
from carl_engine.tasks import FORMS, get_task


@pytest.fixture(scope="module")
def tiny():
    """carl-tiny loaded once for this module: (model, tokenizer)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return load_model_and_tokenizer(CARL_TINY)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_builds_write_byte_identical_files(tmp_path):
    first = _files(build_carl_tiny(tmp_path / "a"))
    second = _files(build_carl_tiny(tmp_path / "b"))
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= set(first)
    assert first == second


def test_carl_tiny_resolves_to_its_cached_folder(tiny):
    assert resolve_model(CARL_TINY) == str(carl_tiny_dir()) == str(ensure_carl_tiny())
    assert (carl_tiny_dir() / "model.safetensors").is_file()
    assert not [p for p in carl_tiny_dir().parent.iterdir() if ".tmp-" in p.name]


def test_carl_tiny_is_tiny_and_ready_for_trl(tiny):
    model, tok = tiny
    assert model.config.model_type == "llama"
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert tok.pad_token == "<pad>" and tok.eos_token == "<eos>" and tok.pad_token_id != tok.eos_token_id
    assert tok.padding_side == "left"
    assert model.config.pad_token_id == tok.pad_token_id and model.config.eos_token_id == tok.eos_token_id
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert len(tok) == model.config.vocab_size <= 512
    chat = tok.apply_chat_template([{"role": "user", "content": "3+4="}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|user|>3+4=<eos><|assistant|>"


def test_the_tokenizer_round_trips_every_task_text_with_one_token_per_digit(tiny):
    _, tok = tiny
    task = get_task("arithmetic", difficulty="hard")
    for form in FORMS:
        for row in task.records(form, n=20, seed=5):
            for value in row.values():
                if isinstance(value, str):
                    assert tok.decode(tok(value).input_ids) == value
    assert tok.tokenize("905-17=888") == list("905-17=888")
    assert tok.decode(tok("Any text, even ünïcode ✓").input_ids) == "Any text, even ünïcode ✓"


def test_prompt_and_completion_tokens_concatenate_cleanly(tiny):
    _, tok = tiny
    for row in get_task("arithmetic", difficulty="medium").records("prompt_completion", n=30, seed=0):
        joined = tok(row["prompt"] + row["completion"]).input_ids
        assert joined == tok(row["prompt"]).input_ids + tok(row["completion"]).input_ids


def test_a_build_that_loses_the_rename_race_uses_the_winner(tmp_path, monkeypatch):
    monkeypatch.setenv("CARL_MODELS_DIR", str(tmp_path))
    real_build = models.build_carl_tiny

    def build_while_another_process_finishes_first(dest):
        real_build(dest)
        real_build(carl_tiny_dir())  # the other process renames its complete copy into place
        return dest

    monkeypatch.setattr(models, "build_carl_tiny", build_while_another_process_finishes_first)
    assert ensure_carl_tiny() == carl_tiny_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [carl_tiny_dir().name]


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("CARL_MODELS_DIR", str(tmp_path))

    def broken_build(dest):
        (dest / "half").mkdir(parents=True)
        raise OSError("disk full")

    monkeypatch.setattr(models, "build_carl_tiny", broken_build)
    with pytest.raises(OSError, match="disk full"):
        ensure_carl_tiny()
    assert list(tmp_path.iterdir()) == []


def test_a_local_folder_and_a_hub_name_resolve_to_themselves(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert resolve_model("gpt2") == "gpt2"


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("/no/such/model", "does not exist"),
        ("./missing-model", "does not exist"),
        ("a/b/c", "does not exist"),
        ("bad name!", "Hub name"),
        ("", "must be"),
    ],
)
def test_a_bad_model_reference_names_the_field(value, rule):
    with pytest.raises(InvalidSpecError) as info:
        resolve_model(value)
    assert info.value.field == "model" and rule in str(info.value)


def test_a_folder_without_config_json_is_refused(tmp_path):
    with pytest.raises(InvalidSpecError, match="no config.json") as info:
        load_model_and_tokenizer(str(tmp_path), field="base_model")
    assert info.value.field == "base_model"


def test_a_bad_dtype_name_is_refused():
    with pytest.raises(InvalidSpecError) as info:
        load_model_and_tokenizer(CARL_TINY, torch_dtype="float7")
    assert info.value.field == "torch_dtype"


def test_the_dtype_can_be_chosen_by_name():
    import torch

    model, _ = load_model_and_tokenizer(CARL_TINY, torch_dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16


# ---- ModelSpec ---------------------------------------------------------------------------

LLAMA_2_7B = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "hidden_size": 4096,
    "intermediate_size": 11008, "max_position_embeddings": 4096, "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 32, "rms_norm_eps": 1e-05, "tie_word_embeddings": False,
    "torch_dtype": "float16", "vocab_size": 32000, "bos_token_id": 1, "eos_token_id": 2,
}
QWEN2_VL_7B = {
    "architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl", "hidden_act": "silu",
    "hidden_size": 3584, "intermediate_size": 18944, "max_position_embeddings": 32768, "num_attention_heads": 28,
    "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "vocab_size": 152064, "image_token_id": 151655,
    "video_token_id": 151656, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_chans": 3,
                      "hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
}


def _config_dir(tmp_path, cfg, name="m"):
    import json

    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))  # config only: no weights anywhere
    return str(folder)


def test_carl_tiny_spec_counts_exactly_the_parameters_of_the_model(tiny):
    from carl_engine.models import ModelSpec

    model, tok = tiny
    spec = ModelSpec.from_pretrained(CARL_TINY)
    assert spec.num_parameters == sum(p.numel() for p in model.parameters())
    assert (spec.architecture, spec.model_type, spec.modality) == ("LlamaForCausalLM", "llama", "text")
    assert (spec.hidden_size, spec.num_layers, spec.vocab_size) == (128, 2, len(tok))
    assert spec.num_key_value_heads < spec.num_attention_heads and spec.tie_word_embeddings
    assert {"q_proj", "k_proj", "v_proj", "o_proj"} <= set(spec.lora_target_modules)
    assert "lm_head" not in spec.lora_target_modules


def test_a_llama_2_7b_config_has_its_known_6_74b_parameters(tmp_path):
    from carl_engine.models import ModelSpec

    spec = ModelSpec.from_pretrained(_config_dir(tmp_path, LLAMA_2_7B))
    assert spec.num_parameters == 6_738_415_616  # the published count of Llama-2-7B
    assert spec.torch_dtype == "float16" and spec.max_position_embeddings == 4096 and spec.modality == "text"
    assert spec.lora_target_modules == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


def test_a_qwen2_vl_config_is_vision_language_and_counts_both_towers(tmp_path):
    from carl_engine.models import ModelSpec

    spec = ModelSpec.from_pretrained(_config_dir(tmp_path, QWEN2_VL_7B))
    assert spec.modality == "vision-language" and spec.architecture == "Qwen2VLForConditionalGeneration"
    assert abs(spec.num_parameters - 8_291_375_616) / 8_291_375_616 < 1e-3  # Qwen2-VL-7B: 8.29B
    assert spec.num_key_value_heads == 4 and spec.head_dim == 128
    assert "q_proj" in spec.lora_target_modules
    assert not {"qkv", "fc1", "fc2", "proj"} & set(spec.lora_target_modules)  # vision tower left alone


def test_gqa_and_tied_embeddings_shrink_the_count(tmp_path):
    from carl_engine.models import ModelSpec

    full = ModelSpec.from_config(LLAMA_2_7B, name="full", list_modules=False)
    gqa = ModelSpec.from_config({**LLAMA_2_7B, "num_key_value_heads": 8}, name="gqa", list_modules=False)
    tied = ModelSpec.from_config({**LLAMA_2_7B, "tie_word_embeddings": True}, name="tied", list_modules=False)
    assert full.num_parameters - gqa.num_parameters == 32 * 2 * 4096 * (4096 - 1024)
    assert full.num_parameters - tied.num_parameters == 32000 * 4096
    assert full.lora_target_modules == ["all-linear"]


def test_an_unknown_architecture_still_gets_a_count_and_generic_lora_targets(tmp_path):
    from carl_engine.models import ModelSpec

    cfg = {**LLAMA_2_7B, "model_type": "carl-made-up", "architectures": ["MadeUpForCausalLM"]}
    spec = ModelSpec.from_pretrained(_config_dir(tmp_path, cfg))
    assert spec.num_parameters == 6_738_415_616 and spec.lora_target_modules == ["all-linear"]


def test_a_config_without_sizes_names_what_is_missing(tmp_path):
    from carl_engine.models import ModelSpec

    cfg = {k: v for k, v in LLAMA_2_7B.items() if k != "num_hidden_layers"}
    with pytest.raises(InvalidSpecError, match="num_hidden_layers") as info:
        ModelSpec.from_pretrained(_config_dir(tmp_path, cfg))
    assert info.value.field == "model"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(InvalidSpecError, match="could not be read"):
        ModelSpec.from_pretrained(str(broken))


def test_a_hub_name_offline_is_a_clear_error_not_a_download():
    from carl_engine.models import ModelSpec

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(InvalidSpecError, match="HF_HUB_OFFLINE") as info:
        ModelSpec.from_pretrained("carl-studio-tests/not-cached-anywhere")
    assert info.value.field == "model" and "not-cached-anywhere" in str(info.value)
