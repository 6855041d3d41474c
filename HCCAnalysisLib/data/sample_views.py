"""Sample sequences that hold no arrays of their own: the training set of a fold as a view over
per-case sequences (`ConcatSamples`) and Jia 2019's x6 views computed on access
(`AugmentedSamples`). Over cached cases (`sample_cache.CachedSamples`) a training set then
reads one sample's arrays when it is asked for, so memory stays flat in the cohort's size;
the samples, and their order, are those the in-memory lists give.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

from HCCAnalysisLib.data.samples import Sample


def sample_targets(samples: Sequence[Sample]) -> list[int]:
    """Every sample's target; read from the metadata of lazy sequences (no array is loaded)."""
    targets = getattr(samples, "targets", None)
    return list(targets) if targets is not None else [s.target for s in samples]


class _View(Sequence):
    def _item(self, index: int) -> Sample:
        raise NotImplementedError

    def __getitem__(self, index: int | slice) -> Sample | list[Sample]:
        if isinstance(index, slice):
            return [self._item(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._item(index)


class ConcatSamples(_View):
    """Several sample sequences, one after another, as one sequence."""

    def __init__(self, parts: Sequence[Sequence[Sample]]) -> None:
        self.parts = [p for p in parts if len(p)]
        self.ends = list(np.cumsum([len(p) for p in self.parts], dtype=np.int64).tolist())

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    @property
    def targets(self) -> list[int]:
        return [t for part in self.parts for t in sample_targets(part)]

    def _item(self, index: int) -> Sample:
        part = bisect.bisect_right(self.ends, index)
        start = self.ends[part - 1] if part else 0
        return self.parts[part][index - start]


class AugmentedSamples(_View):
    """Jia 2019's six flipped / rotated views of every sample (`augment.augment_samples` order:
    sample by sample, view by view), each computed when it is asked for. Views carry no placement."""

    VIEWS = 6

    def __init__(self, base: Sequence[Sample]) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base) * self.VIEWS

    @property
    def targets(self) -> list[int]:
        return [t for t in sample_targets(self.base) for _ in range(self.VIEWS)]

    def _item(self, index: int) -> Sample:
        from HCCAnalysisLib.data.preprocess import augment_x6

        sample = self.base[index // self.VIEWS]
        view = index % self.VIEWS
        inputs = {k: np.ascontiguousarray(augment_x6(v)[view]) for k, v in sample.inputs.items()}
        return Sample(inputs, sample.target, sample.case_id, sample.patient_id, sample.lesion_id,
                      sample.lesion_name, sample.kind, sample.extras)


class _Target:
    __slots__ = ("target",)

    def __init__(self, target: int) -> None:
        self.target = target


def target_only(samples: Sequence[Sample]) -> list:
    """Stand-ins carrying just `.target`, for counting classes without reading a sample's arrays."""
    return [_Target(t) for t in sample_targets(samples)]
