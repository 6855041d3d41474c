"""Case folders into an MRML scene and scenes onto disk, through MRML's own storage nodes.

Works the same in Slicer and with the slicer-core wheel (no `slicer.util.loadVolume`,
which needs the application). `slicer` is imported inside the functions.
"""

from pathlib import Path

from .case import find_case_files
from .errors import HCCInputError


def load_volume_node(scene, path, name, labelmap=False):
    """Read an image file into a new scalar (or label map) volume node."""
    import slicer

    node = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise HCCInputError("could not be read through MRML", path)
    node.SetName(name)
    scene.AddNode(storage)
    node.SetAndObserveStorageNodeID(storage.GetID())
    scene.AddNode(node)
    return node


def load_case_into_scene(scene, case_dir, phases, lesion_label=2, liver_label=1):
    """Phase volume nodes + a segmentation node (segments 'liver' and 'lesion N') from a case folder."""
    import slicer

    available, seg_path = find_case_files(case_dir)
    missing = [p for p in phases if p not in available or Path(available[p]).is_dir()]
    if missing:
        raise HCCInputError(f"has no phase file {missing} (DICOM folders: import them with the DICOM module)",
                            case_dir)
    volumes = {p: load_volume_node(scene, available[p], p) for p in phases}
    labelmap = load_volume_node(scene, seg_path, "labels", labelmap=True)
    segmentation = slicer.vtkMRMLSegmentationNode()
    segmentation.SetName(f"{Path(case_dir).name} segmentation")
    scene.AddNode(segmentation)
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volumes[phases[0]])
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    if not logic.ImportLabelmapToSegmentationNode(labelmap, segmentation):
        raise HCCInputError("label map could not be imported into a segmentation", seg_path)
    scene.RemoveNode(labelmap)
    seg = segmentation.GetSegmentation()
    lesion_number = 0
    for index in range(seg.GetNumberOfSegments()):
        segment = seg.GetNthSegment(index)
        value = segment.GetLabelValue()
        if value == liver_label:
            segment.SetName("liver")
        elif value == lesion_label:
            lesion_number += 1
            segment.SetName(f"lesion {lesion_number}")
    return volumes, segmentation


def save_scene(scene, folder, scene_name="scene.mrml"):
    """Write every storable node's data into `folder`, then the scene file that refers to them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLStorableNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLStorableNode")
        if node.GetHideFromEditors():
            continue
        storage = node.GetStorageNode()
        if storage is None:
            node.AddDefaultStorageNode()
            storage = node.GetStorageNode()
        if storage is None:
            continue
        extension = storage.GetDefaultWriteFileExtension()
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in node.GetName())
        storage.SetFileName(str(folder / f"{safe}.{extension}"))
        if not storage.WriteData(node):
            raise HCCInputError(f"node '{node.GetName()}' could not be written", folder)
    scene.SetRootDirectory(str(folder))
    scene.SetURL(str(folder / scene_name))
    if not scene.Commit(str(folder / scene_name)):
        raise HCCInputError("scene could not be written", folder / scene_name)
    return folder / scene_name
