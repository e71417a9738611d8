"""What the stand-ins share: a seeded generator per step, batching, CT-like slices."""

from __future__ import annotations

OTHER_UNITS = "other_units"  # the inputs key of a step's inputs from other units: task id -> output

# Side of a stand-in CT slice and attention block, and tokens per drafted block.
SLICE = 64
_BATCH = 256


def rng_for(seed: int, step: str):
    import zlib

    import numpy as np

    return np.random.default_rng([seed, zlib.crc32(step.encode())])


def batches(items: int):
    """Sizes of the batches ``items`` are processed in (vectorised, bounded memory)."""
    for start in range(0, items, _BATCH):
        yield min(_BATCH, items - start)


def digit_slices(rng, count: int):
    """``count`` CT-like 64 x 64 slices: bundled 8 x 8 digit scans, upsampled, with noise."""
    import numpy as np
    from sklearn.datasets import load_digits

    images = load_digits().images  # 1,797 scans shipped with scikit-learn
    picked = images[rng.integers(0, len(images), count)] / 16.0
    slices = np.kron(picked, np.ones((1, SLICE // 8, SLICE // 8)))
    return slices + rng.normal(0.0, 0.05, slices.shape)
