"""Which file of a case folder is the segmentation and which are phases - never a mask as a phase.

The segmentation is, in this order: the one file matching `--segmentation PATTERN`; else the one
file that is one by kind or name (a `.seg.nrrd`, a DICOM SEG file or folder, `labels.*`,
`segmentation.*`, a name with the word mask / seg / label, e.g. `mask.nii.gz`,
`case001_seg.nii.gz`); else the one integer image with few distinct values (a label map saved
under any name). Files that look like masks are never phases unless `--phase` names them; a
folder that cannot be told apart is refused with the list of its files and the option to use.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from HCCAnalysisLib.data.reading_options import CaseReading
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.io.dicom_seg import DICOM_SUFFIXES, is_dicom_seg
from HCCAnalysisLib.io.images import image_suffix

SEGMENTATION_STEMS = ("labels", "segmentation")
MASK_WORDS = re.compile(r"(?:^|[^a-z])(?:mask|masks|seg|segs|segmentation|segmentations|label|labels|labelmap"
                        r"|labelmaps)(?:[^a-z]|$)")
# An integer image with at most this many distinct values, mostly constant between neighbours
# (label maps of real cases: >= 0.8 of the non-background voxel pairs along x are equal; images,
# even an 8-bit-like MR with 121 grey values: <= 0.25), is a label map, not a phase.
LABEL_MAP_MAX_VALUES = 256
LABEL_MAP_MIN_EQUAL_NEIGHBOURS = 0.6
_INTEGER_TYPES = {sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32,
                  sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64}


def _name_of(entry: Path) -> str:
    """The name a file or folder is known by in the case: without its image suffix."""
    suffix = image_suffix(entry)
    if entry.is_file() and not suffix and entry.name.lower().endswith(DICOM_SUFFIXES):
        suffix = "." + entry.name.rsplit(".", 1)[1]
    return entry.name[: -len(suffix)] if suffix else entry.name


def _is_dicom_seg_folder(entry: Path) -> bool:
    files = [f for f in entry.iterdir() if f.is_file() and not f.name.startswith(".")]
    return len(files) == 1 and is_dicom_seg(files[0])


def _segmentation_by_kind_or_name(entry: Path) -> bool:
    if entry.is_dir():
        return _is_dicom_seg_folder(entry)
    suffix = image_suffix(entry)
    if suffix == ".seg.nrrd" or (not suffix and is_dicom_seg(entry)):
        return True
    if not suffix:
        return False
    stem = _name_of(entry).lower()
    return stem in SEGMENTATION_STEMS or bool(MASK_WORDS.search(stem))


def looks_like_label_map(path: Path) -> bool:
    """An integer-typed image with few distinct non-negative values, piecewise constant (reads it)."""
    if path.is_dir() or not image_suffix(path):
        return False
    try:
        info = sitk.ImageFileReader()
        info.SetFileName(str(path))
        info.ReadImageInformation()
        if info.GetPixelID() not in _INTEGER_TYPES or info.GetNumberOfComponents() != 1:
            return False
        array = sitk.GetArrayFromImage(info.Execute())  # a copy: a view of a temporary image dangles
    except RuntimeError:
        return False  # unreadable: reported when it is read as a phase
    if not array.size or array.min() < 0 or len(np.unique(array)) > LABEL_MAP_MAX_VALUES:
        return False
    left, right = array[..., :-1], array[..., 1:]
    pairs = (left != 0) | (right != 0)  # background pairs say nothing: MR has lots of zeros too
    return not pairs.any() or float(np.mean(left[pairs] == right[pairs])) >= LABEL_MAP_MIN_EQUAL_NEIGHBOURS


def _listing(entries) -> str:
    return ", ".join(e.name + ("/" if e.is_dir() else "") for e in entries) or "nothing"


def find_case_files(folder: str | Path, reading: CaseReading = CaseReading()) -> tuple[dict[str, Path], Path]:
    """Map phase name (after `reading.phase_map`) -> file or DICOM folder, and the segmentation."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HCCInputError("case folder does not exist", folder)
    entries = [e for e in sorted(folder.iterdir()) if not e.name.startswith(".")]
    images = [e for e in entries if e.is_dir() or image_suffix(e) or e.name.lower().endswith(DICOM_SUFFIXES)]
    mapped = dict(reading.phase_map)
    if reading.segmentation:
        chosen = [e for e in entries if fnmatch.fnmatchcase(e.name, reading.segmentation)
                  or fnmatch.fnmatchcase(e.name.lower(), reading.segmentation.lower())]
        if len(chosen) != 1:
            raise HCCInputError(f"has {len(chosen)} files matching --segmentation '{reading.segmentation}' "
                                f"({_listing(chosen)}); exactly one is needed", folder,
                                f"files in the folder: {_listing(entries)}")
        segmentation = chosen[0]
    else:
        named = [e for e in images if _name_of(e) not in mapped and _segmentation_by_kind_or_name(e)]
        if len(named) > 1:
            raise HCCInputError(f"has several segmentations: {[e.name for e in named]}", folder,
                                "keep exactly one, or name it with --segmentation PATTERN "
                                "(or the cases.csv column segmentation)")
        if not named:
            named = [e for e in images if _name_of(e) not in mapped and looks_like_label_map(e)]
            if len(named) != 1 or len(images) < 2:
                found = (f"{len(named)} files look like label maps ({_listing(named)})" if named
                         else "no file is named or shaped like one")
                raise HCCInputError(f"has no segmentation that can be told apart from the phases: {found}", folder,
                                    f"files: {_listing(entries)}; name the segmentation with --segmentation "
                                    "PATTERN (e.g. --segmentation 'mask.nii.gz'), or use labels.nrrd, "
                                    "labels.nii.gz or a .seg.nrrd")
        segmentation = named[0]
    phases: dict[str, Path] = {}
    for entry in images:
        name = _name_of(entry)
        if entry == segmentation or (name not in mapped and _segmentation_by_kind_or_name(entry)):
            continue  # never a mask as a phase; --phase NAME=... still makes one a phase
        if entry.is_file() and not image_suffix(entry):
            continue  # a stray .dcm file: phases that are DICOM are series folders
        phase = mapped.get(name, name)
        if phase in phases:
            raise HCCInputError(f"has two files for the phase '{phase}': {phases[phase].name} and {entry.name}",
                                folder, "map only one of them with --phase NAME=PHASE")
        phases[phase] = entry
    return phases, segmentation


def describe_missing_phases(missing: Sequence[str], available: dict[str, Path], reading: CaseReading) -> str:
    """A hint for phases the model needs that a case folder lacks."""
    present = ", ".join(f"{p} ({f.name})" if f.name != p else p for p, f in available.items()) or "none"
    hint = f"phases present: {present}"
    if len(missing) == 1 and len(available) == 1 and not reading.phase_map:
        hint += f"; to read {next(iter(available))} as '{missing[0]}': --phase {next(iter(available))}={missing[0]}"
    return hint
