"""On-disk cache of each case's samples, so a cohort is read and resampled once across runs.

An entry holds what a task's sampler made of one case (training side or prediction side) and
is keyed by (a) the identity of every file in the case folder - relative name, size,
`mtime_ns` and inode, found with `stat` alone, so a hit opens no image - (b) everything the
sampler reads: sampler name and options, input size, the net options samplers read (channels,
tile size), classes and label rules, phases, seed, side, the case's ids, table fields and
reading options (labels, segmentation pattern, phase map), and
(c) the code that samples (a hash of the sampler's package and of `data/` and `io/`) with
FORMAT_VERSION. Other tasks with the same preprocessing therefore share entries; an edited
case file, another parameter or other sampling code misses.

Layout: `<root>/samples/<key[:2]>/<key>/` with `meta.pkl` (the samples' ids, targets, extras
and placements, pickled so that every value comes back with its exact type) and one `.npy`
per input name holding that input of every sample, stacked. `CachedSamples` opens the
arrays with `np.load(mmap_mode="r")` on each access and copies out one sample, so a training
run holds no more than its current batches whatever the cohort's size.

Why not joblib.Memory or MONAI's PersistentDataset: both could take this key (as the hashed
argument / item), but neither gives one sample on demand from a case entry. joblib stores a
call's result as one pickle: reading one sample means unpickling the case's whole list, and it
clears a function's whole cache when the function's code changes (under a second process
too). PersistentDataset caches one item per file via `torch.save` and loads it whole, with
one item per case here (a case gives tens to hundreds of samples). The parts that are easy
to get wrong are taken from maintained code: `filelock` for the per-entry lock (two processes
never build the same entry at once; the second waits and reads), `atomic.atomic_folder` for
the write (an entry appears whole or not at all: a killed run leaves no corrupt entry) and
numpy's `.npy` format for the arrays. An entry that cannot be read (damaged, truncated) is
rebuilt with one log line.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import pickle
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from HCCAnalysisLib.data.samples import Sample

if TYPE_CHECKING:
    from HCCAnalysisLib.data.cohort import CaseRecord
    from HCCAnalysisLib.methods.task import Task

FORMAT_VERSION = 2  # 2: shared inputs (Liang's global ROI) stored once per entry, placements with grids
ENV_VAR = "HCC_CACHE_DIR"
META = "meta.pkl"


_LOG = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """$HCC_CACHE_DIR, else ~/.cache/hccanalysis."""
    return Path(os.environ.get(ENV_VAR) or Path.home() / ".cache" / "hccanalysis")


class CacheEntryError(Exception):
    """An entry on disk that cannot be read as written (it is rebuilt)."""


def case_file_identity(folder: str | Path) -> list[list]:
    """[relative name, size, mtime_ns, inode] of every file under a case folder, by `stat` only."""
    folder = Path(folder)
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        info = path.stat()
        found.append([path.relative_to(folder).as_posix(), info.st_size, info.st_mtime_ns, info.st_ino])
    return found


@functools.lru_cache(maxsize=None)
def sampling_code_hash(sampler_name: str) -> str:
    """SHA-256 of the sources a sampler's output depends on: its paper package, data/ and io/."""
    import inspect

    from HCCAnalysisLib.methods import get_sampler

    package = Path(inspect.getsourcefile(get_sampler(sampler_name))).parent
    library = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for folder in (package, library / "data", library / "io"):
        for path in sorted(folder.glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def sampling_key(task: Task, record: CaseRecord, phases: Sequence[str], seed: int, training: bool) -> dict:
    """Everything a case's samples depend on (see the module docstring), as JSON-able data."""
    net_options = {k: task.net_kwargs[k] for k in ("in_channels", "tile_size") if k in task.net_kwargs}
    return {"format": FORMAT_VERSION, "code": sampling_code_hash(task.sampler), "sampler": task.sampler,
            "sampler_kwargs": task.sampler_kwargs, "input_size": task.input_size, "net_options": net_options,
            "loader": task.loader, "classes": list(task.classes), "label_column": task.label_column,
            "kind_classes": task.kind_classes, "clinical_schema": task.clinical_schema,
            "phases": list(phases), "seed": int(seed), "training": bool(training),
            "case_id": record.case_id, "patient_id": record.patient_id, "fields": dict(record.fields),
            "files": case_file_identity(record.folder),
            # labels / segmentation / phase map chosen on the command line change the samples too
            **_reading_key(record)}


def _reading_key(record: CaseRecord) -> dict:
    reading = getattr(record, "reading", None)
    return {} if reading is None or reading.is_default() else {"reading": repr(reading)}


def key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def write_entry(folder: Path, samples: Sequence[Sample]) -> None:
    """Write samples into an empty folder: one stacked .npy per input name, then meta.pkl."""
    names = list(samples[0].inputs)
    if any(list(s.inputs) != names for s in samples):
        raise ValueError("samples of one case have different input names")
    from HCCAnalysisLib.engine.shared_inputs import SharedInput, unique_entries

    inputs = {}
    for k, name in enumerate(names):
        values = [s.inputs[name] for s in samples]
        if all(isinstance(v, SharedInput) for v in values):
            # one array per distinct entry and each sample's position: the sharing survives the cache
            entries, index = unique_entries(values)
            first = {int(i): values[n].key for n, i in reversed(list(enumerate(index)))}
            np.save(folder / f"input{k}.npy", entries)
            inputs[name] = {"file": f"input{k}.npy", "shape": list(entries.shape[1:]), "dtype": entries.dtype.str,
                            "shared": {"index": index.tolist(), "keys": [first[i] for i in range(len(entries))]}}
            continue
        arrays = [np.asarray(v) for v in values]
        if len({(a.shape, a.dtype.str) for a in arrays}) == 1:
            np.save(folder / f"input{k}.npy", np.stack(arrays))
            inputs[name] = {"file": f"input{k}.npy", "shape": list(arrays[0].shape), "dtype": arrays[0].dtype.str}
        else:  # inputs of differing shapes: one file per sample
            (folder / f"input{k}").mkdir()
            for i, array in enumerate(arrays):
                np.save(folder / f"input{k}" / f"{i}.npy", array)
            inputs[name] = {"file": f"input{k}", "shape": None, "dtype": None}
    rows = [(s.target, s.case_id, s.patient_id, s.lesion_id, s.lesion_name, s.kind, s.extras, s.placement)
            for s in samples]
    with open(folder / META, "wb") as handle:
        pickle.dump({"format": FORMAT_VERSION, "n": len(samples), "inputs": inputs, "rows": rows}, handle,
                    protocol=pickle.HIGHEST_PROTOCOL)


class CachedSamples(Sequence):
    """A case entry as a `Sequence[Sample]`: metadata in memory, arrays read from disk (mmap) per access."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:
            with open(self.folder / META, "rb") as handle:
                meta = pickle.load(handle)
            if meta.get("format") != FORMAT_VERSION or len(meta["rows"]) != meta["n"]:
                raise CacheEntryError("other format")
            for spec in meta["inputs"].values():
                if spec["shape"] is None:
                    continue
                array = np.load(self.folder / spec["file"], mmap_mode="r")
                rows = len(spec["shared"]["keys"]) if spec.get("shared") else meta["n"]
                if spec.get("shared") and (len(spec["shared"]["index"]) != meta["n"]
                                           or max(spec["shared"]["index"], default=-1) >= rows):
                    raise CacheEntryError(f"{spec['file']}: shared index does not fit")
                if list(array.shape) != [rows, *spec["shape"]] or array.dtype.str != spec["dtype"]:
                    raise CacheEntryError(f"{spec['file']} holds {array.shape}")
                del array
        except CacheEntryError:
            raise
        except Exception as err:  # noqa: BLE001 (any damage: truncated, unpicklable, missing file)
            raise CacheEntryError(f"{type(err).__name__}: {err}") from None
        self.inputs, self.rows = meta["inputs"], meta["rows"]
        self._shared: dict = {}  # (input name, entry) -> SharedInput: consecutive patches get one object

    def __getstate__(self) -> dict:  # to DataLoader workers: metadata only, no arrays read so far
        return {**self.__dict__, "_shared": {}}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def targets(self) -> list[int]:
        """Every sample's target, without reading an array."""
        return [row[0] for row in self.rows]

    def _array(self, spec: dict, index: int) -> Any:
        shared = spec.get("shared")
        if shared:
            from HCCAnalysisLib.engine.shared_inputs import SharedInput

            entry = shared["index"][index]
            value = self._shared.get((spec["file"], entry))
            if value is None:
                if len(self._shared) > 64:  # a few slices' ROIs at a time, not the whole case
                    self._shared.clear()
                array = np.array(np.load(self.folder / spec["file"], mmap_mode="r")[entry])
                value = self._shared[(spec["file"], entry)] = SharedInput(array, shared["keys"][entry])
            return value
        if spec["shape"] is None:
            return np.load(self.folder / spec["file"] / f"{index}.npy")
        return np.array(np.load(self.folder / spec["file"], mmap_mode="r")[index])  # a copy: the map is let go

    def __getitem__(self, index: int | slice) -> Sample | list[Sample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        target, case_id, patient_id, lesion_id, lesion_name, kind, extras, placement = self.rows[index]
        inputs = {name: self._array(spec, index) for name, spec in self.inputs.items()}
        return Sample(inputs, target, case_id, patient_id, lesion_id, lesion_name, kind, dict(extras), placement)


class SampleCache:
    """The cache under `root`; `case_samples` gives a case's samples, building what is missing."""

    def __init__(self, root: str | Path, log: Callable[[str], Any] = _LOG.info) -> None:
        self.root = Path(root).expanduser()
        self.log = log
        self.hits = self.misses = 0

    def entry_folder(self, digest: str) -> Path:
        return self.root / "samples" / digest[:2] / digest

    def _open(self, folder: Path, locked: bool) -> CachedSamples | None:
        """The entry, or None when absent or unreadable (removed, with one log line, under the lock)."""
        if not (folder / META).is_file():
            return None
        try:
            return CachedSamples(folder)
        except CacheEntryError as err:
            if locked:
                self.log(f"sample cache: entry {folder.name[:12]} is unreadable ({err}); rebuilding it")
                shutil.rmtree(folder, ignore_errors=True)
            return None

    def case_samples(self, task: Task, record: CaseRecord, phases: Sequence[str], seed: int,
                     sides: Sequence[bool], build: Callable[[bool], list[Sample]]) -> list[CachedSamples]:
        """The case's samples for each side (training True / prediction False), from the cache or
        built by `build(training)` (which loads the case at most once across sides) and stored."""
        from filelock import FileLock

        from HCCAnalysisLib.atomic import atomic_folder

        out = []
        for training in sides:
            folder = self.entry_folder(key_digest(sampling_key(task, record, phases, seed, training)))
            entry = self._open(folder, locked=False)
            if entry is None:
                (self.root / "locks").mkdir(parents=True, exist_ok=True)
                with FileLock(str(self.root / "locks" / f"{folder.name}.lock")):
                    entry = self._open(folder, locked=True)  # another process may have built it meanwhile
                    if entry is None:
                        samples = build(training)
                        with atomic_folder(folder, log=self.log) as partial:
                            write_entry(partial, samples)
                        entry = CachedSamples(folder)
                        self.misses += 1
                        out.append(entry)
                        continue
            self.hits += 1
            out.append(entry)
        return out


def resolve_cache(cache: SampleCache | str | Path | bool | None, log: Callable[[str], Any] = _LOG.info
                  ) -> SampleCache | None:
    """None / False: no cache; True: the default folder; a path: that folder."""
    if cache is None or cache is False:
        return None
    if isinstance(cache, SampleCache):
        return cache
    return SampleCache(default_cache_dir() if cache is True else cache, log)
