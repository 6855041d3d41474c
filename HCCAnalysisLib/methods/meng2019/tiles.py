"""Microscopy images for Meng et al. (SPIE Medical Imaging 2019): reading, tiling, mean stretching.

- Reading: PNG / JPEG / BMP through Pillow; TIFF, pyramidal TIFF and Aperio SVS through
  tifffile, which reads only the pyramid level closest to the requested downsampling
  (no OpenSlide needed; JPEG-compressed SVS needs the `imagecodecs` package); Slicer
  vector (RGB) volume nodes through their VTK image data.
- Tiling (section 2.3): the 2048 x 2048 images are cut into 512 x 512 tiles. Images whose
  size is not a multiple of the tile size follow an explicit edge policy: "pad" (pad
  bottom / right, reassembly crops back, exact round trip), "drop" (discard the partial
  edge tiles) or "error".
- Mean stretching (eq. 1-2): f_S(i, j) = f(i, j) - m, with m the mean intensity of the
  N x N tile (N = 512 in the paper, "the image" being the tile after cutting). For
  colour images the mean is taken per channel by default (the paper's images are
  single-intensity; `per_channel=False` subtracts one mean over all channels).
- Whole-image prediction: the mean (or majority vote) of its tiles' class probabilities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from HCCAnalysisLib.errors import HCCInputError

if TYPE_CHECKING:
    import slicer

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff", ".svs")
EDGE_POLICIES = ("pad", "drop", "error")


def _as_hwc(array, source):
    """H x W x C with C in {1, 3}; an alpha channel is dropped."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise HCCInputError(f"is not a 2D grey or RGB(A) image (array shape {array.shape})", source)
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise HCCInputError("has no pixels", source)
    array = array[:, :, :3] if array.shape[2] == 4 else array
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise HCCInputError("has NaN or infinite pixel values", source)
    return array


def _read_pil(path):
    from PIL import Image

    with Image.open(path) as image:
        if image.mode in ("P", "RGBA", "LA", "CMYK", "YCbCr"):
            image = image.convert("RGB")
        return np.asarray(image)


def _series_axes_to_hwc(data, axes, source):
    """Move a tifffile series (axes such as 'YXS', 'SYX', 'CYX', 'YX') to H x W x C."""
    for axis in [a for a in axes if a not in "YXSC"]:
        if data.shape[axes.index(axis)] != 1:
            raise HCCInputError(f"has a '{axis}' axis of length {data.shape[axes.index(axis)]}; "
                                "a single 2D (RGB) plane is needed", source)
    keep = [a for a in axes if a in "YXSC"]
    data = data.reshape([n for n, a in zip(data.shape, axes) if a in "YXSC"])
    channel = [i for i, a in enumerate(keep) if a in "SC"]
    order = [keep.index("Y"), keep.index("X")] + channel
    return np.transpose(data, order)


def pyramid_level(level_widths: Sequence[int], downsample: float) -> int:
    """Index of the level whose downsampling (base width / level width) is closest in log scale."""
    if downsample <= 0:
        raise HCCInputError(f"downsample must be positive, got {downsample}")
    factors = [level_widths[0] / w for w in level_widths]
    return int(np.argmin([abs(math.log(f / downsample)) for f in factors]))


def _read_tiff(path, downsample, level):
    from HCCAnalysisLib.runtime.extras import require

    tifffile = require("tifffile", "microscopy", f"reading {path} (TIFF / SVS)")

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]  # SVS: baseline + pyramid; later series are thumbnail / label / macro
        levels = series.levels
        widths = [lv.shape[lv.axes.index("X")] for lv in levels]
        index = pyramid_level(widths, downsample) if level is None else level
        if not 0 <= index < len(levels):
            raise HCCInputError(f"has {len(levels)} pyramid levels, level {index} was asked for", path)
        chosen = levels[index]
        try:
            data = chosen.asarray()
        except Exception as error:  # tifffile and the imagecodecs decoders raise many error types
            raise HCCInputError(f"cannot decode its pixels ({error})", path,
                                "JPEG/JPEG2000-compressed TIFF and SVS need the imagecodecs package") from None
        return _series_axes_to_hwc(data, chosen.axes, path)


def read_microscopy_image(path: str | Path, downsample: float = 1.0, level: int | None = None) -> np.ndarray:
    """A microscopy image as H x W x C (C = 1 or 3), pixel type kept (uint8, uint16, float).

    For pyramidal TIFF / SVS the level closest to `downsample` (1 = full resolution) is
    read, or the explicit `level`; other files ignore both.
    """
    path = Path(path)
    if not path.is_file():
        raise HCCInputError("no such file", path)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        data = _read_tiff(path, downsample, level)
    elif suffix in PIL_SUFFIXES:
        try:
            data = _read_pil(path)
        except OSError as error:
            raise HCCInputError(f"cannot read the image ({error})", path) from None
    else:
        raise HCCInputError(f"unsupported microscopy image type '{suffix}'", path,
                            f"use one of {', '.join(PIL_SUFFIXES + TIFF_SUFFIXES)}")
    return _as_hwc(data, path)


def image_from_array(array: np.ndarray, source: str = "image") -> np.ndarray:
    """H x W x C from an H x W, H x W x C or 1 x H x W x C array (a one-slice vector volume's array)."""
    array = np.asarray(array)
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise HCCInputError(f"has {array.shape[0]} slices; a microscopy image is a single 2D (RGB) slice",
                                source)
        array = array[0]
    return _as_hwc(array, source)


def image_from_vector_volume_node(node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The pixels of a Slicer (vector / scalar) volume node with one slice, as H x W x C.

    Rows are in the order of the node's image data (as `slicer.util.arrayFromVolume`).
    """
    from vtkmodules.util import numpy_support

    name = f"volume node '{node.GetName()}'" if hasattr(node, "GetName") else "volume node"
    image_data = node.GetImageData() if hasattr(node, "GetImageData") else None
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        raise HCCInputError("has no image data", name)
    nx, ny, nz = image_data.GetDimensions()
    if nz != 1:
        raise HCCInputError(f"has {nz} slices; a microscopy image is a single 2D (RGB) slice", name)
    scalars = numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars())
    return _as_hwc(scalars.reshape(ny, nx, -1).copy(), name)


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one image came from: origins (row, col) of each tile, in order."""

    image_shape: tuple[int, int, int]  # (H, W, C) of the original image
    tile_size: int
    edge: str
    origins: tuple[tuple[int, int], ...]  # ((row, col), ...)

    @property
    def covered_shape(self) -> tuple[int, int, int]:
        """Shape of the reassembled image: the original for "pad", the whole tiles for "drop"."""
        h, w, c = self.image_shape
        if self.edge == "drop":
            return (h // self.tile_size * self.tile_size, w // self.tile_size * self.tile_size, c)
        return (h, w, c)


def cut_tiles(image: np.ndarray, tile_size: int = 512, edge: str = "pad", pad_mode: str = "reflect"
              ) -> tuple[np.ndarray, TileGrid]:
    """Cut H x W x C into N x tile x tile x C tiles in row-major order, plus their TileGrid."""
    image = _as_hwc(image, "image")
    if edge not in EDGE_POLICIES:
        raise HCCInputError(f"unknown edge policy '{edge}'", hint=f"use one of {', '.join(EDGE_POLICIES)}")
    if tile_size < 1:
        raise HCCInputError(f"tile size must be positive, got {tile_size}")
    h, w, _ = image.shape
    if edge == "error" and (h % tile_size or w % tile_size):
        raise HCCInputError(f"image of {h} x {w} pixels is not a whole number of {tile_size}-pixel tiles",
                            hint="use edge='pad' or edge='drop'")
    if edge == "drop":
        rows, cols = h // tile_size, w // tile_size
        if rows == 0 or cols == 0:
            raise HCCInputError(f"image of {h} x {w} pixels holds no whole {tile_size}-pixel tile",
                                hint="use edge='pad' or a smaller tile size")
        padded = image
    else:
        rows, cols = math.ceil(h / tile_size), math.ceil(w / tile_size)
        pad = ((0, rows * tile_size - h), (0, cols * tile_size - w), (0, 0))
        padded = np.pad(image, pad, mode=pad_mode) if any(p[1] for p in pad) else image
    origins = tuple((r * tile_size, c * tile_size) for r in range(rows) for c in range(cols))
    tiles = np.stack([padded[r:r + tile_size, c:c + tile_size] for r, c in origins])
    return tiles, TileGrid(image.shape, tile_size, edge, origins)


def reassemble_tiles(tiles: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Put tiles back where `grid` says; the inverse of cut_tiles (cropped to grid.covered_shape)."""
    tiles = np.asarray(tiles)
    t = grid.tile_size
    if tiles.ndim == 3:
        tiles = tiles[..., None]
    if len(tiles) != len(grid.origins) or tiles.shape[1:3] != (t, t):
        raise HCCInputError(f"{len(tiles)} tiles of {tiles.shape[1:3]} do not match the grid's "
                            f"{len(grid.origins)} tiles of {t} x {t}")
    rows = max(r for r, _ in grid.origins) + t
    cols = max(c for _, c in grid.origins) + t
    canvas = np.zeros((rows, cols, tiles.shape[3]), dtype=tiles.dtype)
    for tile, (r, c) in zip(tiles, grid.origins):
        canvas[r:r + t, c:c + t] = tile
    h, w, _ = grid.covered_shape
    return canvas[:h, :w]


def mean_stretch(tiles: np.ndarray, per_channel: bool = True) -> np.ndarray:
    """Eq. 1-2: subtract each tile's mean intensity. tiles: H x W x C or N x H x W x C; float32 out."""
    tiles = np.asarray(tiles, dtype=np.float32)
    if tiles.ndim not in (3, 4):
        raise HCCInputError(f"mean stretching needs H x W x C or N x H x W x C, got shape {tiles.shape}")
    spatial = (-3, -2) if per_channel else (-3, -2, -1)
    return tiles - tiles.mean(axis=spatial, keepdims=True)


def channels_first(tiles: np.ndarray) -> np.ndarray:
    """N x H x W x C -> N x C x H x W (the layout of the net's 'image' input), float32."""
    return np.ascontiguousarray(np.moveaxis(np.asarray(tiles, dtype=np.float32), -1, 1))


def prepare_tiles(image: np.ndarray, tile_size: int = 512, edge: str = "pad", per_channel: bool = True
                  ) -> tuple[np.ndarray, TileGrid]:
    """Cut, mean-stretch and lay out one image: (N x C x tile x tile float32, TileGrid)."""
    tiles, grid = cut_tiles(image, tile_size, edge)
    return channels_first(mean_stretch(tiles, per_channel)), grid


def tile_samples(image: np.ndarray, tile_size: int = 512, edge: str = "pad", per_channel: bool = True
                 ) -> tuple[list[dict[str, np.ndarray]], TileGrid]:
    """Per-tile net inputs [{"image": C x tile x tile float32}, ...] of one image, and its TileGrid."""
    tiles, grid = prepare_tiles(image, tile_size, edge, per_channel)
    return [{"image": tile} for tile in tiles], grid


def aggregate_tile_probabilities(probabilities: np.ndarray | Sequence[Sequence[float]], method: str = "mean"
                                 ) -> tuple[np.ndarray, int]:
    """Whole-image class probabilities from N x K tile probabilities: their mean, or vote shares."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or len(probabilities) == 0:
        raise HCCInputError(f"tile probabilities must be N x K with N >= 1, got shape {probabilities.shape}")
    if method == "mean":
        image_probabilities = probabilities.mean(axis=0)
    elif method == "vote":
        votes = np.bincount(probabilities.argmax(axis=1), minlength=probabilities.shape[1])
        image_probabilities = votes / votes.sum()
    else:
        raise HCCInputError(f"unknown tile aggregation '{method}'", hint="use 'mean' or 'vote'")
    return image_probabilities, int(np.argmax(image_probabilities))
