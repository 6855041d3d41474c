"""How a case folder is read: which labels are liver and lesion, which file is the segmentation,
which file is which model phase. One options object shared by every command that reads cases
(`hcc train | evaluate | predict | batch | saliency`), the Slicer panel and the Python API.

Command line               cases.csv column (per case, overrides the command line)
--liver-label 5|liver      liver_label     ("5", "liver", "1,6")
--lesion-label 2 [...]     lesion_label
--segmentation 'PATTERN'   segmentation    (a glob inside the case folder, e.g. '*_seg.nii.gz')
--phase CT=image [...]     phase_map       ("CT=image;PET=pet")
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from HCCAnalysisLib.errors import HCCInputError

# cases.csv columns read by `CaseReading.for_case`.
LIVER_COLUMN, LESION_COLUMN, SEGMENTATION_COLUMN, PHASE_MAP_COLUMN = (
    "liver_label", "lesion_label", "segmentation", "phase_map")
READING_COLUMNS = (LIVER_COLUMN, LESION_COLUMN, SEGMENTATION_COLUMN, PHASE_MAP_COLUMN)


@dataclass(frozen=True)
class CaseReading:
    """Options for reading one case folder. Labels are numbers (label-map values, segment
    numbers) or names (segment names / descriptions, or the label table a NIfTI label map carries,
    as TotalSegmentator writes it); empty means the defaults (1 = liver, 2 = lesion in a label map;
    segments named 'liver' and all others in a .seg.nrrd / DICOM SEG)."""

    liver_labels: tuple[str, ...] = ()
    lesion_labels: tuple[str, ...] = ()
    segmentation: str | None = None
    phase_map: tuple[tuple[str, str], ...] = ()  # (name in the case folder, the model's phase)

    def is_default(self) -> bool:
        return self == CaseReading()

    def phase_for(self, name: str) -> str:
        """The model's phase name for a file or folder name of the case."""
        return dict(self.phase_map).get(name, name)

    def for_case(self, fields: Mapping[str, Any] | None) -> CaseReading:
        """These options with a case's own cases.csv columns (non-empty cells) taking precedence."""
        fields = fields or {}
        changes: dict[str, Any] = {}
        if str(fields.get(LIVER_COLUMN, "")).strip():
            changes["liver_labels"] = parse_labels([str(fields[LIVER_COLUMN])], LIVER_COLUMN)
        if str(fields.get(LESION_COLUMN, "")).strip():
            changes["lesion_labels"] = parse_labels([str(fields[LESION_COLUMN])], LESION_COLUMN)
        if str(fields.get(SEGMENTATION_COLUMN, "")).strip():
            changes["segmentation"] = str(fields[SEGMENTATION_COLUMN]).strip()
        if str(fields.get(PHASE_MAP_COLUMN, "")).strip():
            changes["phase_map"] = parse_phase_map(str(fields[PHASE_MAP_COLUMN]).split(";"), PHASE_MAP_COLUMN)
        return replace(self, **changes) if changes else self


def parse_labels(items: Iterable[str] | None, option: str = "--lesion-label") -> tuple[str, ...]:
    """'2', '2,3' or repeated values -> ('2', '3'); names are kept (matched case-insensitively)."""
    labels: list[str] = []
    for item in items or ():
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            if part.lstrip("-").isdigit() and int(part) <= 0:
                raise HCCInputError(f"{option} {part}: label values start at 1 (0 is the background)")
            if part not in labels:
                labels.append(part)
    return tuple(labels)


def parse_phase_map(items: Iterable[str] | None, option: str = "--phase") -> tuple[tuple[str, str], ...]:
    """['CT=image', 'PET=pet'] -> (('CT', 'image'), ('PET', 'pet')): file name in the case = model phase."""
    pairs: list[tuple[str, str]] = []
    for item in items or ():
        item = str(item).strip()
        if not item:
            continue
        name, sep, phase = item.partition("=")
        name, phase = name.strip(), phase.strip()
        if not sep or not name or not phase:
            raise HCCInputError(f"{option} '{item}' is not NAME=PHASE",
                                hint="e.g. --phase CT=image: the file or folder CT in the case is the phase 'image'")
        if name in dict(pairs):
            raise HCCInputError(f"{option}: '{name}' is mapped twice")
        if phase in [p for _, p in pairs]:
            raise HCCInputError(f"{option}: two names are mapped to the phase '{phase}'")
        pairs.append((name, phase))
    return tuple(pairs)


def add_case_reading_arguments(parser: argparse.ArgumentParser) -> None:
    """The case-reading options, the same on every command that reads case folders."""
    group = parser.add_argument_group("reading cases")
    group.add_argument("--liver-label", action="append", default=None, metavar="N|NAME",
                       help="label value(s) or segment name(s) of the liver, repeatable or comma-separated "
                            "(default 1 in a label map, the segment named 'liver' otherwise); a TotalSegmentator "
                            "map: --liver-label liver (read from its own label table, liver = 5); per case: "
                            "the cases.csv column liver_label")
    group.add_argument("--lesion-label", action="append", default=None, metavar="N|NAME",
                       help="label value(s) or segment name(s) of the lesions, repeatable or comma-separated "
                            "(default 2 in a label map, every segment not named 'liver' otherwise); per case: "
                            "the cases.csv column lesion_label")
    group.add_argument("--segmentation", default=None, metavar="PATTERN",
                       help="glob naming the segmentation file inside each case folder, e.g. '*_seg.nii.gz' or "
                            "'mask.nii.gz' (default: labels.*, segmentation.*, *.seg.nrrd, a DICOM SEG file); "
                            "per case: the cases.csv column segmentation")
    group.add_argument("--phase", action="append", default=None, metavar="NAME=PHASE", dest="phase_map",
                       help="a file or folder NAME of the case read as the model's PHASE, repeatable, e.g. "
                            "--phase CT=image; per case: the cases.csv column phase_map ('CT=image;PET=pet')")


def reading_from_args(args: argparse.Namespace) -> CaseReading:
    """The CaseReading of parsed command-line arguments (defaults where the options are absent)."""
    return CaseReading(parse_labels(getattr(args, "liver_label", None), "--liver-label"),
                       parse_labels(getattr(args, "lesion_label", None), "--lesion-label"),
                       getattr(args, "segmentation", None) or None,
                       parse_phase_map(getattr(args, "phase_map", None)))
