"""Plain Paddle dygraph GPT-2: the reference the fused operator is checked against.

Parameter names and shapes are exactly Hugging Face GPT-2's (with the
``transformer.`` prefix), so HF checkpoints load without renaming. Projection
weights are stored [in, out] like HF's Conv1D. Everything runs in float32.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from fastergpt.config import GPTConfig

# Finite rather than -inf: a left-padding query may see only masked keys, and
# -inf there would turn its softmax into NaN. exp(-1e9) is still exactly 0.
MASK_VALUE = -1e9


def _tensor(x, dtype: str):
    if isinstance(x, paddle.Tensor):
        return x if x.dtype == getattr(paddle, dtype) else x.astype(dtype)
    return paddle.to_tensor(np.asarray(x, dtype=dtype))


def _normal(std: float) -> paddle.ParamAttr:
    return paddle.ParamAttr(initializer=nn.initializer.Normal(mean=0.0, std=std))


class Conv1D(nn.Layer):
    """y = x @ weight + bias with weight [in, out] (HF's Conv1D layout)."""

    def __init__(self, n_in: int, n_out: int, std: float = 0.02):
        super().__init__()
        self.weight = self.create_parameter([n_in, n_out], attr=_normal(std), dtype="float32")
        self.bias = self.create_parameter(
            [n_out], dtype="float32", is_bias=True,
            default_initializer=nn.initializer.Constant(0.0),
        )

    def forward(self, x):
        return paddle.matmul(x, self.weight) + self.bias


class GPTAttention(nn.Layer):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.head_size = config.head_size
        self.c_attn = Conv1D(config.n_embd, 3 * config.n_embd)
        self.c_proj = Conv1D(config.n_embd, config.n_embd)

    def _heads(self, x):
        b, s, _ = x.shape
        return x.reshape([b, s, self.n_head, self.head_size]).transpose([0, 2, 1, 3])

    def forward(self, x, attention_bias, layer_cache=None):
        q, k, v = paddle.split(self.c_attn(x), 3, axis=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        if layer_cache is not None:
            k = paddle.concat([layer_cache[0], k], axis=2)
            v = paddle.concat([layer_cache[1], v], axis=2)
        scores = paddle.matmul(q, k, transpose_y=True) * (1.0 / math.sqrt(self.head_size))
        scores = scores + attention_bias
        out = paddle.matmul(F.softmax(scores, axis=-1), v)
        b, _, s, _ = out.shape
        out = out.transpose([0, 2, 1, 3]).reshape([b, s, self.n_head * self.head_size])
        return self.c_proj(out), (k, v)


def _causal_bias(s_q: int, s_k: int):
    # The s_q queries are the last s_q of the s_k key slots (earlier ones are cached).
    q_pos = np.arange(s_k - s_q, s_k)[:, None]
    k_pos = np.arange(s_k)[None, :]
    bias = np.where(k_pos > q_pos, MASK_VALUE, 0.0).astype("float32")
    return paddle.to_tensor(bias)


class GPTMLP(nn.Layer):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = Conv1D(config.n_embd, config.inner_size)
        self.c_proj = Conv1D(config.inner_size, config.n_embd)
        # "gelu_new" is the tanh approximation; "gelu" the exact erf form.
        self.approximate = config.activation_function == "gelu_new"

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate))


class GPTBlock(nn.Layer):
    def __init__(self, config: GPTConfig):
        super().__init__()
        eps = config.layer_norm_epsilon
        self.ln_1 = nn.LayerNorm(config.n_embd, epsilon=eps)
        self.attn = GPTAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, epsilon=eps)
        self.mlp = GPTMLP(config)

    def forward(self, x, attention_bias, layer_cache=None):
        a, new_cache = self.attn(self.ln_1(x), attention_bias, layer_cache)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, new_cache


class GPTModel(nn.Layer):
    """GPT-2 trunk: embeddings, n_layer pre-LayerNorm blocks, final LayerNorm."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd, weight_attr=_normal(0.02))
        self.wpe = nn.Embedding(config.n_positions, config.n_embd, weight_attr=_normal(0.02))
        self.h = nn.LayerList([GPTBlock(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, epsilon=config.layer_norm_epsilon)

    def forward(self, input_ids, position_ids=None, attention_bias=None, cache=None):
        """Return (hidden [B, S, n_embd], new cache).

        attention_bias: optional additive float32 bias broadcastable to
        [B, n_head, S, S_past + S] (e.g. MASK_VALUE at padding keys); the causal
        mask is always applied on top. cache: list of per-layer (k, v), each
        [B, n_head, S_past, head_size]; position_ids default to S_past.. S_past+S-1.
        """
        input_ids = _tensor(input_ids, "int64")
        past = 0 if cache is None else cache[0][0].shape[2]
        if position_ids is None:
            position_ids = paddle.arange(past, past + input_ids.shape[1], dtype="int64")
            position_ids = position_ids.unsqueeze(0).expand(input_ids.shape)
        position_ids = _tensor(position_ids, "int64")
        s = input_ids.shape[1]
        bias = _causal_bias(s, past + s)
        if attention_bias is not None:
            bias = bias + _tensor(attention_bias, "float32")
        x = self.wte(input_ids) + self.wpe(position_ids)
        new_cache = []
        for i, block in enumerate(self.h):
            x, layer_cache = block(x, bias, None if cache is None else cache[i])
            new_cache.append(layer_cache)
        return self.ln_f(x), new_cache


class LMHead(nn.Layer):
    def __init__(self, vocab_size: int, n_embd: int):
        super().__init__()
        self.weight = self.create_parameter([vocab_size, n_embd], attr=_normal(0.02), dtype="float32")


class GPTLMHeadModel(nn.Layer):
    """GPT-2 with a language-model head; the head reuses wte when tied."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        # The reference is GPT-2 itself (the other families are checked against transformers).
        if config.model_type != "gpt2" or config.activation_function not in ("gelu_new", "gelu"):
            raise ValueError(f"the reference model is GPT-2 with GELU; got model_type="
                             f"{config.model_type!r}, activation_function="
                             f"{config.activation_function!r}")
        self.config = config
        self.transformer = GPTModel(config)
        # Tied: no lm_head parameter at all, so the state dict matches HF's saved files.
        self.lm_head = None if config.tie_word_embeddings else LMHead(config.vocab_size, config.n_embd)

    @property
    def lm_head_weight(self):
        return self.transformer.wte.weight if self.lm_head is None else self.lm_head.weight

    def forward(self, input_ids, position_ids=None, attention_bias=None, cache=None):
        """Return (logits float32 [B, S, vocab], new cache); arguments as GPTModel.forward."""
        hidden, new_cache = self.transformer(input_ids, position_ids, attention_bias, cache)
        logits = paddle.matmul(hidden, self.lm_head_weight, transpose_y=True)
        return logits, new_cache

    def state_dict_numpy(self) -> dict[str, np.ndarray]:
        return {name: p.numpy() for name, p in self.named_parameters()}

    def load_numpy_state_dict(self, d: Mapping[str, np.ndarray]) -> None:
        """Load every parameter from d; a missing, unexpected or mis-shaped tensor is a ValueError."""
        params = dict(self.named_parameters())
        missing = sorted(set(params) - set(d))
        unexpected = sorted(set(d) - set(params))
        if missing:
            raise ValueError(f"missing tensor(s) in state dict: {missing}")
        if unexpected:
            raise ValueError(f"unexpected tensor(s) in state dict: {unexpected}")
        for name, p in params.items():
            value = np.asarray(d[name])
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(
                    f"tensor {name} has shape {tuple(value.shape)}, expected {tuple(p.shape)}"
                )
        for name, p in params.items():
            p.set_value(np.asarray(d[name], dtype="float32"))


def _is_layer_norm_weight(name: str) -> bool:
    return name.endswith("weight") and (".ln_" in name or name.startswith("ln_"))


def randomize_(model: nn.Layer, seed: int, std: float = 0.02) -> nn.Layer:
    """Set every parameter from numpy RandomState(seed): N(0, std), LayerNorm weights 1 + N(0, std).

    Unlike the constructor this also perturbs biases and LayerNorm parameters,
    so tests exercise every tensor the fused operator reads.
    """
    rng = np.random.RandomState(seed)
    for name, p in model.named_parameters():
        value = rng.standard_normal(p.shape) * std
        if _is_layer_norm_weight(name):
            value += 1.0
        p.set_value(value.astype("float32"))
    return model
