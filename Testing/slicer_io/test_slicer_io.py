"""slicer_io on real MRML nodes from the slicer-core wheel and real CT data (pyradiomics' lung1).

The oracles are independent of slicer_io: SimpleITK reads the same files (`case.load_case`),
the Python csv module reads the TSV and schema Slicer writes, and a reloaded scene.
"""

import csv
import math
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.mrml import non_linear_warp_node
from HCCAnalysisLib.data.case import load_case
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.data.prediction import Prediction, PredictionRow

slicer = pytest.importorskip("slicer")
import vtk  # noqa: E402  (comes with slicer-core)
from HCCAnalysisLib.slicer_io import nodes as slicer_io  # noqa: E402

def assert_same_geometry(a, b, tol=1e-6):  # mm, and direction cosines
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=tol)


def assert_same_image(a, b):
    assert_same_geometry(a, b)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))


def node_ids(scene):
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def read_volume(scene, path, labelmap=False, name=None):
    """Load a file the way Slicer does: a volume node observing an archetype storage node."""
    cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(cls, name or path.name.split(".")[0])
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    assert storage.ReadData(node), path
    return node


def oblique_grid_around(image, centre_lps, size=(96, 88, 30), spacing=(0.9, 0.8, 2.5)):
    """An oblique (rotated about z and x), anisotropic grid centred on a physical point."""
    rz, rx = math.radians(12), math.radians(7)
    rot_z = np.array([[math.cos(rz), -math.sin(rz), 0], [math.sin(rz), math.cos(rz), 0], [0, 0, 1]])
    rot_x = np.array([[1, 0, 0], [0, math.cos(rx), -math.sin(rx)], [0, math.sin(rx), math.cos(rx)]])
    direction = rot_z @ rot_x
    half = direction @ (np.array(size) * np.array(spacing) / 2.0)
    grid = sitk.Image(list(size), sitk.sitkFloat32)
    grid.SetSpacing(spacing)
    grid.SetDirection(direction.flatten().tolist())
    grid.SetOrigin((np.asarray(centre_lps) - half).tolist())
    return sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32)


@pytest.fixture(scope="module")
def case_folder(shared_data, tmp_path_factory):
    """A case folder built from real CT: lung1 as 'arterial', an oblique resampled 'portal'
    phase, and labels.nrrd (2 = the real tumour, 1 = a shell around it standing in for liver)."""
    folder = tmp_path_factory.mktemp("lung1_case")
    image = sitk.ReadImage(str(shared_data / "lesions" / "lung1_image.nrrd"))
    sitk.WriteImage(image, str(folder / "arterial.nrrd"))
    tumour = sitk.ReadImage(str(shared_data / "lesions" / "lung1_label.nrrd")) > 0
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(tumour)
    portal = oblique_grid_around(sitk.Cast(image, sitk.sitkFloat32), stats.GetCentroid(1))
    sitk.WriteImage(portal, str(folder / "portal.nrrd"))
    shell = sitk.BinaryDilate(tumour, [15, 15, 2])
    labels = sitk.Cast(shell, sitk.sitkUInt16) + sitk.Cast(tumour, sitk.sitkUInt16)  # 1 shell, 2 tumour
    sitk.WriteImage(labels, str(folder / "labels.nrrd"), True)
    return folder


@pytest.fixture
def lung_nodes(slicer_app, case_folder):
    """The case folder loaded into MRML as Slicer would: volumes + a segmentation from labels.nrrd."""
    scene = slicer_app.scene
    arterial = read_volume(scene, case_folder / "arterial.nrrd")
    portal = read_volume(scene, case_folder / "portal.nrrd")
    labels = read_volume(scene, case_folder / "labels.nrrd", labelmap=True)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "lung1 segmentation")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(labels)  # as the Segment Editor does
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labels, segmentation)
    segments = segmentation.GetSegmentation()
    by_value = {segments.GetNthSegment(i).GetLabelValue(): segments.GetNthSegmentID(i)
                for i in range(segments.GetNumberOfSegments())}
    assert sorted(by_value) == [1, 2]
    segments.GetSegment(by_value[1]).SetName("Liver")
    segments.GetSegment(by_value[2]).SetName("lesion 1")
    return {"arterial": arterial, "portal": portal, "labels": labels, "segmentation": segmentation,
            "liver_id": by_value[1], "lesion_id": by_value[2], "scene": scene}


def test_import_does_not_load_slicer():
    code = ("import sys, HCCAnalysisLib.slicer_io.nodes; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('slicer', 'vtk', 'vtkmodules')]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_case_from_nodes_matches_load_case(lung_nodes, case_folder):
    scene = lung_nodes["scene"]
    before = node_ids(scene)
    fields = {"grade": "2", "age": "61"}
    case = slicer_io.case_from_nodes({"arterial": lung_nodes["arterial"], "portal": lung_nodes["portal"]},
                                     lung_nodes["segmentation"], case_id="lung1", patient_id="p1", fields=fields)
    expected = load_case(case_folder, case_id="lung1", patient_id="p1", fields=fields)
    assert node_ids(scene) == before, "building a Case must leave the scene unchanged"

    assert (case.case_id, case.patient_id, case.labels, case.clinical) == ("lung1", "p1", fields, fields)
    assert sorted(case.images) == sorted(expected.images) == ["arterial", "portal"]
    for phase in case.images:
        assert case.images[phase].GetPixelID() == sitk.sitkFloat32
        assert_same_image(case.images[phase], expected.images[phase])
    assert_same_image(case.segmentation, expected.segmentation)
    assert_same_image(case.liver_mask, expected.liver_mask)
    assert len(case.lesions) == len(expected.lesions) == 1
    lesion = case.lesions[0]
    assert (lesion.lesion_id, lesion.name) == (lung_nodes["lesion_id"], "lesion 1")
    assert_same_image(lesion.mask, expected.lesions[0].mask)
    assert int(sitk.GetArrayViewFromImage(lesion.mask).sum()) == 837  # the real tumour's voxel count
    seg_node, grid_node = lung_nodes["segmentation"], lung_nodes["labels"]
    oracle = slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, lesion.lesion_id, grid_node)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(lesion.mask), oracle)  # Slicer's own accessor
    # The oblique phase reaches the label grid through physical space identically.
    np.testing.assert_array_equal(case.phase_on_grid("portal"), expected.phase_on_grid("portal"))


def test_case_from_nodes_matches_seg_nrrd(lung_nodes, case_folder, tmp_path):
    """Saved as .seg.nrrd by Slicer and read by load_case (slicerio), segment IDs and names agree."""
    (tmp_path / "arterial.nrrd").symlink_to(case_folder / "arterial.nrrd")
    storage = lung_nodes["scene"].AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(tmp_path / "lesions.seg.nrrd"))
    assert storage.WriteData(lung_nodes["segmentation"])
    case = slicer_io.case_from_nodes({"arterial": lung_nodes["arterial"]}, lung_nodes["segmentation"])
    expected = load_case(tmp_path)
    assert [(l.lesion_id, l.name) for l in case.lesions] == [(lung_nodes["lesion_id"], "lesion 1")]
    assert [(l.lesion_id, l.name) for l in expected.lesions] == [(lung_nodes["lesion_id"], "lesion 1")]
    assert_same_image(case.lesions[0].mask, expected.lesions[0].mask)


def test_case_on_a_reference_volume(lung_nodes, case_folder):
    """Exported onto an oblique, anisotropic reference volume the tumour keeps its place and size."""
    portal = lung_nodes["portal"]
    case = slicer_io.case_from_nodes({"portal": portal}, lung_nodes["segmentation"],
                                     segment_ids=[lung_nodes["lesion_id"]], reference_volume=portal)
    portal_image = sitk.ReadImage(str(case_folder / "portal.nrrd"))
    assert_same_geometry(case.segmentation, portal_image)
    tumour = sitk.ReadImage(str(case_folder / "labels.nrrd")) == 2
    oracle = sitk.Resample(tumour, portal_image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    ours, theirs = (sitk.GetArrayViewFromImage(i) > 0 for i in (case.lesions[0].mask, oracle))
    dice = 2 * np.count_nonzero(ours & theirs) / (np.count_nonzero(ours) + np.count_nonzero(theirs))
    assert dice > 0.9


@pytest.mark.parametrize("name", ["portal.nrrd", "brain1"])
def test_volume_geometry_round_trip(slicer_app, case_folder, shared_data, tmp_path, name):
    """Oblique + anisotropic (portal) and left-handed (brain1) real volumes survive
    file -> MRML -> SimpleITK -> MRML -> file, compared in physical space."""
    path = case_folder / name if name.endswith(".nrrd") else shared_data / "lesions" / f"{name}_image.nrrd"
    scene = slicer_app.scene
    oracle = sitk.ReadImage(str(path))
    node = read_volume(scene, path)
    image = slicer_io.volume_node_to_sitk(node)
    # Slicer may flip the K axis of a left-handed file on read: compare on the oracle's grid.
    on_oracle_grid = sitk.Resample(image, oracle, sitk.Transform(), sitk.sitkNearestNeighbor, -9999.0,
                                   image.GetPixelID())
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(on_oracle_grid), sitk.GetArrayViewFromImage(oracle))

    back = slicer_io.sitk_to_volume_node(oracle, scene, "round trip")
    assert back.GetScene() is scene and back.GetDisplayNode() is not None
    assert_same_image(slicer_io.volume_node_to_sitk(back), oracle)
    written = tmp_path / "written.nrrd"
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(written))
    assert storage.WriteData(back)
    assert_same_image(sitk.ReadImage(str(written)), oracle)


def test_linear_transform_is_applied(slicer_app, case_folder):
    scene = slicer_app.scene
    node = read_volume(scene, case_folder / "portal.nrrd")
    local = slicer_io.volume_node_to_sitk(node)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 10.0)  # 10 mm towards Right, i.e. -10 mm in LPS x
    transform.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(transform.GetID())
    moved = slicer_io.volume_node_to_sitk(node)
    np.testing.assert_allclose(np.subtract(moved.GetOrigin(), local.GetOrigin()), [-10.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(moved.GetDirection(), local.GetDirection(), atol=1e-12)

    warp_node = non_linear_warp_node(scene)  # a non-linear transform cannot become a regular grid
    node.SetAndObserveTransformNodeID(warp_node.GetID())
    with pytest.raises(HCCInputError, match="non-linear transform"):
        slicer_io.volume_node_to_sitk(node)


def _centroid_lps(mask):
    index = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0).mean(axis=0)[::-1]
    return np.array(mask.TransformContinuousIndexToPhysicalPoint(index.tolist()))


def test_transformed_segmentation_moves_the_lesion(lung_nodes):
    """A segmentation under a linear transform is read in world space, with or without a reference."""
    scene, segmentation, portal = lung_nodes["scene"], lung_nodes["segmentation"], lung_nodes["portal"]
    phases, ids = {"portal": portal}, [lung_nodes["lesion_id"]]
    still = slicer_io.case_from_nodes(phases, segmentation, segment_ids=ids)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(1, 3, 5.0)  # 5 mm towards Anterior, i.e. -5 mm in LPS y
    transform.SetMatrixTransformToParent(matrix)
    segmentation.SetAndObserveTransformNodeID(transform.GetID())
    moved = slicer_io.case_from_nodes(phases, segmentation, segment_ids=ids)
    np.testing.assert_allclose(_centroid_lps(moved.lesions[0].mask) - _centroid_lps(still.lesions[0].mask),
                               [0, -5, 0], atol=1e-6)
    on_portal = slicer_io.case_from_nodes(phases, segmentation, segment_ids=ids, reference_volume=portal)
    shift = _centroid_lps(on_portal.lesions[0].mask) - _centroid_lps(still.lesions[0].mask)
    np.testing.assert_allclose(shift, [0, -5, 0], atol=0.6)  # resampled onto the portal grid (0.8-2.5 mm)


def test_labelmap_to_volume_node(slicer_app, lung_nodes):
    scene = slicer_app.scene
    portal = lung_nodes["portal"]
    portal_image = slicer_io.volume_node_to_sitk(portal)
    shape = sitk.GetArrayViewFromImage(portal_image).shape
    labels = (np.arange(np.prod(shape)).reshape(shape) % 3).astype(np.uint8)
    node = slicer_io.labelmap_to_volume_node(labels, portal, scene, "patch labels")
    assert node.IsA("vtkMRMLLabelMapVolumeNode") and node.GetName() == "patch labels"
    out = slicer_io.volume_node_to_sitk(node)
    assert_same_geometry(out, portal_image)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(out), labels)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), labels)

    saliency = sitk.GetImageFromArray(np.linspace(0, 1, labels.size, dtype=np.float32).reshape(shape))
    saliency.CopyInformation(portal_image)
    node = slicer_io.labelmap_to_volume_node(saliency, None, scene, "saliency")
    assert node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode")
    assert_same_image(slicer_io.volume_node_to_sitk(node), saliency)

    before = node_ids(scene)
    with pytest.raises(HCCInputError, match="shape"):
        slicer_io.labelmap_to_volume_node(labels[:-1], portal, scene, "wrong shape")
    with pytest.raises(HCCInputError, match="NaN"):
        slicer_io.labelmap_to_volume_node(np.full(shape, np.nan, np.float32), portal, scene, "nan map")
    assert node_ids(scene) == before


def test_empty_segment_is_refused_and_scene_unchanged(lung_nodes):
    scene, segmentation = lung_nodes["scene"], lung_nodes["segmentation"]
    segmentation.GetSegmentation().AddEmptySegment("empty_one")
    segmentation.GetSegmentation().GetSegment("empty_one").SetName("lesion 2")
    before = node_ids(scene)
    with pytest.raises(HCCInputError, match="lesion 2' is empty") as err:
        slicer_io.case_from_nodes({"arterial": lung_nodes["arterial"]}, segmentation)
    assert "lung1 segmentation" in str(err.value)
    assert node_ids(scene) == before


def test_bad_nodes_are_refused(slicer_app, lung_nodes):
    scene, segmentation = lung_nodes["scene"], lung_nodes["segmentation"]
    empty_volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "no data")
    bare = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "no geometry")
    bare.GetSegmentation().AddEmptySegment("x")
    before, arterial = node_ids(scene), {"arterial": lung_nodes["arterial"]}
    for match, call in [("no data.*has no image data", lambda: slicer_io.case_from_nodes({"a": empty_volume}, bare)),
                        ("has no image data", lambda: slicer_io.volume_node_to_sitk(empty_volume)),
                        ("not a scalar", lambda: slicer_io.case_from_nodes({"a": lung_nodes["labels"]}, segmentation)),
                        ("no segment with ID", lambda: slicer_io.case_from_nodes(arterial, segmentation, ["nope"])),
                        ("are the liver", lambda: slicer_io.case_from_nodes(arterial, segmentation,
                                                                           [lung_nodes["liver_id"]])),
                        ("no phase volume", lambda: slicer_io.case_from_nodes({}, segmentation)),
                        ("no reference geometry", lambda: slicer_io.case_from_nodes(arterial, bare))]:
        with pytest.raises(HCCInputError, match=match):
            call()
    assert node_ids(scene) == before


def hand_made_prediction():
    """Two lesions and a background region, as infer.aggregate would report them (no model needed)."""
    rows = [
        PredictionRow("lung1", "p1", "S_a", 'lesion "A"', "lesion", "HCC", {"HCC": 0.8125, "non-HCC": 0.1875},
                      n_samples=12, extras={"tic_peak": 1.5}),
        PredictionRow("lung1", "p1", "S_b", "lesion B", "lesion", "non-HCC", {"HCC": 0.25, "non-HCC": 0.75},
                      n_samples=7),
        PredictionRow("lung1", "p1", "bg1", "background 1", "background", "non-HCC",
                      {"HCC": 0.0625, "non-HCC": 0.9375}, n_samples=3, extras={"tic_peak": -2.25}),
    ]
    return Prediction("hcc_vs_non_hcc", "resnet-spp test", ["HCC", "non-HCC"], rows)


def _column_values(table_node, name):
    array = table_node.GetTable().GetColumnByName(name)
    return [array.GetValue(i) for i in range(array.GetNumberOfValues())]


def _check_table(table_node, prediction):
    """Types, values, titles, units and descriptions of a prediction table (fresh or reloaded)."""
    records = prediction.records()
    table = table_node.GetTable()
    names = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
    assert names[0] == "lesion_name" and sorted(names) == sorted(prediction.columns())
    assert table.GetNumberOfRows() == len(records)
    expected_types = {"case_id": vtk.VTK_STRING, "lesion_name": vtk.VTK_STRING, "predicted_class": vtk.VTK_STRING,
                      "prob_HCC": vtk.VTK_DOUBLE, "prob_non-HCC": vtk.VTK_DOUBLE, "tic_peak": vtk.VTK_DOUBLE,
                      "n_samples": vtk.VTK_INT}
    for name, vtk_type in expected_types.items():
        assert table_node.GetColumnType(name) == vtk_type, name
        assert table.GetColumnByName(name).GetDataType() == vtk_type, name
    assert _column_values(table_node, "lesion_name") == ["lesion 'A'", "lesion B", "background 1"]
    assert _column_values(table_node, "lesion_id") == ["S_a", "S_b", "bg1"]
    assert _column_values(table_node, "prob_HCC") == [r["prob_HCC"] for r in records]
    assert _column_values(table_node, "n_samples") == [12, 7, 3]
    peaks = _column_values(table_node, "tic_peak")
    assert peaks[0] == 1.5 and math.isnan(peaks[1]) and peaks[2] == -2.25
    assert table_node.GetColumnTitle("prob_HCC") == "P(HCC)"
    assert table_node.GetColumnUnitLabel("prob_HCC") == "probability"
    assert "probability of class 'HCC'" in table_node.GetColumnDescription("prob_HCC")
    assert table_node.GetColumnTitle("lesion_id") == "Segment ID"
    assert "slices, patches or regions" in table_node.GetColumnDescription("n_samples")
    assert table_node.GetAttribute("HCCAnalysis.task") == "hcc_vs_non_hcc"
    assert table_node.GetAttribute("HCCAnalysis.classes") == "HCC|non-HCC"


def test_prediction_table_round_trip(slicer_app, tmp_path):
    scene, prediction = slicer_app.scene, hand_made_prediction()
    table_node = slicer_io.prediction_to_table(prediction, scene, name="lung1 prediction")
    assert table_node.GetScene() is scene and table_node.GetName() == "lung1 prediction"
    _check_table(table_node, prediction)

    storage = scene.AddNewNodeByClass("vtkMRMLTableStorageNode")
    storage.SetFileName(str(tmp_path / "prediction.tsv"))
    table_node.SetAndObserveStorageNodeID(storage.GetID())
    assert storage.WriteData(table_node)
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit()

    # Independent oracle: the TSV read with csv has the prediction's columns and values.
    with open(tmp_path / "prediction.tsv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [r["lesion_id"] for r in rows] == ["S_a", "S_b", "bg1"]
    assert [float(r["prob_non-HCC"]) for r in rows] == [0.1875, 0.75, 0.9375]
    with open(tmp_path / "prediction.schema.tsv", newline="", encoding="utf-8") as handle:
        schema = {r["columnName"]: r for r in csv.DictReader(handle, delimiter="\t")}
    assert schema["n_samples"]["type"] == "int" and schema["prob_HCC"]["type"] == "double"
    assert schema["case_id"]["type"] == "string" and schema["prob_HCC"]["unitLabel"] == "probability"

    reloaded = slicer.vtkMRMLScene()
    reloaded.SetURL(str(tmp_path / "scene.mrml"))
    assert reloaded.Connect()
    tables = [reloaded.GetNthNodeByClass(i, "vtkMRMLTableNode")
              for i in range(reloaded.GetNumberOfNodesByClass("vtkMRMLTableNode"))]
    assert [t.GetName() for t in tables] == ["lung1 prediction"]
    _check_table(tables[0], prediction)


def test_prediction_table_replaces_an_existing_node(slicer_app):
    scene, prediction = slicer_app.scene, hand_made_prediction()
    old = scene.AddNewNodeByClass("vtkMRMLTableNode", "previous result")
    old.AddColumn().SetName("stale")
    before = node_ids(scene)
    node = slicer_io.prediction_to_table(prediction, scene, table_node=old)
    assert node is old and node_ids(scene) == before and node.GetName() == "previous result"
    assert node.GetTable().GetColumnByName("stale") is None
    _check_table(node, prediction)


def test_prediction_table_refuses_bad_input(slicer_app):
    scene, prediction = slicer_app.scene, hand_made_prediction()
    other_scene_table = slicer.vtkMRMLScene().AddNewNodeByClass("vtkMRMLTableNode")
    before = node_ids(scene)
    with pytest.raises(HCCInputError, match="not in the given scene"):
        slicer_io.prediction_to_table(prediction, scene, table_node=other_scene_table)
    with pytest.raises(HCCInputError, match="has no rows"):
        slicer_io.prediction_to_table(Prediction("t", "m", ["a", "b"], []), scene)
    prediction.rows[1].probabilities.pop("HCC")
    with pytest.raises(HCCInputError, match="no probability for \\['HCC'\\]"):
        slicer_io.prediction_to_table(prediction, scene)
    with pytest.raises(HCCInputError, match="unknown column"):
        slicer_io.prediction_to_table(hand_made_prediction(), scene, column_info_overrides={"nope": {}})
    assert node_ids(scene) == before
