"""Models: the offline `carl-tiny`, name resolution, loading, and `ModelSpec` from config.json.

carl-tiny is the embedded default model: a 2-layer Llama-architecture causal LM with a
byte-level BPE tokenizer trained here on the built-in tasks' text (digits are always single
tokens, so "12+7=19" is 6 tokens). It is built from a fixed seed in about a second, so two
builds give byte-identical files, and saved with `save_pretrained` like any Hub model: real
models go through exactly the same `AutoModelForCausalLM` / `AutoTokenizer` loading code.

Builds are atomic: files are written to a temporary folder beside the target, then renamed
into place; two processes building at once both end up reading one complete model.

Top-level imports stay light (no torch/transformers): the MCP server imports this module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from carl_engine import paths
from carl_engine.errors import InvalidSpecError

CARL_TINY = "carl-tiny"
CARL_TINY_VERSION = "v1"
CARL_TINY_SEED = 1234

# The recipe. Changing any value means a new CARL_TINY_VERSION (cached builds are per version).
TINY_VOCAB_SIZE = 384
TINY_ARCH: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.05,
}
PAD, EOS, BOS = "<pad>", "<eos>", "<bos>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


def carl_tiny_dir() -> Path:
    """Where this version of carl-tiny lives: `paths.models_dir()/carl-tiny-<version>`."""
    return paths.models_dir() / f"{CARL_TINY}-{CARL_TINY_VERSION}"


def ensure_carl_tiny() -> Path:
    """Build carl-tiny once (deterministic, about a second) and return its folder.

    Returns:
        The folder holding config.json, model.safetensors, generation_config.json and the
        tokenizer files, loadable with `load_model_and_tokenizer`.
    """
    final = carl_tiny_dir()
    if (final / "config.json").is_file():
        return final
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        build_carl_tiny(tmp)
        try:
            os.rename(tmp, final)  # atomic; fails if another process renamed first
        except OSError:
            if not (final / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _tokenizer_corpus() -> list[str]:
    from carl_engine.tasks import get_task, list_tasks
    from carl_engine.tasks.arithmetic import DIFFICULTIES

    texts: list[str] = []
    for name in list_tasks():
        task = get_task(name)
        texts.append(task.description)
        texts.extend(task.corpus(n=2000, seed=0))
    for difficulty in DIFFICULTIES:  # every arithmetic level, so longer numbers are familiar
        texts.extend(get_task("arithmetic", difficulty=difficulty).corpus(n=500, seed=1))
    return texts


def build_tokenizer():
    """Train carl-tiny's tokenizer: byte-level BPE (any text round-trips), single-digit tokens.

    Returns:
        A `PreTrainedTokenizerFast` with pad/eos/bos, role tokens, chat template, left padding.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[PAD, EOS, BOS, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=BOS,
        padding_side="left",  # generation appends on the right: prompts are padded on the left
        model_max_length=TINY_ARCH["max_position_embeddings"],
        chat_template=CHAT_TEMPLATE,
    )


def build_carl_tiny(dest: Path) -> Path:
    """Write a fresh carl-tiny (fixed seed) into `dest` with `save_pretrained`.

    Args:
        dest: a folder that need not exist; its contents are overwritten.

    Returns:
        `dest`.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        **TINY_ARCH,
    )
    with torch.random.fork_rng(devices=[]):  # leaves the caller's RNG untouched
        torch.manual_seed(CARL_TINY_SEED)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def resolve_model(name_or_path: str, *, field: str = "model") -> str:
    """Turn a model reference into what `from_pretrained` takes.

    Args:
        name_or_path: "carl-tiny", a local folder, or a Hub name ("org/name").
        field: the spec field to name in errors.

    Returns:
        carl-tiny's local folder (built if needed); a local folder as given (made absolute);
        a Hub name unchanged.

    Raises:
        InvalidSpecError: empty, a local path that does not exist or has no config.json,
            or something that is neither a path nor a valid Hub name.
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise InvalidSpecError(field, "must be carl-tiny, a local model folder or a Hub name", got=name_or_path)
    if name_or_path == CARL_TINY:
        return str(ensure_carl_tiny())
    path = Path(name_or_path).expanduser()
    looks_local = name_or_path.startswith(("/", ".", "~")) or "\\" in name_or_path or name_or_path.count("/") > 1
    if path.exists():
        if not (path / "config.json").is_file():
            raise InvalidSpecError(field, "local model folder has no config.json", got=name_or_path)
        return str(path.resolve())
    if looks_local:
        raise InvalidSpecError(field, "local model path does not exist", got=name_or_path)
    if not _HUB_NAME.match(name_or_path):
        raise InvalidSpecError(field, "is neither an existing local folder nor a Hub name like 'org/name'", got=name_or_path)
    return name_or_path


def load_model_and_tokenizer(name_or_path: str, *, torch_dtype: Any = None, field: str = "model"):
    """Load a causal LM and its tokenizer, ready for TRL: pad and eos set, a chat template set.

    Args:
        name_or_path: anything `resolve_model` takes.
        torch_dtype: a torch dtype or its name ("float32", "bfloat16"); None keeps the saved one.
        field: the spec field to name in errors.

    Returns:
        (model, tokenizer). A tokenizer without a pad token gets pad = eos; one without a chat
        template gets carl-tiny's plain template.

    Raises:
        InvalidSpecError: as `resolve_model`, or a dtype name torch does not know.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model(name_or_path, field=field)
    dtype = torch_dtype
    if isinstance(torch_dtype, str) and torch_dtype != "auto":
        dtype = getattr(torch, torch_dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise InvalidSpecError("torch_dtype", "must be a torch dtype name such as float32 or bfloat16", got=torch_dtype)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.eos_token is None:
        raise InvalidSpecError(field, "the model's tokenizer has no eos token", got=name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHAT_TEMPLATE.replace("<eos>", tokenizer.eos_token)
    kwargs = {} if dtype is None else {"dtype": dtype}
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
