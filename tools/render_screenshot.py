"""Render the extension's screenshot: a result on a bundled case, drawn by Slicer's own MRML code.

The slice views and the 3D view are Slicer's (vtkMRMLSliceLogic, the segmentations, model and
reformat displayable managers) run offscreen on the CPU through trame-slicer (EGL via Mesa, no X
server); the table is the results TSV read into a vtkMRMLTableNode by vtkMRMLTableStorageNode and
drawn with VTK text actors. The layout follows what the module's Apply shows in Slicer: the
saliency volume as the foreground layer at opacity 0.4 (window 0..1, Inferno), the segmentation
over it, and the four-up-plus-table layout.

trame-slicer pins slicer-core 5.11 and vtk 9.6.0, so it lives in its own virtual environment, never
in the project's (nothing in the project or CI needs it). Commands (from the repository root):

    # 1. the environment (Debian: apt-get install libegl-mesa0 libgl1-mesa-dri)
    python3.11 -m venv /work/trame-env
    /work/trame-env/bin/pip install "trame-slicer[standalone]==2.0.0"    # slicer-core 5.11.0.6, vtk 9.6.0

    # 2. the result, with the project's own environment and the bundled demo model
    mkdir -p /tmp/shot && unzip -o HCCAnalysisLib/models/bundled/jia2019-hcc-vs-background-0.2.0-demo.zip -d /tmp/shot
    M=/tmp/shot/jia2019-hcc-vs-background-0.2.0-demo
    .venv/bin/hcc predict  --model $M --case HCCAnalysisLib/sample_data/demo-heldout/brain2 --out /tmp/shot/out --device cpu
    .venv/bin/hcc saliency --model $M --case HCCAnalysisLib/sample_data/demo-heldout/brain2 --out /tmp/shot/out --device cpu

    # 3. the picture
    /work/trame-env/bin/python tools/render_screenshot.py --case HCCAnalysisLib/sample_data/demo-heldout/brain2 \
        --results /tmp/shot/out/results.tsv --saliency /tmp/shot/out/saliency.nrrd \
        --out HCCAnalysis/Resources/Screenshots/result.png

The demo model is a pipeline demonstration trained on four non-liver tumours; the caption says so.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

# (width, height) per view: the coronal and sagittal views are wide, as the case is 45 mm high.
VIEW_SIZES = {"Red": (440, 440), "ThreeD": (440, 440), "Green": (440, 300), "Yellow": (440, 300)}
SEGMENTS = {1: ("liver (stand-in ring)", (0.90, 0.90, 0.90)), 2: ("lesion 1", (0.20, 0.90, 0.30))}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, required=True, help="case folder with image.nrrd and labels.nrrd")
    parser.add_argument("--results", type=Path, required=True, help="results TSV written by `hcc predict`")
    parser.add_argument("--saliency", type=Path, required=True, help="saliency volume written by `hcc saliency`")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--task", default="jia2019-hcc-vs-background", help="the model's task, for the title")
    parser.add_argument("--note", default="Demo model: a pipeline demonstration trained on 4 non-liver tumours "
                                          "(pyradiomics test data), not a clinical or HCC model.")
    args = parser.parse_args(argv)
    args.title = f"HCCAnalysis: {args.task} on {args.case.as_posix()}"
    return args


def make_app():
    from trame_slicer.core import SlicerApp
    from trame_slicer.views import DirectViewFactory, ViewLayoutDefinition

    app = SlicerApp()
    app.view_manager.register_factory(DirectViewFactory(do_render_offscreen=True))
    layout = [ViewLayoutDefinition.axial_view(), ViewLayoutDefinition.threed_view(),
              ViewLayoutDefinition.coronal_view(), ViewLayoutDefinition.sagittal_view()]
    views = [app.view_manager.create_view(v) for v in layout]
    app.view_manager.set_current_view_ids([v.singleton_tag for v in layout])
    for view in views:
        view.render_window().SetSize(*VIEW_SIZES[view.get_singleton_tag()])
    return app, views


def inferno_colour_node(scene):
    """Slicer's first choice for saliency (the panel's SALIENCY_COLOURS) is its Inferno colour file,
    which slicer-core's wheel does not ship: build the same map from matplotlib's table."""
    from matplotlib import colormaps
    from slicer import vtkMRMLColorTableNode

    node = vtkMRMLColorTableNode()
    node.SetTypeToUser()
    node.SetName("Inferno")
    node.SetNumberOfColors(256)
    table = colormaps["inferno"](np.linspace(0.0, 1.0, 256))
    for index, (r, g, b, _) in enumerate(table):
        node.SetColor(index, f"inferno{index}", float(r), float(g), float(b), 1.0)
    scene.AddNode(node)
    return node


def load_case(app, case: Path, saliency: Path):
    from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLVolumeArchetypeStorageNode

    image = app.io_manager.load_volumes(str(case / "image.nrrd"))[0]
    image.SetName(case.name)
    labelmap = vtkMRMLLabelMapVolumeNode()
    app.scene.AddNode(labelmap)
    storage = vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(case / "labels.nrrd"))
    if not storage.ReadData(labelmap):
        sys.exit(f"could not read {case / 'labels.nrrd'}")
    segmentation = app.segmentation_editor.create_segmentation_node_from_labelmap(labelmap)
    segmentation.SetName(f"{case.name} segmentation")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(image)
    display = segmentation.GetDisplayNode()
    for label, (name, colour) in SEGMENTS.items():
        segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(f"Label_{label}") or f"Label_{label}"
        segment = segmentation.GetSegmentation().GetSegment(segment_id)
        if segment is None:
            sys.exit(f"{case / 'labels.nrrd'} has no label {label}")
        segment.SetName(name)
        segment.SetColor(*colour)
        # Outlines only: a fill would hide the saliency map under it.
        display.SetSegmentOpacity2DFill(segment_id, 0.0)
        display.SetSegmentVisibility3D(segment_id, label != 1)  # the ring's surface would hide the slices
    display.SetSliceIntersectionThickness(2)
    segmentation.CreateClosedSurfaceRepresentation()
    display.SetPreferredDisplayRepresentationName3D("Closed surface")
    app.scene.RemoveNode(labelmap)

    heat = app.io_manager.load_volumes(str(saliency))[0]
    heat.SetName(f"{case.name} saliency")
    heat_display = heat.GetDisplayNode()
    heat_display.AutoWindowLevelOff()
    heat_display.SetWindowLevelMinMax(0.0, 1.0)
    heat_display.SetAndObserveColorNodeID(inferno_colour_node(app.scene).GetID())
    return image, segmentation, heat


def lesion_centre_ras(case: Path) -> list[float]:
    """World (RAS) centre of the lesion label, where the three slice views cross."""
    from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLVolumeArchetypeStorageNode
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    node = vtkMRMLLabelMapVolumeNode()
    storage = vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(case / "labels.nrrd"))
    storage.ReadData(node)
    dims = node.GetImageData().GetDimensions()
    voxels = vtk_to_numpy(node.GetImageData().GetPointData().GetScalars()).reshape(dims[::-1])
    k, j, i = (float(np.mean(axis)) for axis in np.nonzero(voxels == 2))

    ijk_to_ras = vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    return list(ijk_to_ras.MultiplyPoint((i, j, k, 1.0))[:3])


def show(app, views, image, segmentation, heat, centre: list[float]) -> None:
    from trame_slicer.views import SliceView

    slice_views = [v for v in views if isinstance(v, SliceView)]
    for view in slice_views:
        view.set_background_volume_id(image.GetID())
        view.set_foreground_volume_id(heat.GetID())
        view.set_foreground_opacity(0.4)
        view.reset_view()
        view.set_visible_in_3d(view.get_orientation() != "Coronal")  # it would hide the lesion
    app.display_manager.set_node_visible_in_group(segmentation)
    for view in slice_views:
        node = view._view_node  # trame-slicer exposes no getter for the slice node
        node.JumpSliceByOffsetting(*centre)
    threed = next(v for v in views if not isinstance(v, SliceView))
    from trame_slicer.views import ViewDirection

    threed.reset_view()
    threed.rotate_to_view_direction(ViewDirection.ANTERIOR)
    camera = threed.renderer().GetActiveCamera()
    camera.Elevation(40)
    camera.Azimuth(-35)
    camera.OrthogonalizeViewUp()
    threed.renderer().ResetCamera()
    camera.Zoom(1.15)


def annotate(view, text: str, colour: tuple[float, float, float]) -> None:
    """The view's name and slice offset on its colour, as on Slicer's slice controller bar."""
    from vtkmodules.vtkRenderingCore import vtkTextActor

    label = vtkTextActor()
    label.SetInput(f" {text} ")
    prop = label.GetTextProperty()
    prop.SetFontFamilyToArial()
    prop.SetFontSize(14)
    prop.SetBold(True)
    prop.SetColor(0.0, 0.0, 0.0)
    prop.SetBackgroundColor(*colour)
    prop.SetBackgroundOpacity(1.0)
    prop.SetVerticalJustificationToTop()
    label.SetDisplayPosition(0, view.render_window().GetSize()[1])
    view.renderer().AddActor2D(label)


def capture(render_window) -> np.ndarray:
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

    render_window.Render()
    grab = vtkWindowToImageFilter()
    grab.SetInput(render_window)
    grab.SetInputBufferTypeToRGB()
    grab.ReadFrontBufferOff()
    grab.Update()
    output = grab.GetOutput()
    width, height, _ = output.GetDimensions()
    pixels = vtk_to_numpy(output.GetPointData().GetScalars()).reshape(height, width, 3)
    return pixels[::-1]  # VTK's rows run bottom to top


def read_table(path: Path):
    from slicer import vtkMRMLTableNode, vtkMRMLTableStorageNode

    node = vtkMRMLTableNode()
    storage = vtkMRMLTableStorageNode()
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        sys.exit(f"could not read the table {path}")
    return node


def table_cells(node) -> tuple[list[str], list[list[str]]]:
    """The table node's header and rows as text, probabilities to 3 decimals."""
    table = node.GetTable()
    names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    keep = [n for n in names if n != "patient_id"]  # the demo cases' patient id repeats the case id
    rows = []
    for r in range(table.GetNumberOfRows()):
        row = []
        for name in keep:
            value = table.GetColumnByName(name).GetValue(r)
            text = value.ToString() if hasattr(value, "ToString") else str(value)
            try:
                number = float(text)
                text = f"{number:.3f}" if name.startswith("prob_") and math.isfinite(number) else text
            except ValueError:
                pass
            row.append(text)
        rows.append(row)
    return keep, rows


def _text_property(size: int, bold: bool = False, colour=(0.1, 0.1, 0.1)):
    from vtkmodules.vtkRenderingCore import vtkTextProperty

    prop = vtkTextProperty()
    prop.SetFontFamilyToArial()
    prop.SetFontSize(size)
    prop.SetBold(bold)
    prop.SetColor(*colour)
    return prop


def _text_width(value: str, prop) -> int:
    from vtkmodules.vtkRenderingCore import vtkTextRenderer

    box = [0, 0, 0, 0]
    vtkTextRenderer.GetInstance().GetBoundingBox(prop, value, box, 72)
    return box[1] - box[0] + 1


def column_layout(header: list[str], rows: list[list[str]], width: int, gap: int = 14) -> tuple[int, list[int]]:
    """The largest font size (15 down to 9) at which every column fits in `width`, and the columns' x."""
    for size in range(15, 8, -1):
        widths = [max(_text_width(h, _text_property(size, bold=True)),
                      *(_text_width(r[c], _text_property(size)) for r in rows)) for c, h in enumerate(header)]
        if sum(widths) + gap * (len(widths) - 1) <= width:
            break
    spare = (width - sum(widths) - gap * (len(widths) - 1)) // max(1, len(widths) - 1)
    xs = [0]
    for w in widths[:-1]:
        xs.append(xs[-1] + w + gap + max(0, spare))
    return size, xs


def render_table(header: list[str], rows: list[list[str]], width: int, title: str, note: str) -> np.ndarray:
    """The table node's cells drawn by VTK text actors on white, under a title and the model's caveat."""
    from vtkmodules.vtkRenderingCore import vtkRenderer, vtkRenderWindow, vtkTextActor

    pad, line = 12, 24
    size, xs = column_layout(header, rows, width - 2 * pad)
    height = pad * 2 + line * (len(rows) + 3) + 8
    window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(width, height)
    renderer = vtkRenderer()
    renderer.SetBackground(1.0, 1.0, 1.0)
    window.AddRenderer(renderer)

    def text(x: int, y_from_top: int, value: str, prop) -> None:
        actor = vtkTextActor()
        actor.SetInput(value)
        actor.GetTextProperty().ShallowCopy(prop)
        actor.SetDisplayPosition(x, height - y_from_top)
        renderer.AddActor2D(actor)

    text(pad, pad + 16, title, _text_property(17, bold=True))
    text(pad, pad + 16 + line, note, _text_property(14, colour=(0.65, 0.1, 0.1)))
    top = pad + 16 + 2 * line + 8
    for x, name in zip(xs, header):
        text(pad + x, top, name, _text_property(size, bold=True))
    for r, row in enumerate(rows):
        for x, value in zip(xs, row):
            text(pad + x, top + line * (r + 1), value, _text_property(size))
    return capture(window)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    app, views = make_app()
    image, segmentation, heat = load_case(app, args.case, args.saliency)
    show(app, views, image, segmentation, heat, lesion_centre_ras(args.case))
    labels = {"Red": ("R  axial", (0.95, 0.29, 0.20)), "Green": ("G  coronal", (0.43, 0.68, 0.29)),
              "Yellow": ("Y  sagittal", (0.94, 0.84, 0.30)), "ThreeD": ("3D", (0.85, 0.85, 0.85))}
    tiles = []
    for view in views:
        name, colour = labels[view.get_singleton_tag()]
        if name != "3D":
            name = f"{name}   {view.get_slice_value():.1f} mm"
        annotate(view, name, colour)
        view.render()
        tiles.append(capture(view.render_window()))
    grid = np.concatenate([np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)], axis=0)
    header, rows = table_cells(read_table(args.results))
    table = render_table(header, rows, grid.shape[1], args.title, args.note)
    picture = np.concatenate([grid, np.full((4, grid.shape[1], 3), 80, np.uint8), table], axis=0)

    from PIL import Image

    args.out.parent.mkdir(parents=True, exist_ok=True)
    # An adaptive 256-colour palette keeps the file small; the views are smooth grey and heat ramps.
    Image.fromarray(np.ascontiguousarray(picture)).quantize(256, dither=Image.Dither.NONE).save(args.out, optimize=True)
    print(f"{args.out}: {picture.shape[1]} x {picture.shape[0]} pixels, {args.out.stat().st_size} bytes")
    # Tearing the views down at exit logs pipeline errors about nodes already gone: nothing is drawn then.
    from vtkmodules.vtkCommonCore import vtkObject

    vtkObject.GlobalWarningDisplayOff()
    return 0


if __name__ == "__main__":
    sys.exit(main())
