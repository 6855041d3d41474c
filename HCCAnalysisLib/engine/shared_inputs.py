"""Inputs that many samples share, stored once and batched once.

Liang 2018's patches of one lesion slice all see the same 128 x 128 global ROI. A sample
holds a `SharedInput` for it (one array object for all the slice's patches, plus a key
naming it), never its own copy; `stack_sample_inputs` batches the distinct entries once
(U x ...) under the input's name and adds `<name>_index` (B, int64): the entry of each
sample. The net computes its pathway once per entry and gathers (`nets/resgl_lstm.py`).

The key identifies the entry across processes and pickling (a DataLoader worker, a disk
cache): equal keys must mean equal arrays, which the batching checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Hashable, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    from HCCAnalysisLib.data.samples import Sample

INDEX_SUFFIX = "_index"


class SharedInput:
    """One array shared by many samples; array-like, so code that stacks it as a plain array still works."""

    __slots__ = ("array", "key")

    def __init__(self, array: np.ndarray, key: Hashable) -> None:
        self.array = array
        self.key = key

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self.array, dtype=dtype)

    def __repr__(self) -> str:
        return f"SharedInput(key={self.key!r}, shape={self.shape})"


def unique_entries(values: Sequence[SharedInput]) -> tuple[np.ndarray, np.ndarray]:
    """(U x ... distinct arrays in order of first appearance, B positions of each value among them)."""
    position: dict[Hashable, int] = {}
    arrays: list[np.ndarray] = []
    index = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        at = position.get(value.key)
        if at is None:
            at = position[value.key] = len(arrays)
            arrays.append(value.array)
        elif arrays[at] is not value.array and not np.array_equal(arrays[at], value.array):
            raise ValueError(f"two different arrays share the key {value.key!r}")
        index[i] = at
    return np.stack(arrays), index


def stack_sample_inputs(samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
    """Samples -> batched CPU tensors per input name; a shared input gives its distinct entries + an index."""
    out = {}
    for name in samples[0].inputs.keys():
        values = [s.inputs[name] for s in samples]
        if isinstance(values[0], SharedInput):
            entries, index = unique_entries(values)
            out[name], out[name + INDEX_SUFFIX] = torch.from_numpy(entries), torch.from_numpy(index)
        else:
            out[name] = torch.from_numpy(np.stack(values))
    return out
