"""The learning-rate schedule of the official EmbedSeg code, shared by every trained method.

Poly decay set once per epoch: lr(e) = base · (1 − e/200)^0.9, and 0 from epoch 200 on. The
horizon stays 200 whatever the number of epochs (as the official code), so a shorter run ends
at a higher rate. Pure Python: the baselines' environments need not import the training code.
"""

from __future__ import annotations

BASE_LR = 5e-4
WEIGHT_DECAY = 1e-4
LR_HORIZON = 200  # the official schedule decays over 200 epochs whatever the number of epochs
LR_POWER = 0.9


def learning_rate(epoch: int, base: float = BASE_LR) -> float:
    """Poly schedule of the official code: base·(1 − epoch/200)^0.9, 0 from epoch 200 on."""
    return base * max(0.0, 1.0 - epoch / LR_HORIZON) ** LR_POWER
