"""MRML nodes -> Case, Prediction -> table node: the library's only door into a Slicer scene.

Uses only MRML and module-logic classes that exist both in the Slicer application and in
the slicer-core wheel (never `slicer.modules`, `slicer.app` or `slicer.util`), so the same
code runs in the module panel, in Slicer's Python console and in the tests. `slicer` and
`vtk` are imported inside the functions.

Typical use (in Slicer or with slicer-core)::

    case = case_from_nodes({"arterial": art_node, "portal": pv_node}, segmentation_node)
    prediction = infer.predict_case(model, case)
    table_node = prediction_to_table(prediction, scene)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from HCCAnalysisLib.data.case import LIVER_SEGMENT_NAMES, Case, LabelValues, Lesion, check_overlap, validate_lesions
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.slicer_io.geometry import (is_a, labelmap_to_volume_node, node_source, parent_to_world, sitk_to_volume_node,
                                 volume_node_to_sitk)
from HCCAnalysisLib.slicer_io.table import prediction_to_table

if TYPE_CHECKING:
    import slicer

__all__ = ["case_from_nodes", "prediction_to_table", "labelmap_to_volume_node", "sitk_to_volume_node",
           "volume_node_to_sitk", "segment_masks"]

REFERENCE_GEOMETRY = "Reference image geometry"


def _phase_images(volume_nodes):
    """Each phase node as a float32 image with finite voxels, before anything else is touched."""
    if not isinstance(volume_nodes, dict) or not volume_nodes:
        raise HCCInputError("no phase volume given", "volume_nodes",
                            "pass a dict such as {'arterial': arterial_volume_node}")
    images = {}
    for phase, node in volume_nodes.items():
        if not isinstance(phase, str) or not phase.strip():
            raise HCCInputError(f"phase name {phase!r} is not a non-empty string", "volume_nodes")
        if not is_a(node, "vtkMRMLScalarVolumeNode") or is_a(node, "vtkMRMLLabelMapVolumeNode"):
            raise HCCInputError(f"phase '{phase}' is not a scalar (grey-value) volume node", node_source(node),
                                "pick the image volume, not a label map or segmentation")
        image = volume_node_to_sitk(node, np.float32)
        bad = int(np.count_nonzero(~np.isfinite(sitk.GetArrayViewFromImage(image))))
        if bad:
            raise HCCInputError(f"has {bad} NaN or infinite voxels", node_source(node))
        images[phase] = image
    return images


def _has_reference_geometry(segmentation):
    # GetConversionParameter logs an error for a missing parameter: read the serialized list instead.
    for item in segmentation.SerializeAllConversionParameters().split("&"):
        name, _, rest = item.partition("|")
        if name == REFERENCE_GEOMETRY and rest.partition("|")[0].strip():
            return True
    return False


def _check_segmentation(segmentation_node, reference_volume):
    if not is_a(segmentation_node, "vtkMRMLSegmentationNode"):
        raise HCCInputError("is not a segmentation node", node_source(segmentation_node))
    scene = segmentation_node.GetScene()
    if scene is None:
        raise HCCInputError("is not in an MRML scene", node_source(segmentation_node))
    if reference_volume is not None:
        if not is_a(reference_volume, "vtkMRMLVolumeNode") or reference_volume.GetImageData() is None:
            raise HCCInputError("reference volume is not a volume node with image data", node_source(reference_volume))
        if reference_volume.GetScene() is not scene:
            raise HCCInputError("reference volume is not in the segmentation's scene", node_source(reference_volume))
    else:
        if not _has_reference_geometry(segmentation_node.GetSegmentation()):
            raise HCCInputError("has no reference geometry, so its label grid is unknown",
                                node_source(segmentation_node),
                                "select a source volume for it in the Segment Editor, or pass reference_volume")
        parent_to_world(segmentation_node)  # refuses a non-linear transform, naming the segmentation
    return scene


def segment_masks(segmentation_node: slicer.vtkMRMLSegmentationNode, segment_ids: Sequence[str],
                  reference_volume: slicer.vtkMRMLVolumeNode | None = None) -> dict[str, sitk.Image]:
    """Each segment as a uint8 0/1 SimpleITK mask on one grid (the segmentation's or the reference's).

    Exported one segment at a time with ExportSegmentsToLabelmapNode, because segments may
    overlap (a liver segment usually contains the tumour). The export needs a label map node
    in the scene: every node it adds is removed again, so the scene ends as it started.
    """
    import slicer

    scene = _check_segmentation(segmentation_node, reference_volume)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    masks = {}
    for segment_id in segment_ids:
        before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
        try:
            labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__hcc_export__")
            ok = logic.ExportSegmentsToLabelmapNode(segmentation_node, [segment_id], labelmap, reference_volume,
                                                    slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
            if not ok or labelmap.GetImageData() is None:
                raise HCCInputError(f"segment '{segment_id}' could not be exported to a label map",
                                    node_source(segmentation_node),
                                    "check that the segmentation has a binary labelmap representation")
            image = volume_node_to_sitk(labelmap)
        finally:
            added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
            for node in reversed([n for n in added if n.GetID() not in before]):
                scene.RemoveNode(node)
        masks[segment_id] = sitk.Cast(image != 0, sitk.sitkUInt8)
    return masks


def _select_segments(segmentation_node, segment_ids, liver_names):
    """(lesion segment IDs, liver segment IDs, name by ID), refusing unknown or misused IDs."""
    segmentation = segmentation_node.GetSegmentation()
    all_ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    names = {sid: segmentation.GetSegment(sid).GetName() for sid in all_ids}
    liver_ids = [sid for sid in all_ids if names[sid].strip().lower() in liver_names]
    if segment_ids is None:
        lesion_ids = [sid for sid in all_ids if sid not in liver_ids]
    else:
        lesion_ids = [segment_ids] if isinstance(segment_ids, str) else list(segment_ids)
        unknown = [sid for sid in lesion_ids if sid not in names]
        if unknown:
            raise HCCInputError(f"has no segment with ID {unknown}", node_source(segmentation_node),
                                f"segments: {', '.join(f'{sid} ({names[sid]})' for sid in all_ids) or 'none'}")
        misused = [names[sid] for sid in lesion_ids if sid in liver_ids]
        if misused:
            raise HCCInputError(f"segment(s) {misused} are the liver, not lesions", node_source(segmentation_node))
    if not lesion_ids:
        raise HCCInputError("has no lesion segment", node_source(segmentation_node),
                            f"segments: {', '.join(names.values()) or 'none'}")
    if len(set(lesion_ids)) != len(lesion_ids):
        raise HCCInputError("the same segment is selected twice", node_source(segmentation_node))
    return lesion_ids, liver_ids, names


def case_from_nodes(volume_nodes: Mapping[str, slicer.vtkMRMLScalarVolumeNode],
                    segmentation_node: slicer.vtkMRMLSegmentationNode, segment_ids: Sequence[str] | None = None,
                    case_id: str = "case", patient_id: str | None = None, fields: dict[str, Any] | None = None,
                    liver_segment_names: Sequence[str] = LIVER_SEGMENT_NAMES,
                    reference_volume: slicer.vtkMRMLVolumeNode | None = None) -> Case:
    """A Case from phase volume nodes and a segmentation node: the MRML twin of `case.load_case`.

    Each selected segment (default: every segment not named like the liver) is one lesion,
    with lesion_id = segment ID and name = segment name. Segments named in
    `liver_segment_names` (case-insensitive) give the liver mask, which includes the lesions
    (as a label map's liver does). The label grid is the segmentation's reference geometry, or
    that of `reference_volume` when given. Case.segmentation is a uint16 label map on that grid
    (1 = liver, 2 = lesion), like a `labels.nrrd`. The scene is left unchanged.
    """
    images = _phase_images(volume_nodes)
    _check_segmentation(segmentation_node, reference_volume)
    if isinstance(liver_segment_names, str):
        liver_segment_names = (liver_segment_names,)
    liver_names = {str(n).strip().lower() for n in liver_segment_names or ()}
    lesion_ids, liver_ids, names = _select_segments(segmentation_node, segment_ids, liver_names)
    source = node_source(segmentation_node)
    masks = segment_masks(segmentation_node, lesion_ids + liver_ids, reference_volume)
    lesions = [Lesion(sid, names[sid], masks[sid]) for sid in lesion_ids]
    validate_lesions(lesions, masks[lesion_ids[0]], source)
    for phase, image in images.items():
        for lesion in lesions:
            check_overlap(image, lesion.mask, phase, node_source(volume_nodes[phase]))

    lesion_any = np.zeros(sitk.GetArrayViewFromImage(lesions[0].mask).shape, dtype=bool)
    for lesion in lesions:
        lesion_any |= sitk.GetArrayViewFromImage(lesion.mask) > 0
    liver_mask, liver_any = None, np.zeros_like(lesion_any)
    if liver_ids:
        for sid in liver_ids:
            liver_any |= sitk.GetArrayViewFromImage(masks[sid]) > 0
        if not liver_any.any():
            raise HCCInputError(f"liver segment '{names[liver_ids[0]]}' is empty", source,
                                "remove or rename the empty segment")
        liver_mask = _mask_like(liver_any | lesion_any, lesions[0].mask, np.uint8)
    values = LabelValues()
    label = np.zeros(lesion_any.shape, dtype=np.uint16)
    label[liver_any] = values.liver
    label[lesion_any] = values.lesion
    segmentation = _mask_like(label, lesions[0].mask, np.uint16)
    fields = dict(fields or {})
    patient_id = patient_id or case_id
    return Case(case_id, patient_id, images, segmentation, lesions, liver_mask,
                labels=fields, clinical=dict(fields), source=source)


def _mask_like(array, reference, dtype):
    image = sitk.GetImageFromArray(array.astype(dtype))
    image.CopyInformation(reference)
    return image
