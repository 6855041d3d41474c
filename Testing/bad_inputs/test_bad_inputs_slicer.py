"""Bad MRML inputs (GitHub issue 7): slicer_io.case_from_nodes on real slicer-core nodes refuses
them naming the node and the problem, and leaves the scene's nodes as they were. Table in
test_bad_inputs_cases.py.

The nodes hold the bundled real case breast1 (HCCAnalysisLib/sample_data/demo-cohort), loaded through MRML's
own storage nodes; each test then spoils one thing.
"""

import numpy as np
import pytest
import SimpleITK as sitk

from helpers import bad_inputs as bad
from helpers.mrml import non_linear_warp_node
from HCCAnalysisLib.errors import HCCInputError

slicer = pytest.importorskip("slicer")
from HCCAnalysisLib.slicer_io import nodes as slicer_io  # noqa: E402
from HCCAnalysisLib.engine.infer import predict_case  # noqa: E402
from HCCAnalysisLib.models.package import load_model  # noqa: E402
from HCCAnalysisLib.slicer_io.files import load_case_into_scene  # noqa: E402


def scene_state(scene):
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


def refused(scene, call, *parts):
    """`call` raises HCCInputError holding every part; the scene's node list is unchanged."""
    before = scene_state(scene)
    with pytest.raises(HCCInputError) as info:
        call()
    assert scene_state(scene) == before, "the scene was changed by a refused call"
    bad.assert_message(info.value, *parts)
    return info.value


@pytest.fixture
def nodes(slicer_app):
    """breast1 as Slicer holds it: an 'image' volume node and a segmentation ('liver', 'lesion 1')."""
    scene = slicer_app.scene
    volumes, segmentation = load_case_into_scene(scene, bad.SMALL_CASE, ["image"])
    segments = segmentation.GetSegmentation()
    ids = {segments.GetSegment(segments.GetNthSegmentID(i)).GetName(): segments.GetNthSegmentID(i)
           for i in range(segments.GetNumberOfSegments())}
    assert sorted(ids) == ["lesion 1", "liver"]
    slicer_io.case_from_nodes(volumes, segmentation)  # control: the unspoilt nodes give a Case
    return {"scene": scene, "image": volumes["image"], "segmentation": segmentation, "ids": ids}


def image_node(scene, name, edit):
    """A scalar volume node holding breast1's image changed by `edit(sitk.Image) -> sitk.Image`."""
    image = sitk.Cast(bad.read_sample(), sitk.sitkFloat32)
    return slicer_io.sitk_to_volume_node(edit(image), scene, name)


def segmentation_from_labels(scene, name, edit, reference):
    """A segmentation node imported from breast1's label map changed by `edit(array) -> array`;
    segments named like load_case_into_scene does (1 = liver, 2 = lesion 1)."""
    labels = bad.read_sample(name="labels.nrrd")
    array = edit(sitk.GetArrayFromImage(labels).copy())
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.CopyInformation(labels)
    labelmap = slicer_io.sitk_to_volume_node(image, scene, f"{name} labels", labelmap=True)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    scene.RemoveNode(labelmap)
    segments = segmentation.GetSegmentation()
    for i in range(segments.GetNumberOfSegments()):
        segment = segments.GetNthSegment(i)
        segment.SetName({1: "liver", 2: "lesion 1"}[segment.GetLabelValue()])
    return segmentation


def segmentation_source(node):
    return f"vtkMRMLSegmentationNode '{node.GetName()}' ({node.GetID()})"


# ---------------------------------------------------------------- phase volume nodes ----------------

def test_label_map_node_as_phase(nodes):
    scene = nodes["scene"]
    labels = slicer_io.sitk_to_volume_node(bad.read_sample(name="labels.nrrd"), scene, "labels", labelmap=True)
    refused(scene, lambda: slicer_io.case_from_nodes({"image": labels}, nodes["segmentation"]),
            f"vtkMRMLLabelMapVolumeNode 'labels' ({labels.GetID()}):",
            "phase 'image' is not a scalar (grey-value) volume node")


def test_segmentation_node_as_phase(nodes):
    seg = nodes["segmentation"]
    refused(nodes["scene"], lambda: slicer_io.case_from_nodes({"image": seg}, seg), segmentation_source(seg),
            "phase 'image' is not a scalar (grey-value) volume node")


def test_nan_voxel_in_a_volume_node(nodes):
    scene = nodes["scene"]

    def with_nan(image):
        array = sitk.GetArrayFromImage(image)
        array[3, 40, 20] = np.nan
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(image)
        return out

    node = image_node(scene, "nan", with_nan)
    refused(scene, lambda: slicer_io.case_from_nodes({"image": node}, nodes["segmentation"]),
            f"vtkMRMLScalarVolumeNode 'nan' ({node.GetID()}):", "has 1 NaN or infinite voxels")


def test_no_phase_given(nodes):
    refused(nodes["scene"], lambda: slicer_io.case_from_nodes({}, nodes["segmentation"]), "volume_nodes:",
            "no phase volume given")


def test_phase_node_that_does_not_overlap(nodes):
    scene = nodes["scene"]

    def far(image):
        image.SetOrigin([o + 500.0 for o in image.GetOrigin()])
        return image

    node = image_node(scene, "far", far)
    refused(scene, lambda: slicer_io.case_from_nodes({"image": node}, nodes["segmentation"]),
            f"vtkMRMLScalarVolumeNode 'far' ({node.GetID()}):", "phase 'image' does not overlap the lesion")


def test_volume_node_without_image_data(nodes):
    scene = nodes["scene"]
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "nodata")
    refused(scene, lambda: slicer_io.case_from_nodes({"image": empty}, nodes["segmentation"]),
            f"vtkMRMLScalarVolumeNode 'nodata' ({empty.GetID()}):", "has no image data")


def test_phase_under_a_non_linear_transform(nodes):
    scene, image = nodes["scene"], nodes["image"]
    warp_node = non_linear_warp_node(scene)
    image.SetAndObserveTransformNodeID(warp_node.GetID())
    refused(scene, lambda: slicer_io.case_from_nodes({"image": image}, nodes["segmentation"]),
            f"vtkMRMLScalarVolumeNode 'image' ({image.GetID()}):", "is under a non-linear transform")


# ---------------------------------------------------------------- segmentation nodes ----------------

def test_unknown_segment_id(nodes):
    seg = nodes["segmentation"]
    refused(nodes["scene"], lambda: slicer_io.case_from_nodes({"image": nodes["image"]}, seg, segment_ids=["nope"]),
            segmentation_source(seg), "has no segment with ID ['nope']", "lesion 1")


def test_liver_segment_chosen_as_lesion(nodes):
    seg = nodes["segmentation"]
    refused(nodes["scene"], lambda: slicer_io.case_from_nodes({"image": nodes["image"]}, seg,
                                                              segment_ids=[nodes["ids"]["liver"]]),
            segmentation_source(seg), "segment(s) ['liver'] are the liver, not lesions")


def test_segmentation_without_reference_geometry(nodes):
    scene = nodes["scene"]
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn nowhere")
    seg.GetSegmentation().AddEmptySegment("lesion", "lesion 1")
    refused(scene, lambda: slicer_io.case_from_nodes({"image": nodes["image"]}, seg), segmentation_source(seg),
            "has no reference geometry, so its label grid is unknown")


def test_empty_lesion_segment(nodes):
    seg = nodes["segmentation"]
    seg.GetSegmentation().AddEmptySegment("empty", "lesion empty")
    refused(nodes["scene"], lambda: slicer_io.case_from_nodes({"image": nodes["image"]}, seg),
            segmentation_source(seg), "lesion 'lesion empty' is empty")


def test_segmentation_not_in_a_scene(nodes):
    seg = slicer.vtkMRMLSegmentationNode()
    refused(nodes["scene"], lambda: slicer_io.case_from_nodes({"image": nodes["image"]}, seg),
            "vtkMRMLSegmentationNode", "not in a scene", "is not in an MRML scene")


def test_only_a_liver_segment(nodes):
    scene = nodes["scene"]
    seg = segmentation_from_labels(scene, "liver only", lambda a: np.where(a == 2, 1, a), nodes["image"])
    refused(scene, lambda: slicer_io.case_from_nodes({"image": nodes["image"]}, seg), segmentation_source(seg),
            "has no lesion segment", "liver")


def test_lesion_segment_of_one_voxel(nodes):
    scene = nodes["scene"]
    seg = segmentation_from_labels(scene, "one voxel", bad.one_voxel_lesion, nodes["image"])
    refused(scene, lambda: slicer_io.case_from_nodes({"image": nodes["image"]}, seg), segmentation_source(seg),
            "lesion 'lesion 1' has only 1 voxel(s)")


# ---------------------------------------------------------------- nodes -> Case -> prediction -------

@pytest.fixture
def model(tmp_path):
    return load_model(bad.build_package(tmp_path / "model"))


def test_no_liver_segment_for_a_task_with_background_rois(nodes, model):
    scene = nodes["scene"]
    seg = segmentation_from_labels(scene, "lesion only", lambda a: np.where(a == 1, 0, a), nodes["image"])
    case = slicer_io.case_from_nodes({"image": nodes["image"]}, seg)
    assert case.liver_mask is None
    refused(scene, lambda: predict_case(model, case), segmentation_source(seg), "has no liver label",
            "background liver ROIs")


def test_constant_volume_node(nodes, model):
    scene = nodes["scene"]
    node = image_node(scene, "constant", lambda image: image * 0 + 100.0)
    case = slicer_io.case_from_nodes({"image": node}, nodes["segmentation"])
    refused(scene, lambda: predict_case(model, case), segmentation_source(nodes["segmentation"]),
            "phase 'image': is constant")
