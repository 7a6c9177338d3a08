"""The Python call of the `fastergpt_generate` operator, in every Paddle mode.

Dygraph and PIR static graphs (Paddle 3's default for to_static/export) go
through `_C_ops._run_custom_op`; the legacy ProgramDesc mode appends the op
with a LayerHelper. The operator's contract is documented in
csrc/paddle/fastergpt_op.cc.
"""
from __future__ import annotations

import paddle

from fastergpt.ops.loader import load_ops

OP_NAME = "fastergpt_generate"


# Plain Python that only appends the op: to_static must not rewrite it.
@paddle.jit.not_to_static
def fastergpt_generate(input_ids, attention_mask, settings, end_token_ids, stop_strings,
                       vocab_bytes, vocab_offsets, weights, *, architecture: str,
                       weight_format: str, settings_layout: str):
    """Runs the fused generation. `settings` is a float64 [S] tensor holding one value
    per name of `settings_layout` ("name,name,..."); the stop conditions are tensors as
    `fastergpt.stops` builds them; returns (output_ids, lengths, logprobs, scores,
    prompt_lookup_counts): prompt_lookup_counts int64 [2] holds prompt lookup's drafted and
    accepted tokens over the batch."""
    load_ops()
    from paddle import _C_ops
    from paddle.framework import in_dynamic_or_pir_mode

    attrs = (str(architecture), str(weight_format), str(settings_layout))
    if in_dynamic_or_pir_mode():
        outs = _C_ops._run_custom_op(OP_NAME, input_ids, attention_mask, settings, end_token_ids,
                                     stop_strings, vocab_bytes, vocab_offsets, list(weights),
                                     *attrs)
        return tuple(outs)

    from paddle.base.layer_helper import LayerHelper

    helper = LayerHelper(OP_NAME, **locals())
    ins = {"input_ids": input_ids, "attention_mask": attention_mask, "settings": settings,
           "end_token_ids": end_token_ids, "stop_strings": stop_strings,
           "vocab_bytes": vocab_bytes, "vocab_offsets": vocab_offsets,
           "weights@VECTOR": list(weights)}
    outs = {
        "output_ids": helper.create_variable(dtype="int64"),
        "lengths": helper.create_variable(dtype="int64"),
        "logprobs": helper.create_variable(dtype="float32"),
        "scores": helper.create_variable(dtype="float32"),
        "prompt_lookup_counts": helper.create_variable(dtype="int64"),
    }
    helper.append_op(type=OP_NAME, inputs=ins, outputs=outs,
                     attrs={"architecture": attrs[0], "weight_format": attrs[1],
                            "settings_layout": attrs[2]})
    return (outs["output_ids"], outs["lengths"], outs["logprobs"], outs["scores"],
            outs["prompt_lookup_counts"])


def op_error_to_value_error(err: OSError) -> Exception:
    """Paddle surfaces the operator's argument errors (PD_THROW) as OSError; give
    callers the ValueError it really is, with just the operator's message."""
    msg = str(err)
    marker = OP_NAME + ":"
    if marker not in msg:
        return err
    return ValueError(msg[msg.index(marker):].split("\n")[0])
