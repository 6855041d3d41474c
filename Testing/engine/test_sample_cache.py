"""The on-disk sample cache (data/sample_cache.py) on the bundled demo cohort: a second evaluation
reads no image and gives the same results; cached samples equal freshly made ones; an edited
case file or another sampling parameter misses; a damaged entry is rebuilt with one log line; a
failed build leaves no entry; two workers building one entry at once build it once."""

import dataclasses
import json
import os
import shutil
import threading
import time

import numpy as np
import torch
import pytest

from HCCAnalysisLib.data.cohort import load_cohort
from HCCAnalysisLib.data.sample_cache import SampleCache
from HCCAnalysisLib.engine.evaluate import load_samples, training_set
from HCCAnalysisLib.tasks import get_task
from HCCAnalysisLib.workflows import evaluate_task

TASK = "jia2019-hcc-vs-background"


@pytest.fixture
def image_reads(monkeypatch):
    """How many image files were read, counted where every reader of the library ends up:
    SimpleITK's file reader (sitk.ReadImage uses it too) and pynrrd (segmentation files)."""
    import SimpleITK as sitk

    count = {"n": 0}

    def counted(owner, name):
        original = getattr(owner, name)

        def counting(*args, **kwargs):
            count["n"] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counting)

    counted(sitk.ImageFileReader, "Execute")
    nrrd = pytest.importorskip("nrrd")
    counted(nrrd, "read")
    return count


@pytest.fixture
def small_cohort(sample_data, tmp_path):
    """The two smallest demo cases (two patients, so two folds), copied so that they can be edited."""
    folder = tmp_path / "cohort"
    folder.mkdir()
    for name in ("lung1", "breast1"):
        shutil.copytree(sample_data / "demo-cohort" / name, folder / name)
    (folder / "cases.csv").write_text("case_id,patient_id\nlung1,p1\nbreast1,p2\n")
    return folder


def _same_samples(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x.target, x.case_id, x.patient_id, x.lesion_id, x.lesion_name, x.kind, x.placement) == \
               (y.target, y.case_id, y.patient_id, y.lesion_id, y.lesion_name, y.kind, y.placement)
        assert x.extras == y.extras and [type(v) for v in x.extras.values()] == [type(v) for v in y.extras.values()]
        assert list(x.inputs) == list(y.inputs)
        for name in x.inputs:
            assert x.inputs[name].dtype == y.inputs[name].dtype
            np.testing.assert_array_equal(x.inputs[name], y.inputs[name])


def _load(task, cohort, cache, log=lambda line: None, seed=0, phases=("image",)):
    return load_samples(task, cohort, list(phases), seed, log, test_side=True, cache=cache)


def test_second_evaluation_reads_no_image_and_gives_the_same_results(small_cohort, tmp_path, image_reads,
                                                                    one_torch_thread):
    def evaluate(out):
        return evaluate_task(TASK, small_cohort, out, folds=2, phases="image", pretrained="none",
                             epochs=1, device="cpu", cache=tmp_path / "cache", log=lambda line: None)

    first = evaluate(tmp_path / "first")
    assert image_reads["n"] >= 4  # 2 cases, image + labels
    image_reads["n"] = 0
    second = evaluate(tmp_path / "second")
    assert image_reads["n"] == 0
    assert (tmp_path / "first" / "predictions.tsv").read_bytes() == (tmp_path / "second" / "predictions.tsv").read_bytes()
    assert first["folds"] == second["folds"] and first["summary"] == second["summary"]
    np.testing.assert_array_equal(np.load(tmp_path / "first" / "embeddings.npz")["embeddings"],
                                  np.load(tmp_path / "second" / "embeddings.npz")["embeddings"])


def test_cached_samples_equal_fresh_ones_and_training_sets_agree(small_cohort, tmp_path, image_reads):
    task, cohort = get_task(TASK), load_cohort(small_cohort)
    fresh_train, fresh_test = _load(task, cohort, None)
    reads = image_reads["n"]
    built_train, built_test = _load(task, cohort, tmp_path / "cache")
    assert image_reads["n"] == 2 * reads  # each case read once for both sides, as without the cache
    reads = image_reads["n"]
    hit_train, hit_test = _load(task, cohort, tmp_path / "cache")
    assert image_reads["n"] == reads
    for case_id in fresh_train:
        for lazy in (built_train, hit_train):
            _same_samples(fresh_train[case_id], lazy[case_id])
        _same_samples(fresh_test[case_id], hit_test[case_id])
        assert hit_train[case_id].targets == [s.target for s in fresh_train[case_id]]
    assert task.augment  # Jia's x6 views, made on access by the lazy training set
    eager = training_set(task, cohort.records, fresh_train)
    lazy = training_set(task, cohort.records, hit_train)
    assert isinstance(eager, list) and not isinstance(lazy, list)
    _same_samples(eager, lazy)
    assert lazy.targets == [s.target for s in eager]
    _same_samples(eager[5:17], lazy[5:17])


def test_edited_case_file_or_other_parameters_miss(small_cohort, tmp_path):
    task, cohort = get_task(TASK), load_cohort(small_cohort)
    cache = SampleCache(tmp_path / "cache", log=lambda line: None)
    _load(task, cohort, cache)
    assert (cache.hits, cache.misses) == (0, 4)
    image = small_cohort / "lung1" / "image.nrrd"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # same bytes, touched
    cache.hits = cache.misses = 0
    _load(task, cohort, cache)
    assert (cache.hits, cache.misses) == (2, 2)  # lung1's two sides only
    cache.hits = cache.misses = 0
    _load(task, cohort, cache, seed=1)
    assert cache.misses == 4
    options = dict(task.sampler_kwargs, slices_per_lesion=task.sampler_kwargs.get("slices_per_lesion", 3) - 1)
    cache.hits = cache.misses = 0
    _load(dataclasses.replace(task, sampler_kwargs=options), cohort, cache)
    assert cache.misses == 4
    cache.hits = cache.misses = 0  # another task with the same preprocessing reuses the entries
    _load(dataclasses.replace(task, name="same-preprocessing", description="other"), cohort, cache)
    assert (cache.hits, cache.misses) == (4, 0)


def test_damaged_entry_is_rebuilt_with_one_log_line(small_cohort, tmp_path):
    task, cohort = get_task(TASK), load_cohort(small_cohort)
    reference, _ = _load(task, cohort, tmp_path / "cache")
    arrays = sorted((tmp_path / "cache" / "samples").rglob("input0.npy"))
    assert len(arrays) == 4
    data = arrays[0].read_bytes()
    arrays[0].write_bytes(data[: len(data) // 2])  # truncated
    lines = []
    again, _ = _load(task, cohort, tmp_path / "cache", log=lines.append)
    damaged = [line for line in lines if "unreadable" in line]
    assert len(damaged) == 1 and "rebuilding" in damaged[0], lines
    for case_id in reference:
        _same_samples(reference[case_id], again[case_id])
    assert arrays[0].stat().st_size == len(data)


def test_failed_build_leaves_no_entry_and_concurrent_builders_build_once(small_cohort, tmp_path):
    task, cohort = get_task(TASK), load_cohort(small_cohort)
    record = cohort.records[0]
    cache = SampleCache(tmp_path / "cache", log=lambda line: None)

    def failing(training):
        raise RuntimeError("killed while sampling")

    with pytest.raises(RuntimeError):
        cache.case_samples(task, record, ["image"], 0, [True], failing)
    assert not [p for p in (tmp_path / "cache" / "samples").rglob("*") if p.is_file()]

    built, results = [], []
    loaded = record.load(["image"], task)

    def slow_build(training):
        from HCCAnalysisLib.engine.infer import make_samples

        built.append(training)
        time.sleep(0.3)  # the other worker arrives while this one builds
        return make_samples(task, loaded, ["image"], training=training, fields=record.fields)

    def worker():  # each its own cache object and lock, as in another process
        mine = SampleCache(tmp_path / "cache", log=lambda line: None)
        results.append(mine.case_samples(task, record, ["image"], 0, [True], slow_build)[0])

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert built == [True] and len(results) == 2
    _same_samples(results[0], results[1])
    assert json.dumps(sorted(p.name for p in (tmp_path / "cache" / "samples").rglob("*.tmp"))) == "[]"


def test_shared_inputs_are_stored_once_and_come_back_shared(tmp_path):
    """Liang's patches of one slice share their global ROI: the cache keeps one copy per ROI on disk and
    hands the patches of one slice the same SharedInput again (so the net's global pathway still runs
    once per ROI)."""
    import pickle

    from HCCAnalysisLib.data.sample_cache import CachedSamples, write_entry
    from HCCAnalysisLib.data.samples import Sample
    from HCCAnalysisLib.engine.shared_inputs import SharedInput, stack_sample_inputs

    rois = [SharedInput(np.full((3, 1, 8, 8), float(k), np.float32), ("case", "lesion", k)) for k in range(2)]
    samples = [Sample({"local": np.full((3, 1, 4, 4), float(i), np.float32), "global_roi": rois[i % 2]}, 1,
                      "case", "p", "lesion", "lesion", "lesion") for i in range(6)]
    folder = tmp_path / "entry"
    folder.mkdir()
    write_entry(folder, samples)
    assert np.load(folder / "input1.npy").shape == (2, 3, 1, 8, 8)  # two ROIs on disk, not six
    cached = CachedSamples(folder)
    back = [cached[i] for i in range(6)]
    assert back[0].inputs["global_roi"] is back[2].inputs["global_roi"]
    assert [s.inputs["global_roi"].key for s in back] == [r.key for r in rois] * 3
    fresh, again = stack_sample_inputs(samples), stack_sample_inputs(back)
    assert fresh.keys() == again.keys() and all(torch.equal(fresh[k], again[k]) for k in fresh)
    assert pickle.loads(pickle.dumps(cached))._shared == {}
