"""Plain Paddle dygraph GPT-2 reference model and generate(): the oracle for the fused operator."""

from fastergpt.reference.generate import GenerateOutput, generate, sampling_distribution
from fastergpt.reference.model import GPTLMHeadModel, GPTModel, randomize_

__all__ = [
    "GPTModel",
    "GPTLMHeadModel",
    "randomize_",
    "generate",
    "sampling_distribution",
    "GenerateOutput",
]
