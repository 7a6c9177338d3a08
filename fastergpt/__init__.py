"""fastergpt: GPT text generation in one fused Paddle operator.

    from fastergpt import FasterGPT, GPTConfig
    from fastergpt.reference import GPTLMHeadModel

    model = FasterGPT(GPTLMHeadModel(GPTConfig(...)))
    out = model.generate(input_ids, max_new_tokens=32, decode_strategy="sampling", top_k=4)
"""
from fastergpt.config import GPTConfig
from fastergpt.engine import Engine
from fastergpt.faster_gpt import FasterGPT, GenerationOutput
from fastergpt.ops import BuildError

__version__ = "0.1.0"
__all__ = ["GPTConfig", "FasterGPT", "GenerationOutput", "Engine", "BuildError", "__version__"]
