"""Volume nodes <-> SimpleITK images, keeping the physical geometry exact.

MRML stores a volume's voxels in a vtkImageData without geometry and the geometry in the
node as an IJK-to-RAS matrix; ITK stores origin, spacing and direction in LPS. The two
differ only by the sign of the first two world axes, so the conversion is one matrix
product and works for oblique, anisotropic and left-handed grids alike. The voxel order
is the same on both sides: a (k, j, i) numpy array is ITK's (z, y, x) array.

`slicer` and `vtk` are imported inside the functions: the library must import without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk

from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    import slicer
    from numpy.typing import DTypeLike

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Only these numpy types have a VTK array type of the same width and sign.
_VTK_DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64,
               np.float32, np.float64)


def is_a(obj: Any, class_name: str) -> bool:
    """True when `obj` is a VTK object of (a subclass of) `class_name`; False for anything else."""
    return hasattr(obj, "IsA") and bool(obj.IsA(class_name))


def node_source(node: Any) -> str:
    """How error messages name a node: its class, name and ID."""
    if not hasattr(node, "GetClassName"):
        return f"{type(node).__name__} {node!r:.60}"
    return f"{node.GetClassName()} '{node.GetName()}' ({node.GetID() or 'not in a scene'})"


def _matrix_to_numpy(vtk_matrix):
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _numpy_to_matrix(array):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def parent_to_world(node: slicer.vtkMRMLTransformableNode) -> np.ndarray:
    """The 4x4 matrix that takes the node's local RAS to world RAS (identity without a transform).

    A non-linear parent transform cannot be expressed on a regular grid: it is refused.
    """
    import vtk

    transform_node = node.GetParentTransformNode()
    if transform_node is None:
        return np.eye(4)
    if not transform_node.IsTransformToWorldLinear():
        raise HCCInputError("is under a non-linear transform", node_source(node),
                            "harden the transform (Data module) before the analysis")
    matrix = vtk.vtkMatrix4x4()
    transform_node.GetMatrixTransformToWorld(matrix)
    return _matrix_to_numpy(matrix)


def ijk_to_world_ras(node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The node's IJK-to-RAS matrix in world coordinates (its linear parent transform applied)."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return parent_to_world(node) @ _matrix_to_numpy(matrix)


def geometry_from_ijk_to_ras(ijk_to_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin, spacing, direction) in ITK's LPS convention from a 4x4 IJK-to-RAS matrix."""
    ijk_to_lps = RAS_TO_LPS @ np.asarray(ijk_to_ras, dtype=float)
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    if np.any(spacing <= 0):
        raise HCCInputError(f"has a degenerate voxel spacing {spacing.tolist()}")
    direction = ijk_to_lps[:3, :3] / spacing
    return ijk_to_lps[:3, 3].copy(), spacing, direction


def ijk_to_ras_from_image(image: sitk.Image) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix of a SimpleITK image (the inverse of geometry_from_ijk_to_ras)."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = direction * np.array(image.GetSpacing(), dtype=float)
    ijk_to_lps[:3, 3] = image.GetOrigin()
    return RAS_TO_LPS @ ijk_to_lps


def _checked_image_data(node):
    """The node's vtkImageData, its (k, j, i) shape and its extent's first voxel; refuses what is unusable."""
    image_data = node.GetImageData() if hasattr(node, "GetImageData") else None
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        raise HCCInputError("has no image data", node_source(node), "load or compute the volume first")
    extent = image_data.GetExtent()
    dims = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
    if min(dims) < 1:
        raise HCCInputError(f"has an empty image (dimensions {dims})", node_source(node))
    if image_data.GetNumberOfScalarComponents() != 1:
        raise HCCInputError(f"has {image_data.GetNumberOfScalarComponents()} components per voxel; "
                            "a scalar (grey-value) volume is needed", node_source(node))
    return image_data, (dims[2], dims[1], dims[0]), (extent[0], extent[2], extent[4])


def _image_data_array(node):
    """The node's voxels as a (k, j, i) numpy array (a copy) and the extent's first voxel."""
    from vtk.util.numpy_support import vtk_to_numpy

    image_data, shape, start = _checked_image_data(node)
    return vtk_to_numpy(image_data.GetPointData().GetScalars()).reshape(shape).copy(), start


def volume_node_to_sitk(volume_node: slicer.vtkMRMLScalarVolumeNode, dtype: DTypeLike | None = None) -> sitk.Image:
    """A SimpleITK image with the voxels and world geometry of a volume node.

    `dtype` (e.g. np.float32) casts the voxels; by default their type is kept.
    """
    if not is_a(volume_node, "vtkMRMLVolumeNode"):
        raise HCCInputError("is not a volume node", node_source(volume_node))
    array, start = _image_data_array(volume_node)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    ijk_to_ras = ijk_to_world_ras(volume_node)
    # An image data whose extent does not start at 0 puts voxel (0,0,0) of the array at `start`.
    ijk_to_ras[:3, 3] = (ijk_to_ras @ np.array([*start, 1.0]))[:3]
    origin, spacing, direction = geometry_from_ijk_to_ras(ijk_to_ras)
    image = sitk.GetImageFromArray(array)
    image.SetOrigin(origin.tolist())
    image.SetSpacing(spacing.tolist())
    image.SetDirection(direction.flatten().tolist())
    return image


def _vtk_image_data(array):
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk

    array = np.ascontiguousarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype.type not in _VTK_DTYPES:
        raise HCCInputError(f"voxel type {array.dtype} has no VTK equivalent", "array",
                            "cast it to an integer or float32 array")
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    scalars = numpy_to_vtk(array.ravel(), deep=True)
    scalars.SetName("ImageScalars")
    image_data.GetPointData().SetScalars(scalars)
    return image_data


def _check_scene(scene):
    if not is_a(scene, "vtkMRMLScene"):
        raise HCCInputError("is not an MRML scene", repr(scene))


def _new_volume_node(scene, array, ijk_to_ras, name, labelmap, parent_transform_id=None):
    """Build a complete volume node, then add it to the scene (so a failure adds nothing)."""
    import slicer

    node = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
    node.SetIJKToRASMatrix(_numpy_to_matrix(ijk_to_ras))
    node.SetAndObserveImageData(_vtk_image_data(array))
    node.SetName(scene.GenerateUniqueName(name or ("Label map" if labelmap else "Volume")))
    scene.AddNode(node)
    if parent_transform_id:
        node.SetAndObserveTransformNodeID(parent_transform_id)
    node.CreateDefaultDisplayNodes()  # a label map's display node picks Slicer's label colours itself
    return node


def sitk_to_volume_node(image: sitk.Image, scene: slicer.vtkMRMLScene, name: str | None = None,
                        labelmap: bool = False) -> slicer.vtkMRMLScalarVolumeNode:
    """Add a volume node holding a 3D scalar SimpleITK image, in world coordinates (no transform)."""
    _check_scene(scene)
    if not isinstance(image, sitk.Image) or image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise HCCInputError("is not a 3D scalar SimpleITK image", name or "image")
    return _new_volume_node(scene, sitk.GetArrayFromImage(image), ijk_to_ras_from_image(image), name, labelmap)


def labelmap_to_volume_node(array_or_sitk_image: np.ndarray | sitk.Image,
                            reference: slicer.vtkMRMLVolumeNode | sitk.Image | None, scene: slicer.vtkMRMLScene,
                            name: str, labelmap: bool | None = None) -> slicer.vtkMRMLScalarVolumeNode:
    """Show a computed map (label map, saliency map) as a volume node.

    A SimpleITK image keeps its own geometry. A (z, y, x) numpy array takes the geometry of
    `reference` (a volume node: its grid and parent transform; or a SimpleITK image) and must
    have its shape. Integer data becomes a label map node, floating data a scalar volume node,
    unless `labelmap` says otherwise.
    """
    _check_scene(scene)
    data = array_or_sitk_image
    if isinstance(data, sitk.Image):
        array = sitk.GetArrayFromImage(data)
        ijk_to_ras, transform_id = ijk_to_ras_from_image(data), None
    else:
        array = np.asarray(data)
        if isinstance(reference, sitk.Image):
            ref_shape, ijk_to_ras, transform_id = reference.GetSize()[::-1], ijk_to_ras_from_image(reference), None
        elif is_a(reference, "vtkMRMLVolumeNode"):
            import vtk

            _, ref_shape, start = _checked_image_data(reference)
            matrix = vtk.vtkMatrix4x4()
            reference.GetIJKToRASMatrix(matrix)
            ijk_to_ras = _matrix_to_numpy(matrix)
            ijk_to_ras[:3, 3] = (ijk_to_ras @ np.array([*start, 1.0]))[:3]
            transform_id = reference.GetTransformNodeID()
        else:
            raise HCCInputError("a numpy array needs a reference volume node or SimpleITK image for its geometry",
                                name)
        if tuple(array.shape) != tuple(ref_shape):
            raise HCCInputError(f"has shape {tuple(array.shape)} but the reference grid is "
                                f"{tuple(ref_shape)} (z, y, x)", name)
    if array.ndim != 3:
        raise HCCInputError(f"is {array.ndim}D; a 3D map is needed", name)
    if labelmap is None:
        labelmap = np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_
    if not np.all(np.isfinite(array)):
        raise HCCInputError("has NaN or infinite values", name)
    return _new_volume_node(scene, array, ijk_to_ras, name, labelmap, transform_id)
