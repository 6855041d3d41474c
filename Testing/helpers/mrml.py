"""Small MRML builders shared by the Slicer-path tests (slicer-core nodes, `vtk` from its wheel)."""


def non_linear_warp_node(scene):
    """A transform node holding a thin-plate-spline warp (one landmark moved 5 mm): a transform
    that no regular voxel grid can follow, which the library must refuse."""
    import vtk

    warp = vtk.vtkThinPlateSplineTransform()
    source, target = vtk.vtkPoints(), vtk.vtkPoints()
    for x, y, z in [(0, 0, 0), (100, 0, 0), (0, 100, 0), (0, 0, 100), (50, 50, 50)]:
        source.InsertNextPoint(x, y, z)
        target.InsertNextPoint(x, y, z + (5 if x == 50 else 0))
    warp.SetSourceLandmarks(source)
    warp.SetTargetLandmarks(target)
    node = scene.AddNewNodeByClass("vtkMRMLTransformNode")
    node.SetAndObserveTransformToParent(warp)
    return node
