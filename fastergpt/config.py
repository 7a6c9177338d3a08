"""Model configuration shared by the reference model and the fused operator.

The sizes use Hugging Face GPT-2's ``config.json`` names (so a GPT-2 config is
read with :meth:`GPTConfig.from_dict` directly); the architecture fields after
them describe the other families (their defaults are GPT-2's), with the names
of the engine's architecture table (csrc/core/model_config.h). A family's file
in fastergpt/models/ fills them from that family's ``config.json``;
:meth:`GPTConfig.architecture` hands them to the engine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional

# HF spells the tanh-approximated GELU several ways; the engine knows four kinds.
_ACTIVATION_ALIASES = {
    "gelu_new": "gelu_new",
    "gelu_pytorch_tanh": "gelu_new",
    "gelu_fast": "gelu_new",
    "gelu": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
# HF's names -> the engine's (csrc/core/model_config.h kActivationNames).
_ENGINE_ACTIVATION = {"gelu_new": "gelu_tanh", "gelu": "gelu_erf", "relu": "relu", "silu": "silu"}

# HF config.json keys that differ from ours.
_HF_KEY_ALIASES = {
    "n_ctx": "n_positions",
    "max_position_embeddings": "n_positions",
    "hidden_size": "n_embd",
    "num_hidden_layers": "n_layer",
    "num_attention_heads": "n_head",
}


def normalize_activation(name: str) -> str:
    """Map an activation name (HF aliases included) to "gelu_new" or "gelu"."""
    try:
        return _ACTIVATION_ALIASES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"activation_function {name!r} is not supported; "
            f"expected one of {sorted(_ACTIVATION_ALIASES)}"
        ) from None


@dataclass
class GPTConfig:
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: Optional[int] = None
    layer_norm_epsilon: float = 1e-5
    activation_function: str = "gelu_new"
    tie_word_embeddings: bool = True
    bos_token_id: Optional[int] = None
    eos_token_id: Optional[int] = None
    pad_token_id: Optional[int] = None
    # Architecture (engine names; GPT-2 defaults). See csrc/core/model_config.h.
    model_type: str = "gpt2"
    n_kv_head: Optional[int] = None       # key/value heads; None: n_head
    head_dim: Optional[int] = None        # None: n_embd // n_head
    embed_size: Optional[int] = None      # token embedding width; None: n_embd
    norm: str = "layer_norm"              # or "rms_norm"
    positions: str = "learned"            # or "rotary"
    rotary_dim: Optional[int] = None      # None: the whole head
    rotary_base: float = 10000.0
    rotary_interleaved: bool = False
    rope_scaling: str = "none"            # or "linear", "llama3"
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_positions: int = 8192
    gated_mlp: bool = False
    residual: str = "sequential"          # or "parallel", "parallel_two_norms", "post_norm"
    qkv_bias: bool = True
    out_bias: bool = True
    mlp_bias: bool = True
    lm_head_bias: bool = False
    sliding_window: Optional[int] = None
    # Weight format of the token table and LM head; None: the weight format's own choice
    # (int4 keeps them int8). Set by the loaders' vocab_dtype, recorded by saves/exports.
    vocab_dtype: Optional[str] = None
    # The checkpoint's 4-bit matrices are act-order (GPTQ desc_act: each one's own column
    # grouping, g_idx): int4 keeps each layer matrix's columns in a stored order. Set by
    # load_checkpoint, recorded by saves/exports; other formats ignore it.
    act_order: bool = False

    def __post_init__(self) -> None:
        self.activation_function = normalize_activation(self.activation_function)

    @property
    def inner_size(self) -> int:
        return 4 * self.n_embd if self.n_inner is None else self.n_inner

    @property
    def head_size(self) -> int:
        return self.head_dim or self.n_embd // self.n_head

    def architecture(self) -> dict:
        """The engine's architecture fields ({name: str}, csrc/core/model_config.h)."""
        f = {
            "num_layers": self.n_layer, "num_heads": self.n_head,
            "num_kv_heads": self.n_kv_head or 0, "head_size": self.head_dim or 0,
            "hidden_size": self.n_embd, "embed_size": self.embed_size or 0,
            "inner_size": self.inner_size, "vocab_size": self.vocab_size,
            "max_positions": self.n_positions, "norm": self.norm,
            "norm_epsilon": repr(float(self.layer_norm_epsilon)), "positions": self.positions,
            "rotary_dim": self.rotary_dim or 0, "rotary_base": repr(float(self.rotary_base)),
            "rotary_interleaved": int(self.rotary_interleaved), "rope_scaling": self.rope_scaling,
            "rope_factor": repr(float(self.rope_factor)),
            "rope_low_freq_factor": repr(float(self.rope_low_freq_factor)),
            "rope_high_freq_factor": repr(float(self.rope_high_freq_factor)),
            "rope_original_max_positions": self.rope_original_max_positions,
            "activation": _ENGINE_ACTIVATION[normalize_activation(self.activation_function)],
            "gated_mlp": int(self.gated_mlp), "residual": self.residual,
            "qkv_bias": int(self.qkv_bias), "out_bias": int(self.out_bias),
            "mlp_bias": int(self.mlp_bias), "tied_lm_head": int(self.tie_word_embeddings),
            "lm_head_bias": int(self.lm_head_bias), "sliding_window": self.sliding_window or 0,
            "vocabulary_format": self.vocab_dtype or "auto", "act_order": int(self.act_order),
        }
        return {k: str(v) for k, v in f.items()}

    def with_vocab_dtype(self, vocab_dtype: Optional[str]) -> "GPTConfig":
        """This config, or (vocab_dtype given) a validated copy whose token table and LM
        head take that format; a format the engine lacks is a ValueError naming it."""
        if vocab_dtype is None:
            return self
        return dataclasses.replace(self, vocab_dtype=vocab_dtype).validate()

    def architecture_string(self) -> str:
        """"name=value;..." as the Paddle op's `architecture` attribute takes it."""
        return "".join(f"{k}={v};" for k, v in self.architecture().items())

    def validate(self) -> "GPTConfig":
        """Raise ValueError naming the first bad field; return self for chaining."""
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.n_inner is not None and (
            isinstance(self.n_inner, bool) or not isinstance(self.n_inner, int) or self.n_inner < 1
        ):
            raise ValueError(f"n_inner must be None or a positive int, got {self.n_inner!r}")
        if self.head_dim is None and self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        eps = self.layer_norm_epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < float("inf"):
            raise ValueError(f"layer_norm_epsilon must be a positive number, got {eps!r}")
        self.activation_function = normalize_activation(self.activation_function)
        self._validate_architecture()
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"{name} must be None or an int in [0, {self.vocab_size}), got {value!r}"
                )
        return self

    def _validate_architecture(self) -> None:
        """The architecture fields' types and choices (the engine checks their consistency)."""
        for name in ("tie_word_embeddings", "rotary_interleaved", "gated_mlp", "qkv_bias",
                     "out_bias", "mlp_bias", "lm_head_bias", "act_order"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name, choices in (("norm", ("layer_norm", "rms_norm")), ("positions", ("learned", "rotary")),
                              ("rope_scaling", ("none", "linear", "llama3")),
                              ("residual", ("sequential", "parallel", "parallel_two_norms", "post_norm"))):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        for name in ("n_kv_head", "head_dim", "embed_size", "rotary_dim", "sliding_window"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or a positive int, got {value!r}")
        for name in ("rotary_base", "rope_factor", "rope_low_freq_factor", "rope_high_freq_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.vocab_dtype is not None:
            from fastergpt.quantize import normalize_dtype
            self.vocab_dtype = normalize_dtype(self.vocab_dtype, "vocab_dtype")
        if (isinstance(self.rope_original_max_positions, bool)
                or not isinstance(self.rope_original_max_positions, int)
                or self.rope_original_max_positions < 1):
            raise ValueError("rope_original_max_positions must be a positive int, "
                             f"got {self.rope_original_max_positions!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GPTConfig":
        """Build from our own keys or HF GPT-2 config.json keys; unknown keys are ignored."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in fields}
        # Canonical keys win over aliases (HF files may hold both, e.g. n_ctx and n_positions).
        for alias, key in _HF_KEY_ALIASES.items():
            if alias in d and key not in kwargs:
                kwargs[key] = d[alias]
        # HF stores a list when a model has several eos ids; the engine takes one.
        if isinstance(kwargs.get("eos_token_id"), (list, tuple)):
            ids = kwargs["eos_token_id"]
            kwargs["eos_token_id"] = ids[0] if ids else None
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
