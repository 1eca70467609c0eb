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

from pydantic import BaseModel, Field

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
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a one-shard bar is noise in the CLI and in job logs
    try:
        model.save_pretrained(dest)
        tokenizer.save_pretrained(dest)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
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


# --------------------------------------------------------------------------------------------
# ModelSpec: what a model is, from its config.json alone (no weights are read).
# --------------------------------------------------------------------------------------------

_ALIASES: dict[str, tuple[str, ...]] = {  # the names different config families use for one thing
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "vision_width": ("embed_dim", "hidden_size", "d_model"),  # Qwen2-VL: hidden_size is the output width
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers", "depth"),
    "num_heads": ("num_attention_heads", "n_head", "num_heads"),
    "intermediate_size": ("intermediate_size", "ffn_hidden_size", "ffn_dim", "n_inner"),
    "max_positions": ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"),
    "num_experts": ("num_local_experts", "num_experts", "n_routed_experts"),
}
# Activations whose MLP has no gate (up + down only); every other activation (SiLU, GeGLU, ...)
# is taken as a gated MLP (gate + up + down), as in Llama, Qwen, Mistral and Gemma.
_UNGATED_ACTIVATIONS = {"gelu", "gelu_new", "gelu_fast", "relu", "quick_gelu"}


def _pick(cfg: dict[str, Any], key: str, default: Any = None) -> Any:
    for name in _ALIASES[key]:
        if cfg.get(name) is not None:
            return cfg[name]
    return default


def _need(cfg: dict[str, Any], key: str, where: str) -> int:
    value = _pick(cfg, key)
    if not isinstance(value, int) or value <= 0:
        raise InvalidSpecError("model", f"{where} lacks a positive {' / '.join(_ALIASES[key])}", got=value)
    return value


def text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The language-model part of a config: `text_config` (or `llm_config`) laid over the top level."""
    nested = cfg.get("text_config") or cfg.get("llm_config") or {}
    return {**cfg, **nested}


def count_text_parameters(cfg: dict[str, Any]) -> int:
    """Parameters of a decoder-only language model, from its config.

    embeddings V·H (+ V·H for an untied LM head) + L × (attention + MLP + 2 norms) + final norm:
      attention = H·(n_q·d) + 2·H·(n_kv·d) + (n_q·d)·H      (GQA: n_kv key/value heads, head dim d)
      MLP       = 3·H·I gated (2·H·I ungated); MoE: E experts of size I_e + an H·E router
                  (+ a shared expert of size I_s when the config names one)
    Biases are counted when the config names them (attention_bias, mlp_bias); biases fixed by
    an architecture (Qwen2's q/k/v bias, < 0.01 % of a 7B model) are left out.
    """
    h = _need(cfg, "hidden_size", "config")
    layers = _need(cfg, "num_layers", "config")
    heads = _need(cfg, "num_heads", "config")
    vocab = cfg.get("vocab_size")
    if not isinstance(vocab, int) or vocab <= 0:
        raise InvalidSpecError("model", "config lacks a positive vocab_size", got=vocab)
    kv_heads = cfg.get("num_key_value_heads") or cfg.get("num_kv_heads") or heads
    head_dim = cfg.get("head_dim") or h // heads
    inter = _pick(cfg, "intermediate_size") or 4 * h
    act = str(cfg.get("hidden_act") or cfg.get("activation_function") or "silu")
    gated = act not in _UNGATED_ACTIVATIONS and "n_embd" not in cfg and "ffn_dim" not in cfg

    q, kv = heads * head_dim, kv_heads * head_dim
    attention = h * q + 2 * h * kv + q * h
    if cfg.get("attention_bias"):
        attention += q + 2 * kv + h
    mlp_matrices = 3 if gated else 2
    experts = _pick(cfg, "num_experts")
    if experts:
        expert_size = cfg.get("moe_intermediate_size") or inter
        mlp = experts * mlp_matrices * h * expert_size + h * experts
        shared = cfg.get("shared_expert_intermediate_size") or 0
        mlp += mlp_matrices * h * shared
    else:
        mlp = mlp_matrices * h * inter + ((mlp_matrices - 1) * inter + h if cfg.get("mlp_bias") else 0)
    per_layer = attention + mlp + 2 * h
    embeddings = vocab * h * (1 if cfg.get("tie_word_embeddings", False) else 2)
    return embeddings + layers * per_layer + h


def count_vision_parameters(vision: dict[str, Any], text_hidden: int) -> int:
    """Parameters of a ViT-style vision tower and its projector into the language model.

    blocks = depth × (4·D² + 4·D  [q, k, v, out with biases] + 2·D·I + I + D [MLP] + 4·D [norms])
    patch embedding = channels · patch² · temporal_patch · D
    projector = (D·m²)² + (D·m²)·H, with m the spatial merge size (1 when absent): an estimate
    that matches two-layer MLP projectors.
    """
    d = _need(vision, "vision_width", "vision_config")
    depth = _need(vision, "num_layers", "vision_config")
    inter = _pick(vision, "intermediate_size") or int(vision.get("mlp_ratio", 4) * d)
    blocks = depth * (4 * d * d + 4 * d + 2 * d * inter + inter + d + 4 * d)
    patch = int(vision.get("patch_size", 14))
    channels = vision.get("in_channels") or vision.get("in_chans") or vision.get("num_channels") or 3
    patch_embed = int(channels) * patch * patch * d
    patch_embed *= int(vision.get("temporal_patch_size", 1))
    merged = d * int(vision.get("spatial_merge_size", 1)) ** 2
    return blocks + patch_embed + merged * merged + merged * text_hidden


class ModelSpec(BaseModel):
    """What a model is, read from config.json alone: no weights are loaded or downloaded."""

    name: str = Field(description="The model as given: carl-tiny, a local folder or a Hub name.")
    architecture: str = Field(description="The transformers class in config.json, e.g. LlamaForCausalLM.")
    model_type: str = Field(description="config.json model_type, e.g. llama, qwen2, qwen2_vl.")
    num_parameters: int = Field(description="Parameter count computed from the config shapes (all towers).")
    hidden_size: int = Field(description="Width of the language model.")
    num_layers: int = Field(description="Decoder layers of the language model.")
    num_attention_heads: int = Field(description="Query heads per layer.")
    num_key_value_heads: int = Field(description="Key/value heads per layer (fewer than query heads under GQA).")
    head_dim: int = Field(description="Width of one attention head.")
    intermediate_size: int = Field(description="MLP width of the language model.")
    vocab_size: int = Field(description="Vocabulary size.")
    max_position_embeddings: int | None = Field(description="Longest context the config declares.")
    tie_word_embeddings: bool = Field(description="Whether the LM head shares the embedding matrix.")
    modality: str = Field(description="'text' or 'vision-language' (the config has a vision tower).")
    lora_target_modules: list[str] = Field(
        description="Names of the language model's Linear layers for LoRA; ['all-linear'] when they could not be listed."
    )
    torch_dtype: str | None = Field(description="The dtype the weights were saved in, when the config says.")

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, list_modules: bool = True, field: str = "model") -> ModelSpec:
        """Read a model's config.json (local folder, carl-tiny, or only that file from the Hub).

        Args:
            name_or_path: anything `resolve_model` takes.
            list_modules: list LoRA targets by building the model on the meta device (no
                memory, no weights; about a second for 7B). False gives ['all-linear'].
            field: the spec field to name in errors.

        Returns:
            The ModelSpec.

        Raises:
            InvalidSpecError: bad reference, config.json missing or unreadable, offline with no
                cached config, or a config without the sizes the count needs.
        """
        source = resolve_model(name_or_path, field=field)
        cfg = read_config(source, field=field)
        return cls.from_config(cfg, name=name_or_path, list_modules=list_modules)

    @classmethod
    def from_config(cls, cfg: dict[str, Any], *, name: str, list_modules: bool = True) -> ModelSpec:
        """A ModelSpec from an already-read config.json dict (see `from_pretrained`)."""
        text = text_config(cfg)
        vision = cfg.get("vision_config")
        is_vl = isinstance(vision, dict) or any(k in cfg for k in ("vision_tower", "image_token_id", "image_token_index"))
        hidden = _need(text, "hidden_size", "config")
        heads = _need(text, "num_heads", "config")
        params = count_text_parameters(text)
        if isinstance(vision, dict):
            params += count_vision_parameters(vision, hidden)
        model_type = str(cfg.get("model_type") or "unknown")
        targets = _linear_module_names(cfg) if list_modules else []
        return cls(
            name=name,
            architecture=(cfg.get("architectures") or [model_type])[0],
            model_type=model_type,
            num_parameters=params,
            hidden_size=hidden,
            num_layers=_need(text, "num_layers", "config"),
            num_attention_heads=heads,
            num_key_value_heads=text.get("num_key_value_heads") or heads,
            head_dim=text.get("head_dim") or hidden // heads,
            intermediate_size=_pick(text, "intermediate_size") or 4 * hidden,
            vocab_size=text["vocab_size"],
            max_position_embeddings=_pick(text, "max_positions"),
            tie_word_embeddings=bool(text.get("tie_word_embeddings", False)),
            modality="vision-language" if is_vl else "text",
            lora_target_modules=targets or ["all-linear"],
            torch_dtype=cfg.get("torch_dtype") or cfg.get("dtype") or text.get("torch_dtype"),
        )


def read_config(source: str, *, field: str = "model") -> dict[str, Any]:
    """config.json of a local folder, or of a Hub model (that one file only, via the HF cache).

    Raises:
        InvalidSpecError: no config.json, not JSON, or the Hub unreachable (offline included).
    """
    local = Path(source)
    if local.is_dir():
        path = local / "config.json"
    else:
        path = _download_config(source, field=field)
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidSpecError(field, f"config.json could not be read: {type(exc).__name__}", got=str(path)) from None
    if not isinstance(cfg, dict):
        raise InvalidSpecError(field, "config.json must hold a JSON object", got=str(path))
    return cfg


def _download_config(repo_id: str, *, field: str) -> Path:
    import httpx
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError

    try:
        return Path(hf_hub_download(repo_id, "config.json"))
    except (OSError, EntryNotFoundError, HfHubHTTPError, HFValidationError, httpx.HTTPError) as exc:
        if constants.HF_HUB_OFFLINE:
            rule = "config.json of this Hub model is not in the local cache and HF_HUB_OFFLINE=1 forbids downloading it"
        else:
            rule = f"config.json of this Hub model could not be fetched ({type(exc).__name__})"
        raise InvalidSpecError(field, rule, got=repo_id, hint="use a local model folder or carl-tiny") from None


def _linear_module_names(cfg: dict[str, Any]) -> list[str]:
    """Leaf names of the language model's Linear layers, from the model built on the meta
    device (no memory, no weights). The LM head and any vision tower are left out.
    Returns [] when transformers cannot build the architecture."""
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

        kwargs = {k: v for k, v in cfg.items() if k != "model_type"}
        config = AutoConfig.for_model(cfg["model_type"], **kwargs)
        auto = AutoModelForImageTextToText if "vision_config" in cfg else AutoModelForCausalLM
        with torch.device("meta"):
            model = auto.from_config(config)
        decoder = model.get_decoder()
    except (KeyError, ValueError, TypeError, AttributeError, ImportError, RuntimeError):
        return []
    names = {name.rsplit(".", 1)[-1] for name, mod in decoder.named_modules() if isinstance(mod, torch.nn.Linear)}
    return sorted(names)
