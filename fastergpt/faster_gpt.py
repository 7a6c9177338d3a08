"""`FasterGPT`: a Paddle layer that runs the whole generation in one fused operator.

It packs a GPT-2 model's weights once (at construction) into the engine's
layout, keeps them as the layer's parameters (so `paddle.jit.save` exports
them) and calls `fastergpt_generate`. `forward` takes every generation setting
as a tensor, so a `paddle.jit.to_static` export keeps them as graph inputs;
`generate` is the friendly Python API with PaddleNLP / HF argument names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import paddle

from fastergpt.config import GPTConfig
from fastergpt.ops import fastergpt_generate, op_error_to_value_error
from fastergpt.packing import pack_weights
from fastergpt.quantize import normalize_dtype
from fastergpt.settings import check_int_array, resolve_settings, setting_names, settings_vector

EXPORT_NAME_PREFIX = "fastergpt_"


@dataclass
class GenerationOutput:
    ids: paddle.Tensor       # int64 [B*R, T]: generated tokens; pad after a row's end token
    lengths: paddle.Tensor   # int64 [B*R]: tokens each row generated, end token included
    logprobs: paddle.Tensor  # float32 [B*R, T]: log-probability of each chosen token
    # float32 [B*R]: beam search, transformers' sequences_scores (sum of logprobs /
    # length^length_penalty); the other strategies, the sum of logprobs
    scores: Optional[paddle.Tensor] = None
    # prompt_lookup_num_tokens > 0: the tokens drafted and those accepted over the batch
    # (as Engine.generate returns them); 0 and 0 without prompt lookup.
    drafted_tokens: int = 0
    accepted_tokens: int = 0

    def __iter__(self):  # ids, lengths = model.generate(...)
        return iter((self.ids, self.lengths))


class FasterGPT(paddle.nn.Layer):
    """Decoder-only generation in one fused operator, for every family of
    fastergpt.models (GPT-2, OPT, GPT-J, CodeGen, GPT-NeoX, LLaMA, Mistral, Qwen2).

    Build it from a checkpoint (``FasterGPT.from_pretrained(dir)``), from the
    reference model (``FasterGPT(GPTLMHeadModel)``), from a live PaddleNLP causal
    LM (``FasterGPT(model)``: GPT, LLaMA, OPT, CodeGen, GPT-J) or from a config and
    a state dict with the family's HF names (``FasterGPT(config, state_dict)``).
    ``dtype`` picks the weight format: "float32", "float16" (half weights, fp32
    accumulation), "int8" (weight-only, per-output-row scales) or "int4" (groups of
    columns); ``vocab_dtype`` the token table's and LM head's (default: the format's
    own, which for int4 is int8; the config records it).
    """

    def __init__(self, model_or_config, state_dict: Optional[dict] = None, *,
                 dtype: str = "float32", packed: Optional[list] = None, tokenizer=None,
                 vocab_dtype: Optional[str] = None):
        super().__init__()
        if isinstance(model_or_config, GPTConfig):
            if state_dict is None and packed is None:
                raise ValueError("FasterGPT(config, state_dict): state_dict is required with a config")
            config = model_or_config
        elif _is_paddlenlp(model_or_config):  # a live PaddleNLP causal LM, read in memory
            from fastergpt.paddlenlp import from_model

            config, state_dict = from_model(model_or_config)
        else:
            config = getattr(model_or_config, "config", None)
            if not isinstance(config, GPTConfig):
                raise TypeError("FasterGPT expects a fastergpt GPTLMHeadModel or (GPTConfig, state_dict), "
                                f"got {type(model_or_config).__name__}")
            state_dict = model_or_config.state_dict_numpy()
        config = config.with_vocab_dtype(vocab_dtype)
        self.config = config.validate()
        self.weight_format = normalize_dtype(dtype)
        if packed is None:
            packed = pack_weights(config, state_dict, self.weight_format)
        # Persistable buffers, not parameters: int8/float16 weights are not
        # trainable, and jit.save stores buffers in the .pdiparams all the same.
        self._weight_names = []
        for i, (name, array) in enumerate(packed):
            attr = "w%03d_%s" % (i, name.replace(".", "_"))
            tensor = paddle.to_tensor(array)
            # The saved program keeps this name, so an exported directory can be
            # read back by position in weight_spec (see pretrained.py).
            tensor.name = EXPORT_NAME_PREFIX + attr
            self.register_buffer(attr, tensor, persistable=True)
            self._weight_names.append(attr)
        self.set_tokenizer(tokenizer)

    def set_tokenizer(self, tokenizer) -> None:
        """The tokenizer whose vocabulary (as bytes) the engine matches `stop` strings
        on; an export keeps it. None, or one it cannot use (larger than the model, an
        unknown decoder), leaves no vocabulary, and stop strings then say why."""
        from fastergpt.stops import vocabulary_of

        data, offsets, self.no_vocabulary_reason = vocabulary_of(tokenizer, self.config.vocab_size)
        for attr, array in (("vocab_bytes", data), ("vocab_offsets", offsets)):
            tensor = paddle.to_tensor(array)
            tensor.name = EXPORT_NAME_PREFIX + attr
            self.register_buffer(attr, tensor, persistable=True)

    @classmethod
    def from_pretrained(cls, model_name_or_path=None, dtype: Optional[str] = None,
                        vocab_dtype: Optional[str] = None) -> "FasterGPT":
        """Load from a local HF or PaddleNLP checkpoint directory, an exported inference
        directory, or the built-in default model (None or "default"). dtype: weight
        format (default float32; an exported directory keeps its own). vocab_dtype: the
        token table's and LM head's format (default: the weight format's own; int4
        keeps them in int8: "int4" there reads fewer bytes per token and costs quality)."""
        from fastergpt.pretrained import load_packed

        from fastergpt.pretrained import tokenizer_or_none

        config, packed, dtype = load_packed(model_name_or_path, dtype, vocab_dtype)
        model = cls(config, dtype=dtype, packed=packed,
                    tokenizer=tokenizer_or_none(model_name_or_path))
        model.eval()
        return model

    @staticmethod
    def input_spec() -> list:
        """The graph inputs of `forward` for paddle.jit.to_static: ids, mask, the
        settings vector and the stop conditions (every one stays a runtime input)."""
        from paddle.static import InputSpec

        return [InputSpec([None, None], "int64", "input_ids"),
                InputSpec([None, None], "int64", "attention_mask"),
                InputSpec([len(setting_names())], "float64", "settings"),
                InputSpec([None], "int64", "end_token_ids"),
                InputSpec([None, None], "int32", "stop_strings")]

    def packed_weights(self) -> list:
        # (From the buffer table itself: Layer.__getattr__ took 37 us for a model's 54
        # weights on every generate call, the table 2 us.)
        return [self._buffers[n] for n in self._weight_names]

    def forward(self, input_ids, attention_mask, settings, end_token_ids, stop_strings):
        """input_ids, attention_mask: int64 [B, L]; settings: float64 [S], one value per
        name of `fastergpt.settings.setting_names()` (what `generate` builds);
        end_token_ids int64 [K] and stop_strings int32 [S, N] as `fastergpt.stops`
        builds them. Returns (ids, lengths, logprobs, scores, prompt_lookup_counts), the
        last int64 [2]: prompt lookup's drafted and accepted tokens; a to_static export has
        these five outputs."""
        return fastergpt_generate(
            input_ids, attention_mask, settings, end_token_ids, stop_strings, self.vocab_bytes,
            self.vocab_offsets, self.packed_weights(),
            architecture=self.config.architecture_string(), weight_format=self.weight_format,
            settings_layout=",".join(setting_names()))

    def generate_stream(self, input_ids, attention_mask=None, tokenizer=None, stop=(),
                        end_token_ids=(), **settings):
        """`generate` a step at a time (see `Engine.generate_stream`): yields each row's new
        token, log-probability and, with a tokenizer, text delta per step. Runs on the
        NumPy module over a copy of the packed weights, made at the first call."""
        ids = input_ids.numpy() if isinstance(input_ids, paddle.Tensor) else input_ids
        mask = attention_mask.numpy() if isinstance(attention_mask, paddle.Tensor) else attention_mask
        return _engine_of(self).generate_stream(ids, mask, tokenizer=tokenizer, stop=stop,
                                                end_token_ids=end_token_ids, **settings)

    @paddle.no_grad()
    def generate(self, input_ids, attention_mask=None, stop=None, end_token_ids=None,
                 **settings) -> GenerationOutput:
        """Generate continuations of left-padded prompts.

        input_ids: int [B, L] (tensor, array or nested list); attention_mask: [B, L]
        with 1 for real tokens and 0 for LEFT padding (default: all real).
        settings: any of `fastergpt.settings.setting_table()` by name (max_new_tokens,
        decode_strategy="greedy_search"|"sampling"|"beam_search", num_beams,
        length_penalty, early_stopping, no_repeat_ngram_size, top_k, top_p, temperature,
        repetition_penalty, min_length, eos_token_id, pad_token_id,
        num_return_sequences, seed, num_threads, ...; `python -m fastergpt settings`
        lists them). eos_token_id/pad_token_id default to the config's; seed None
        draws a random seed. Bad arguments raise ValueError naming the argument.
        stop: strings that end a row (matched on the text, see `fastergpt.stops`; the
        ids keep the token that completed one; needs the model's tokenizer);
        end_token_ids: more ids that end a row besides eos_token_id.
        """
        from fastergpt.stops import end_ids_array, need_vocabulary, stop_strings_array

        need_vocabulary(stop, self.no_vocabulary_reason)
        ids = _as_int_tensor(input_ids, "input_ids")
        mask = (paddle.ones_like(ids) if attention_mask is None
                else _as_int_tensor(attention_mask, "attention_mask"))
        values = resolve_settings(config=self.config, **settings)
        vector = paddle.to_tensor(settings_vector(values), dtype="float64")
        ends = paddle.to_tensor(end_ids_array(end_token_ids))
        stops = paddle.to_tensor(stop_strings_array(stop))
        try:
            out_ids, lengths, logprobs, scores, counts = self.forward(ids, mask, vector, ends, stops)
        except OSError as e:
            raise op_error_to_value_error(e) from None
        drafted, accepted = (int(v) for v in counts.numpy())
        return GenerationOutput(out_ids, lengths, logprobs, scores, drafted, accepted)


def _engine_of(model: "FasterGPT"):
    """The NumPy-module Engine over a FasterGPT's packed weights (copied once, cached)."""
    from fastergpt.engine import Engine

    if getattr(model, "_stream_engine", None) is None:
        packed = [(n, np.ascontiguousarray(getattr(model, n).numpy())) for n in model._weight_names]
        model._stream_engine = Engine(model.config, dtype=model.weight_format, packed=packed)
    return model._stream_engine


def _is_paddlenlp(obj) -> bool:
    return any(c.__module__.startswith("paddlenlp.") for c in type(obj).__mro__)


def _as_int_tensor(x, name: str) -> paddle.Tensor:
    if isinstance(x, paddle.Tensor):
        if x.dtype not in (paddle.int64, paddle.int32, paddle.int16, paddle.int8, paddle.uint8,
                           paddle.bool):
            raise ValueError(f"{name}: dtype must be an integer type, got {x.dtype}")
        if x.ndim != 2:
            raise ValueError(f"{name}: must be 2-D [batch, length], got shape {list(x.shape)}")
        return x.astype("int64") if x.dtype != paddle.int64 else x
    return paddle.to_tensor(check_int_array(x, name))
