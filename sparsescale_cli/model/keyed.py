"""Gaussian numbers keyed by (seed, coordinate, position), made on demand.

Column i of the feature matrix F and the teacher weight w*_i must be the same
whichever process generates them and whichever other coordinates are seen, so
they cannot come from a sequential stream. Each coordinate gets its own
SplitMix64 stream, keyed by the seed and the bit pattern of the coordinate
index. Entry j of that stream is a standard normal via the inverse CDF.
Entry (j, i) therefore depends on (seed, i, j) alone: the first N entries of
a column are the same for every N, which makes features nested in N.
"""

from __future__ import annotations

import numpy as np
from scipy import special

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SCALE = 2.0**-53
# Columns generated per block, to bound the temporary uint64 arrays.
_BLOCK_ENTRIES = 2**22


def _mix(z: np.ndarray) -> np.ndarray:
    """Apply the SplitMix64 output function (Steele, Lea and Flood, 2014) elementwise."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def coordinate_keys(seed: int, coords: np.ndarray) -> np.ndarray:
    """Return one 64-bit stream key per coordinate for ``seed``."""
    bits = np.ascontiguousarray(coords, dtype=np.float64).view(np.uint64)
    seed_key = _mix(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) + _GOLDEN)
    return _mix(bits ^ seed_key)


def keyed_normal(seed: int, coords: np.ndarray, n_rows: int) -> np.ndarray:
    """Return standard normals Z[j, k] keyed by (seed, coords[k], j).

    Parameters
    ----------
    seed : int
        Any non-negative integer below 2^64.
    coords : ndarray of float64, shape (K,)
        Coordinate indices.
    n_rows : int
        Number of entries per coordinate.

    Returns
    -------
    ndarray of float64, shape (n_rows, K)
    """
    keys = coordinate_keys(seed, coords)
    out = np.empty((n_rows, keys.size))
    if n_rows == 0 or keys.size == 0:
        return out
    block = max(1, _BLOCK_ENTRIES // n_rows)
    steps = (np.arange(1, n_rows + 1, dtype=np.uint64) * _GOLDEN)[:, None]
    with np.errstate(over="ignore"):
        for low in range(0, keys.size, block):
            high = min(low + block, keys.size)
            bits = _mix(keys[None, low:high] + steps)
            uniform = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * _SCALE
            out[:, low:high] = special.ndtri(uniform)
    return out
