"""GPT-2 model configuration shared by the reference model and the fused operator.

Field names follow Hugging Face's GPT-2 ``config.json`` so a checkpoint's
config can be read with :meth:`GPTConfig.from_dict` directly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional

# HF spells the tanh-approximated GELU several ways; the engine knows two kinds.
_ACTIVATION_ALIASES = {
    "gelu_new": "gelu_new",
    "gelu_pytorch_tanh": "gelu_new",
    "gelu_fast": "gelu_new",
    "gelu": "gelu",
}

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

    def __post_init__(self) -> None:
        self.activation_function = normalize_activation(self.activation_function)

    @property
    def inner_size(self) -> int:
        return 4 * self.n_embd if self.n_inner is None else self.n_inner

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

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
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        if not self.layer_norm_epsilon > 0:
            raise ValueError(f"layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon!r}")
        self.activation_function = normalize_activation(self.activation_function)
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"{name} must be None or an int in [0, {self.vocab_size}), got {value!r}"
                )
        return self

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
