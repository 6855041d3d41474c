"""Builders of bad inputs for the Testing/bad_inputs/test_bad_inputs_*.py catalogue, and the checks they share.

Every builder starts from the bundled real sample data (HCCAnalysisLib/sample_data/) and changes one thing.
The checks say what a refusal must look like: an HCCInputError (or `hcc` exit code 2 with
the message on stderr) whose text names the file / node / phase and the problem, and
nothing written or changed on disk or in the MRML scene.
"""

import hashlib
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from HCCAnalysisLib.errors import HCCInputError

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "HCCAnalysisLib" / "sample_data"
COHORT = SAMPLE / "demo-cohort"
SMALL_CASE = COHORT / "breast1"  # 45 x 102 x 7 MR, the smallest real case
TASK = "jia2019-hcc-vs-background"
DIFF_TASK = "jia2019-differentiation"


# ---------------------------------------------------------------- checks ---------------------------

def assert_message(text, *parts):
    """Every part (a plain string, case-insensitive, or a compiled regex) occurs in `text`."""
    text = str(text)
    for part in parts:
        if isinstance(part, re.Pattern):
            assert part.search(text), f"{part.pattern!r} not in message: {text}"
        else:
            assert str(part).lower() in text.lower(), f"{part!r} not in message: {text}"
    assert "Traceback" not in text, text


def tree_state(*paths):
    """{path: sha256 (file) | 'dir'} for every file and folder under `paths` (absent paths omitted)."""
    state = {}
    for root in map(Path, paths):
        if not root.exists():
            continue
        items = [root] + (sorted(root.rglob("*")) if root.is_dir() else [])
        for item in items:
            if item.is_dir():
                state[str(item)] = "dir"
            else:
                state[str(item)] = hashlib.sha256(item.read_bytes()).hexdigest()
    return state


class Unchanged:
    """`with Unchanged(inputs..., absent=[outputs...]):` inputs byte-identical, outputs never created."""

    def __init__(self, *inputs, absent=()):
        self.inputs, self.absent = inputs, [Path(p) for p in absent]

    def __enter__(self):
        self.before = tree_state(*self.inputs)
        for path in self.absent:
            assert not path.exists(), f"{path} exists before the call"
        return self

    def __exit__(self, *exc):
        assert tree_state(*self.inputs) == self.before, "input files were changed"
        for path in self.absent:
            assert not path.exists(), f"{path} was written although the input was refused"
        leftovers = [p for d in {a.parent for a in self.absent} if d.is_dir()
                     for p in d.iterdir() if p.name.startswith((".weights.", ".card.")) or p.suffix == ".tmp"]
        assert not leftovers, f"temporary files left behind: {leftovers}"
        return False


def run_cli(argv, capsys):
    """`hcc ARGV` in-process: (exit code, stderr)."""
    from HCCAnalysisLib.cli import main

    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


# ---------------------------------------------------------------- images ---------------------------

def read_sample(case="breast1", name="image.nrrd", folder=COHORT):
    return sitk.ReadImage(str(folder / case / name))


def write_like(array, reference, path, pixel=None):
    """Write `array` ((z, y, x) or other shapes) with the geometry of `reference` where it fits."""
    image = sitk.GetImageFromArray(array)
    if image.GetDimension() == reference.GetDimension():
        image.CopyInformation(reference)
    if pixel is not None:
        image = sitk.Cast(image, pixel)
    sitk.WriteImage(image, str(path))
    return path


def copy_case(dst, case="breast1", folder=COHORT, image_name="image.nrrd"):
    """A copy of a real case folder (image + labels) at `dst`, the image saved as `image_name`."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / case / "image.nrrd", dst / image_name)
    shutil.copy(folder / case / "labels.nrrd", dst / "labels.nrrd")
    return dst


def truncated_copy(src, dst, keep=0.5):
    """The first `keep` fraction of the bytes of a real image file (an interrupted download)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep)])
    return Path(dst)


def garbage_header_copy(src, dst):
    """A real file whose first bytes are overwritten with noise (the magic line is gone)."""
    data = bytearray(Path(src).read_bytes())
    data[:64] = bytes(np.random.default_rng(7).integers(0, 256, 64, dtype=np.uint8))
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def header_only_nrrd(path, size=(512, 512, 400), data_file="missing-data.raw"):
    """A detached-header NRRD announcing a big int16 volume; its data file need not exist."""
    path = Path(path)
    path.write_text(
        "NRRD0004\n"
        "type: short\n"
        "dimension: 3\n"
        "space: left-posterior-superior\n"
        f"sizes: {size[0]} {size[1]} {size[2]}\n"
        "space directions: (0.8,0,0) (0,0.8,0) (0,0,1.5)\n"
        "kinds: domain domain domain\n"
        "endian: little\n"
        "encoding: raw\n"
        "space origin: (0,0,0)\n"
        f"data file: {data_file}\n")
    return path


def header_only_mhd(path, size=(512, 512, 400), data_file="missing-data.raw"):
    """The MetaImage twin of header_only_nrrd."""
    path = Path(path)
    path.write_text("ObjectType = Image\nNDims = 3\n"
                    f"DimSize = {size[0]} {size[1]} {size[2]}\n"
                    "ElementType = MET_SHORT\nElementSpacing = 0.8 0.8 1.5\n"
                    f"ElementDataFile = {data_file}\n")
    return path


def four_d_copy(src, dst, frames=3):
    """A real 3D volume repeated as `frames` time points: a 4D (dynamic) series."""
    image = sitk.ReadImage(str(src))
    joined = sitk.JoinSeries([image] * frames)
    sitk.WriteImage(joined, str(dst))
    return Path(dst)


def two_d_copy(src, dst):
    """The middle axial slice of a real volume, saved as a 2D image."""
    image = sitk.ReadImage(str(src))
    sitk.WriteImage(image[:, :, image.GetDepth() // 2], str(dst))
    return Path(dst)


def rgb_copy(src, dst):
    """A real volume as a 3-component vector image (a colour export)."""
    image = sitk.Cast(sitk.ReadImage(str(src)), sitk.sitkFloat32)
    sitk.WriteImage(sitk.Compose(image, image, image), str(dst))
    return Path(dst)


def with_bad_voxels(src, dst, value=np.nan, count=3):
    """A real volume with `count` voxels set to NaN or inf."""
    image = sitk.Cast(sitk.ReadImage(str(src)), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(image)
    array.reshape(-1)[np.linspace(0, array.size - 1, count).astype(int)] = value
    return write_like(array, image, dst)


def constant_copy(src, dst, value=100.0):
    image = sitk.ReadImage(str(src))
    return write_like(np.full(sitk.GetArrayViewFromImage(image).shape, value, np.float32), image, dst)


def shifted_copy(src, dst, shift_mm=500.0):
    """The same real image with its origin moved far away (another frame of reference)."""
    image = sitk.ReadImage(str(src))
    image.SetOrigin([o + shift_mm for o in image.GetOrigin()])
    sitk.WriteImage(image, str(dst))
    return Path(dst)


# ---------------------------------------------------------------- masks ----------------------------

def edit_labels(folder, edit):
    """Rewrite `folder/labels.nrrd` through `edit(array) -> array` (uint8, same geometry)."""
    path = Path(folder) / "labels.nrrd"
    labels = sitk.ReadImage(str(path))
    array = np.array(edit(sitk.GetArrayFromImage(labels).copy()))
    write_like(array, labels, path)
    return path


def one_voxel_lesion(array):
    """Keep the liver, replace the lesion by a single voxel inside the liver."""
    liver = np.argwhere(array == 1)
    array[array == 2] = 1
    z, y, x = liver[len(liver) // 2]
    array[z, y, x] = 2
    return array


# ---------------------------------------------------------------- cohorts --------------------------

def cohort_copy(dst, rows, header="case_id,patient_id,modality", cases=("breast1", "lung1")):
    """A cohort folder with real case folders for `cases` and a cases.csv of the given rows."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for case in cases:
        copy_case(dst / case, case)
    (dst / "cases.csv").write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return dst


# ---------------------------------------------------------------- models ---------------------------

def build_package(directory, task_name=TASK, phases=("image",), seed=0, **card_changes):
    """A model package of a freshly built (untrained) net, written by models.save_model."""
    import torch

    from HCCAnalysisLib.models.package import save_model
    from HCCAnalysisLib.nets import build_net
    from HCCAnalysisLib.tasks import get_task

    task = get_task(task_name)
    torch.manual_seed(seed)
    net = build_net(task.net, num_classes=len(task.classes), **task.net_kwargs)
    card = {"task": task.name, "version": "test", "classes": list(task.classes), "phases": list(phases),
            "net": task.net, "net_kwargs": dict(task.net_kwargs), "input_size": task.input_size, "seed": seed,
            "versions": {"note": "built by the bad-input tests, untrained"}}
    card.update(card_changes)
    save_model(directory, net, card)
    return Path(directory)


def edit_card(directory, edit):
    path = Path(directory) / "model.json"
    card = json.loads(path.read_text())
    edit(card)
    path.write_text(json.dumps(card, indent=2))
    return path


def wrong_shape_weights(directory, task_name=TASK):
    """Replace the weights by a net of other widths (embedding 16, not 32), re-hash the card:
    the hash is right, the shapes are not."""
    from safetensors.torch import save_file

    from HCCAnalysisLib.models.package import sha256_of
    from HCCAnalysisLib.nets import build_net
    from HCCAnalysisLib.tasks import get_task

    task = get_task(task_name)
    kwargs = dict(task.net_kwargs, embedding_dim=16)
    net = build_net(task.net, num_classes=len(task.classes), **kwargs)
    weights = Path(directory) / "model.safetensors"
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(weights))
    edit_card(directory, lambda card: card.update(weights_sha256=sha256_of(weights)))
    return weights


class CreatesMarker:
    """An object whose unpickling would create a marker file: a stand-in for malicious code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def malicious_pickle(path, marker):
    """A `.pkl` that `torch.load(weights_only=False)` would turn into `os.mkdir(marker)`."""
    import torch

    state = {"embedding_net.conv1.weight": torch.zeros(16, 3, 3, 3), "payload": CreatesMarker(marker)}
    torch.save(state, str(path))
    return Path(path)


def plain_pickle(path, obj):
    with open(path, "wb") as handle:
        pickle.dump(obj, handle)
    return Path(path)


def refused(call, *parts, inputs=(), absent=()):
    """Run `call`, expect HCCInputError whose message holds every part, nothing changed."""
    with Unchanged(*inputs, absent=absent):
        with pytest.raises(HCCInputError) as info:
            call()
    assert_message(info.value, *parts)
    return info.value


def cli_refused(argv, capsys, *parts, inputs=(), absent=()):
    """`hcc ARGV` exits 2 with `hcc <command>: error:` and every part on stderr, nothing written."""
    with Unchanged(*inputs, absent=absent):
        code, err = run_cli(argv, capsys)
    assert code == 2, err
    assert_message(err, f"hcc {argv[0]}: error:", *parts)
    return err
