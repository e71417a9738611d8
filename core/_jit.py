"""Numba settings in one place: every compiled kernel uses ``jit`` or ``jit_parallel``."""

import os

# OpenMP's spinning workers stall prange on small machines; workqueue does not.
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
# Intel's SVML (where icc_rt is installed) would vectorise exp and log with its own last bits;
# the C library's, one value at a time, give the same plan on every machine.
os.environ.setdefault("NUMBA_DISABLE_INTEL_SVML", "1")

import numba  # noqa: E402

numba.config.THREADING_LAYER = os.environ["NUMBA_THREADING_LAYER"]

# fastmath stays off: plans must be reproducible bit for bit and match the Python reference.
_FLAGS = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")

jit = numba.njit(**_FLAGS)
jit_inline = numba.njit(inline="always", **_FLAGS)
jit_parallel = numba.njit(parallel=True, **_FLAGS)
prange = numba.prange
