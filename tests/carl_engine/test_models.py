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
