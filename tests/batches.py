"""Padded prompt batches for the tests (no Paddle, no torch: imported everywhere)."""
import numpy as np


def padded_batch(prompts, extra_pad=0):
    """Left-pad prompts to one width; pad slots repeat the row's first real token.

    Repeating a token the row already holds keeps HF's repetition penalty (which
    also penalises the ids in padded slots) equal to ours.
    """
    width = max(map(len, prompts)) + extra_pad
    ids = np.array([[p[0]] * (width - len(p)) + p for p in prompts], dtype=np.int64)
    mask = np.array([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=np.int64)
    return ids, mask
