"""DICOM SEG objects of output volumes, referring to the case's source DICOM series (highdicom).

- `label_map_segmentation`: a BINARY SEG of a label map (Liang 2018's patch votes: value k + 1 =
  class k), one segment per class present, numbered 1..n in class order.
- `saliency_segmentation`: a FRACTIONAL (PROBABILITY) SEG of a saliency volume in [0, 1], one
  segment, quantised to 1/255; every source frame is kept (also all-zero ones), so the SEG has
  the frames and positions of the series, and RLE keeps the mostly-zero frames small.

The volume (on the case's segmentation grid) is put onto the series' grid first
(`dicom_source.on_source_grid`: as is, resampled, or refused).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.io import dicom_codes
from HCCAnalysisLib.io.dicom_source import (MANUFACTURER, SourceSeries, algorithm_parameters, import_highdicom,
                                            on_source_grid, software_version)

SALIENCY_SERIES_NUMBER = 991
LABEL_MAP_SERIES_NUMBER = 992
MAX_FRACTIONAL_VALUE = 255


def _algorithm(hd: Any, card: dict[str, Any]) -> Any:
    return hd.AlgorithmIdentificationSequence(name=MANUFACTURER, family=hd.sr.CodedConcept("123110", "DCM",
                                              "Artificial Intelligence"), version=software_version(),
                                              parameters=algorithm_parameters(card))


def _segmentation(hd: Any, source: SourceSeries, array: np.ndarray, kind: str, descriptions: list, card: dict,
                  label: str, description: str, series_number: int, **options: Any) -> Any:
    """The SEG object: one frame stack per segment on the source frames, in the series' slice order."""
    return hd.seg.Segmentation(
        source_images=source.datasets, pixel_array=array, segmentation_type=kind,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name=str(card.get("task", "HCCAnalysis"))[:64], software_versions=software_version(),
        device_serial_number=str(card.get("weights_sha256", "") or "unknown")[:64], content_label=label,
        content_description=description[:64], series_description=description[:64], **options)


def label_map_segmentation(label_map: sitk.Image, classes: Sequence[str], source: SourceSeries,
                           card: dict[str, Any], title: str = "patch votes") -> Any:
    """A BINARY SEG of `label_map` (0 = nothing, k + 1 = class k): one segment per class present."""
    hd = import_highdicom()
    values = on_source_grid(label_map, source, title, labels=True).astype(np.int64, copy=False)
    present = [k for k in range(len(classes)) if np.any(values == k + 1)]
    if not present:
        raise HCCInputError(f"the {title} label map is empty: no DICOM SEG segment to write", source.folder)
    algorithm = _algorithm(hd, card)
    category = hd.sr.CodedConcept("49755003", "SCT", "Morphologically Abnormal Structure")
    descriptions, stacks = [], []
    for number, k in enumerate(present, start=1):  # SEG segment numbers must run 1..n
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=str(classes[k])[:64], segmented_property_category=category,
            segmented_property_type=dicom_codes.class_code(str(classes[k])), algorithm_type="AUTOMATIC",
            algorithm_identification=algorithm))
        stacks.append(values == k + 1)
    array = np.stack(stacks, axis=-1)  # (frames, rows, columns, segments)
    return _segmentation(hd, source, array, "BINARY", descriptions, card, "PATCHVOTES",
                         f"HCCAnalysis {title} ({card.get('task', '')})", LABEL_MAP_SERIES_NUMBER)


def saliency_segmentation(saliency: sitk.Image, source: SourceSeries, card: dict[str, Any]) -> Any:
    """A FRACTIONAL (PROBABILITY) SEG of a saliency volume with values in [0, 1]."""
    hd = import_highdicom()
    array = on_source_grid(saliency, source, "saliency volume", labels=False).astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1 + 1e-6:
        raise HCCInputError(f"saliency values span [{array.min():g}, {array.max():g}]; a fractional DICOM SEG "
                            "holds values in [0, 1]", source.folder)
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="saliency",
        segmented_property_category=hd.sr.CodedConcept("309825002", "SCT", "Spatial and Relational Concept"),
        segmented_property_type=dicom_codes.private(*dicom_codes.SALIENCY), algorithm_type="AUTOMATIC",
        algorithm_identification=_algorithm(hd, card))
    from pydicom.uid import RLELossless

    return _segmentation(hd, source, np.clip(array, 0.0, 1.0), "FRACTIONAL", [description], card, "SALIENCY",
                         f"HCCAnalysis saliency ({card.get('task', '')})", SALIENCY_SERIES_NUMBER,
                         fractional_type="PROBABILITY", max_fractional_value=MAX_FRACTIONAL_VALUE,
                         omit_empty_frames=False, transfer_syntax_uid=RLELossless)
