"""fastergpt: GPT text generation in one fused Paddle operator.

    from fastergpt import FasterGPT, GPTConfig
    from fastergpt.reference import GPTLMHeadModel

    model = FasterGPT(GPTLMHeadModel(GPTConfig(...)))
    out = model.generate(input_ids, max_new_tokens=32, decode_strategy="sampling", top_k=4)
"""
from fastergpt.config import GPTConfig

__version__ = "0.1.0"
__all__ = ["GPTConfig", "FasterGPT", "GenerationOutput", "Engine", "BuildError", "Tokenizer",
           "Predictor", "__version__"]

# Imported on first use, so `from fastergpt import Engine` (the NumPy path)
# never loads Paddle.
_LAZY = {
    "Engine": "fastergpt.engine",
    "FasterGPT": "fastergpt.faster_gpt",
    "GenerationOutput": "fastergpt.faster_gpt",
    "BuildError": "fastergpt.ops.build",
    "Tokenizer": "fastergpt.tokenizer",
    "Predictor": "fastergpt.predictor",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fastergpt' has no attribute {name!r}")
