"""Case folders into an MRML scene and scenes onto disk, through MRML's own storage nodes.

Works the same in Slicer and with the slicer-core wheel (no `slicer.util.loadVolume`,
which needs the application). `slicer` is imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from pathlib import Path

from HCCAnalysisLib.data.case import LabelValues, find_case_files, lesions_from_labelmap
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.io.images import read_label_image

if TYPE_CHECKING:
    import slicer


def standalone_scene() -> slicer.vtkMRMLScene:
    """The application's scene inside Slicer; outside, a scene with the colour logic that
    label maps need (what Slicer's application logic sets up at start-up)."""
    import tempfile

    import slicer

    if getattr(slicer, "mrmlScene", None) is not None:
        return slicer.mrmlScene
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    home = Path(tempfile.mkdtemp(prefix="hcc-slicer-home-"))
    (home / "share" / "ColorFiles").mkdir(parents=True)
    app_logic.SetHomeDirectory(str(home))
    app_logic.SetShareDirectory("share")
    colors = slicer.vtkSlicerColorLogic()
    colors.SetMRMLApplicationLogic(app_logic)
    app_logic.SetColorLogic(colors)
    app_logic.SetMRMLScene(scene)
    colors.SetMRMLScene(scene)
    scene._hcc_keepalive = (app_logic, colors)  # the logics must live as long as the scene
    return scene


def load_volume_node(scene: slicer.vtkMRMLScene, path: str | Path, name: str) -> slicer.vtkMRMLScalarVolumeNode:
    """Read an image file into a new scalar volume node through MRML's storage node."""
    if Path(path).is_dir():
        raise HCCInputError("is a DICOM folder: load it in Slicer's DICOM module, or use `hcc batch`", path)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        raise HCCInputError("could not be read as a volume by Slicer", path)
    return node


def load_segmentation_node(scene: slicer.vtkMRMLScene, path: str | Path) -> slicer.vtkMRMLSegmentationNode:
    """A segmentation node from a .seg.nrrd, or from a label map with one segment per lesion.

    Label maps are split exactly as `case.load_case` splits them (connected lesion components,
    largest first, on the label map's own grid), so both routes give the same lesions.
    """
    import slicer

    from HCCAnalysisLib.slicer_io.nodes import sitk_to_volume_node

    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segmentation")
    if str(path).lower().endswith(".seg.nrrd"):
        storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
        storage.SetFileName(str(path))
        node.SetAndObserveStorageNodeID(storage.GetID())
        if not storage.ReadData(node):
            raise HCCInputError("could not be read as a Slicer segmentation", path)
        return node
    label = read_label_image(path)
    lesions, liver = lesions_from_labelmap(label, LabelValues(), path)
    items = [(x.lesion_id, x.name, x.mask) for x in lesions]
    if liver is not None:
        items.insert(0, ("liver", "liver", liver))
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    for segment_id, name, mask in items:
        labelmap = sitk_to_volume_node(mask, scene, name="__hcc_mask__", labelmap=True)
        segment = logic.CreateSegmentFromLabelmapVolumeNode(labelmap, node)
        scene.RemoveNode(labelmap)
        segment.SetName(name)
        node.GetSegmentation().AddSegment(segment, segment_id)
    reference = sitk_to_volume_node(label, scene, name="__hcc_grid__", labelmap=True)
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference)  # the label grid, as in load_case
    scene.RemoveNode(reference)
    return node


def load_case_into_scene(scene: slicer.vtkMRMLScene, case_dir: str | Path, phases: Sequence[str]
                         ) -> tuple[dict[str, slicer.vtkMRMLScalarVolumeNode], slicer.vtkMRMLSegmentationNode]:
    """Volume nodes (phase -> node) and a segmentation node for one case folder."""
    available, segmentation_path = find_case_files(case_dir)
    missing = [p for p in phases if p not in available]
    if missing:
        raise HCCInputError(f"has no phase {missing}", case_dir, f"phases present: {', '.join(available)}")
    volumes = {phase: load_volume_node(scene, available[phase], phase) for phase in phases}
    return volumes, load_segmentation_node(scene, segmentation_path)


def save_scene(scene: slicer.vtkMRMLScene, folder: str | Path, scene_name: str = "scene.mrml") -> Path:
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
