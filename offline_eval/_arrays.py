"""Array aliases and per-row reductions over CSR candidate layouts.

Candidates are stored flat with `offsets` (length n + 1) marking where each decision's candidates
start. Every reduction here is vectorised; when all rows have the same size (the common case of a
fixed candidate count) a reshape replaces `reduceat`, which is several times faster.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]
BoolArray = npt.NDArray[np.bool_]
AnyArray = npt.NDArray[Any]

# Candidates per block when a product of two flat arrays would otherwise be materialised whole.
_BLOCK = 1 << 22


def uniform_size(offsets: IntArray) -> int | None:
    """The common row size when every row has the same number of candidates, else None."""
    n = len(offsets) - 1
    if n <= 0:
        return None
    total = int(offsets[-1] - offsets[0])
    if total % n:
        return None
    size = total // n
    expected = offsets[0] + size * np.arange(n + 1, dtype=np.int64)
    return size if np.array_equal(offsets, expected) else None


def row_sums(values: npt.NDArray[Any], offsets: IntArray, size: int | None) -> FloatArray:
    """Sum of `values` over each row's candidates (rows must be non-empty); `size` is the
    common row size from `uniform_size`, or None for ragged rows."""
    n = len(offsets) - 1
    if size is not None:
        # A matrix-vector product beats sum(axis=1) several times over for short rows.
        matrix = values.reshape(n, size).astype(np.float64, copy=False)
        out: FloatArray = matrix @ np.ones(size)
        return out
    summed: FloatArray = np.add.reduceat(values.astype(np.float64, copy=False), offsets[:-1])
    return summed


def row_any(mask: BoolArray, offsets: IntArray, size: int | None) -> BoolArray:
    """Whether any candidate of each row is flagged (rows must be non-empty)."""
    n = len(offsets) - 1
    if size is not None:
        flagged: BoolArray = np.asarray(mask.reshape(n, size).any(axis=1))
        return flagged
    reduced: BoolArray = np.logical_or.reduceat(mask, offsets[:-1])
    return reduced


def row_dot(a: FloatArray, b: FloatArray, offsets: IntArray, size: int | None) -> FloatArray:
    """Per-row inner product sum_k a_k * b_k, in blocks so no full-size product is allocated."""
    n = len(offsets) - 1
    out = np.empty(n, dtype=np.float64)
    if size is not None:
        rows_per_block = max(1, _BLOCK // max(size, 1))
        a2 = a.reshape(n, size)
        b2 = b.reshape(n, size)
        for start in range(0, n, rows_per_block):
            stop = min(n, start + rows_per_block)
            np.einsum("ij,ij->i", a2[start:stop], b2[start:stop], out=out[start:stop])
        return out
    starts = offsets[:-1]
    for start in range(0, n, max(1, _BLOCK // 16)):
        stop = min(n, start + max(1, _BLOCK // 16))
        lo, hi = int(offsets[start]), int(offsets[stop])
        product = a[lo:hi] * b[lo:hi]
        out[start:stop] = np.add.reduceat(product, starts[start:stop] - lo)
    return out


def row_index(offsets: IntArray) -> IntArray:
    """The row of every candidate (length N); costs 8 bytes per candidate, so use sparingly."""
    sizes = np.diff(offsets)
    rows: IntArray = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    return rows


def count_rows(mask: BoolArray, offsets: IntArray, size: int | None) -> int:
    """How many rows have at least one flagged candidate."""
    if not mask.any():
        return 0
    return int(np.count_nonzero(row_any(mask, offsets, size)))


def readonly(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A read-only view, so a frozen dataset cannot be changed through its arrays."""
    view = array.view()
    view.flags.writeable = False
    return view


def candidate_positions(offsets: IntArray, rows: IntArray) -> tuple[IntArray, IntArray]:
    """Flat positions of the candidates of `rows` (in that order) and the row of each one."""
    sizes = np.diff(offsets)[rows]
    ends = np.cumsum(sizes)
    starts = offsets[:-1][rows]
    flat: IntArray = np.repeat(starts - (ends - sizes), sizes) + np.arange(
        int(ends[-1]) if len(ends) else 0, dtype=np.int64
    )
    owner: IntArray = np.repeat(rows, sizes)
    return flat, owner
