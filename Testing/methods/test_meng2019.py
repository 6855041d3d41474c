"""Meng et al. 2019 (microscopy CNN): readers, tiling, mean stretching, loss, net, real training.

There is no public HCC metastasis microscopy set. The real-data tests use the Kather
2016 H&E colorectal tiles (../shared/data/histology/kather2016_samples, CC BY 4.0):
tumour vs. stroma stands in for high vs. low metastatic HCC. The pyramidal TIFF and
SVS files are written here from those real pixels (uncompressed, in the Aperio SVS
layout that tifffile parses); they are not scanner output.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.losses import build_loss
from HCCAnalysisLib.nets import build_net
from HCCAnalysisLib.methods.meng2019.tiles import (aggregate_tile_probabilities, cut_tiles, image_from_array,
                                  image_from_vector_volume_node, mean_stretch, prepare_tiles, read_microscopy_image,
                                  reassemble_tiles, tile_samples)

HISTOLOGY = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "histology" / "kather2016_samples"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _files(folder):
    if not HISTOLOGY.is_dir():
        pytest.skip(f"H&E tiles not found at {HISTOLOGY} (../shared/data relative to the repository)")
    return sorted((HISTOLOGY / folder).glob("*.tif"))


@pytest.fixture(scope="module")
def tumour():
    return read_microscopy_image(_files("01_TUMOR")[0])


def _down(image, factor):
    h, w, c = image.shape
    return image.reshape(h // factor, factor, w // factor, factor, c).mean(axis=(1, 3)).astype(np.uint8)


def _mosaic():
    images = [read_microscopy_image(f) for f in _files("01_TUMOR")[:2] + _files("02_STROMA")[:2]]
    return np.concatenate([np.concatenate(images[:2], 1), np.concatenate(images[2:], 1)], 0)  # 300 x 300


# ---- readers -----------------------------------------------------------------------------

def test_read_real_tiff_and_png_round_trip(tumour, tmp_path):
    from PIL import Image

    assert tumour.shape == (150, 150, 3) and tumour.dtype == np.uint8
    Image.fromarray(tumour).save(tmp_path / "tile.png")
    np.testing.assert_array_equal(read_microscopy_image(tmp_path / "tile.png"), tumour)
    grey = (tumour.mean(axis=2) * 200).astype(np.uint16)  # a 16-bit grey camera image
    Image.fromarray(grey).save(tmp_path / "grey.png")
    read = read_microscopy_image(tmp_path / "grey.png")
    assert read.shape == (150, 150, 1) and np.array_equal(read[:, :, 0].astype(np.uint16), grey)


def test_pyramidal_tiff_reads_the_closest_level(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    base = _mosaic()
    levels = [base, _down(base, 2), _down(base, 4)]
    with tifffile.TiffWriter(tmp_path / "pyramid.tif") as writer:
        writer.write(levels[0], subifds=2, photometric="rgb", tile=(64, 64))
        for level in levels[1:]:
            writer.write(level, subfiletype=1, photometric="rgb", tile=(64, 64))
    path = tmp_path / "pyramid.tif"
    np.testing.assert_array_equal(read_microscopy_image(path), levels[0])
    np.testing.assert_array_equal(read_microscopy_image(path, downsample=2), levels[1])
    np.testing.assert_array_equal(read_microscopy_image(path, downsample=3.5), levels[2])  # log-closest to 4
    np.testing.assert_array_equal(read_microscopy_image(path, level=1), levels[1])
    with pytest.raises(HCCInputError, match="pyramid levels"):
        read_microscopy_image(path, level=3)


def test_svs_layout_baseline_levels_not_thumbnail(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    base = _mosaic()
    head = "Aperio Image Library v12.0.15 \n300x300 [0,0 300x300] (64x64) RAW/RGB|AppMag = 20|MPP = 0.5"
    path = tmp_path / "slide.svs"
    with tifffile.TiffWriter(path) as writer:
        writer.write(base, photometric="rgb", tile=(64, 64), description=head, metadata=None)
        writer.write(_down(base, 4), photometric="rgb", description="Aperio Image Library \n-> 75x75",
                     metadata=None)  # thumbnail (second page of an SVS)
        writer.write(_down(base, 2), photometric="rgb", tile=(64, 64), metadata=None,
                     description="Aperio Image Library \n300x300 -> 150x150 - |AppMag = 20")
    np.testing.assert_array_equal(read_microscopy_image(path, downsample=2), _down(base, 2))
    assert read_microscopy_image(path, downsample=8).shape == (150, 150, 3)  # coarsest pyramid level


def test_undecodable_tiff_is_a_clear_error(tumour, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "claims_jpeg.tif"
    tifffile.imwrite(path, tumour, photometric="rgb", compression="zlib")
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags["Compression"]
        offset, byteorder = tag.valueoffset, tif.byteorder
    with open(path, "r+b") as handle:  # relabel the zlib strips as JPEG: they no longer decode
        handle.seek(offset)
        handle.write((7).to_bytes(2, "little" if byteorder == "<" else "big"))
    with pytest.raises(HCCInputError, match="cannot decode"):
        read_microscopy_image(path)


def test_reader_errors(tmp_path):
    with pytest.raises(HCCInputError, match="no such file"):
        read_microscopy_image(tmp_path / "missing.png")
    (tmp_path / "slide.xyz").write_bytes(b"0")
    with pytest.raises(HCCInputError, match="unsupported"):
        read_microscopy_image(tmp_path / "slide.xyz")


def test_slicer_vector_volume_node(tumour):
    slicer = pytest.importorskip("slicer")
    vtk = pytest.importorskip("vtk")
    from vtkmodules.util import numpy_support

    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLVectorVolumeNode()
    node.SetName("HE tile")
    scene.AddNode(node)
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(150, 150, 1)
    image_data.GetPointData().SetScalars(numpy_support.numpy_to_vtk(tumour.reshape(-1, 3).copy(), deep=1))
    node.SetAndObserveImageData(image_data)
    np.testing.assert_array_equal(image_from_vector_volume_node(node), tumour)
    np.testing.assert_array_equal(image_from_array(tumour[None]), tumour)  # arrayFromVolume layout
    samples, grid = tile_samples(image_from_vector_volume_node(node), tile_size=75)
    assert len(samples) == 4 and samples[0]["image"].shape == (3, 75, 75) and samples[0]["image"].dtype == np.float32
    image_data.SetDimensions(50, 150, 3)
    with pytest.raises(HCCInputError, match="3 slices"):
        image_from_vector_volume_node(node)


# ---- tiles and mean stretching -------------------------------------------------------------

def test_paper_size_cut_and_reassemble_exact(tumour):
    image = np.tile(tumour, (14, 14, 1))[:2048, :2048]  # 2048 x 2048 like the paper's images
    tiles, grid = cut_tiles(image, 512, edge="error")
    assert tiles.shape == (16, 512, 512, 3) and grid.origins[5] == (512, 512)
    np.testing.assert_array_equal(tiles[6], image[512:1024, 1024:1536])
    np.testing.assert_array_equal(reassemble_tiles(tiles, grid), image)


def test_edge_policies(tumour):
    tiles, grid = cut_tiles(tumour, 64, edge="pad")  # 150 -> 3 x 3 tiles, padded to 192
    assert tiles.shape == (9, 64, 64, 3)
    np.testing.assert_array_equal(reassemble_tiles(tiles, grid), tumour)  # exact round trip
    np.testing.assert_array_equal(tiles[8][:150 - 128, :150 - 128], tumour[128:, 128:])
    dropped, grid = cut_tiles(tumour, 64, edge="drop")
    assert dropped.shape == (4, 64, 64, 3)
    np.testing.assert_array_equal(reassemble_tiles(dropped, grid), tumour[:128, :128])
    with pytest.raises(HCCInputError, match="whole number"):
        cut_tiles(tumour, 64, edge="error")
    with pytest.raises(HCCInputError, match="edge policy"):
        cut_tiles(tumour, 64, edge="wrap")


def test_mean_stretching_by_hand_and_on_real_tiles(tumour):
    grey = np.array([[1, 2], [3, 6]], dtype=np.uint8)[:, :, None]  # m = 3 (eq. 1)
    np.testing.assert_array_equal(mean_stretch(grey)[:, :, 0], [[-2, -1], [0, 3]])  # eq. 2
    rgb = np.stack([grey[:, :, 0], 10 * grey[:, :, 0], np.full((2, 2), 7)], axis=2)
    np.testing.assert_allclose(mean_stretch(rgb)[0, 0], [-2, -20, 0])
    np.testing.assert_allclose(mean_stretch(rgb, per_channel=False)[0, 0], [1 - 160 / 12, 10 - 160 / 12, 7 - 160 / 12])
    tiles, _ = cut_tiles(tumour, 75, edge="error")
    stretched = mean_stretch(tiles)  # each tile its own mean
    np.testing.assert_allclose(stretched.mean(axis=(1, 2)), 0, atol=1e-3)
    np.testing.assert_allclose(stretched + tiles.astype(np.float32).mean(axis=(1, 2), keepdims=True), tiles,
                               atol=1e-3)


def test_aggregate_tiles_by_hand():
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.8, 0.2]])
    mean, label = aggregate_tile_probabilities(probabilities)
    np.testing.assert_allclose(mean, [0.7, 0.3])
    assert label == 0
    votes, _ = aggregate_tile_probabilities(probabilities, method="vote")
    np.testing.assert_allclose(votes, [2 / 3, 1 / 3])


# ---- loss and net --------------------------------------------------------------------------

def test_squared_error_by_hand():
    logits = torch.tensor([[0.0, 0.0], [np.log(3.0), 0.0]])  # p = (1/2, 1/2), (3/4, 1/4)
    target = torch.tensor([0, 1])
    # eq. 4: 1/q sum_j 1/2 (y_j - p_j)^2 with q = 2: 0.125 and 1/4 * (0.5625 + 0.5625) = 0.28125
    assert build_loss("squared_error")(logits, target).item() == pytest.approx((0.125 + 0.28125) / 2)


def test_paper_shape_net():
    torch.manual_seed(0)
    net = build_net("meng_microscopy").eval()
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 16, 16, 8, 8] and all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.features) == 5
    assert net.flat_features == 8 * 16 * 16 == 2048
    with torch.no_grad():
        image = torch.randn(1, 3, 512, 512)
        assert net(image=image).shape == (1, 2) and net.embed(image=image).shape == (1, 2048)
    assert build_net("meng_microscopy", fc_hidden=0).embedding_dim == 2048
    with pytest.raises(HCCInputError, match="tile"):
        net(image=torch.zeros(1, 3, 256, 256))


# ---- real H&E tiles: a few training steps ---------------------------------------------------

def _real_tiles(tile_size):
    xs, ys, owner = [], [], []
    for label, folder in enumerate(("01_TUMOR", "02_STROMA")):
        for path in _files(folder):
            tiles, _ = prepare_tiles(read_microscopy_image(path), tile_size, edge="error")
            xs.append(tiles)
            ys += [label] * len(tiles)
            owner += [path.name] * len(tiles)
    return torch.from_numpy(np.concatenate(xs)), torch.tensor(ys), np.array(owner)


@pytest.mark.parametrize("loss_name", ["squared_error", "cross_entropy"])
def test_real_he_training_loss_decreases(loss_name):
    image, target, owner = _real_tiles(75)  # 6 real images -> 24 mean-stretched 75 x 75 tiles
    assert image.shape == (24, 3, 75, 75)
    torch.manual_seed(0)
    net = build_net("meng_microscopy", tile_size=75)
    loss_fn = build_loss(loss_name)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        optimiser.zero_grad()
        loss = loss_fn(net(image=image), target)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert np.mean(losses[-2:]) < 0.5 * np.mean(losses[:2]), losses
    # whole-image prediction: mean of each image's tile probabilities
    net.eval()
    with torch.no_grad():
        probabilities = net(image=image).softmax(1).numpy()
        embedding = net.embed(image=image)
    assert embedding.shape == (24, 2048)
    for name in np.unique(owner):
        image_probabilities, label = aggregate_tile_probabilities(probabilities[owner == name])
        assert image_probabilities.sum() == pytest.approx(1.0) and label in (0, 1)


def test_real_he_whole_tile_net():
    """The builder adapts to the 150 x 150 H&E tiles with the same layer structure."""
    image, target, _ = _real_tiles(150)
    net = build_net("meng_microscopy", tile_size=150)
    assert net.flat_features == 8 * 4 * 4  # 150 -> 75 -> 37 -> 18 -> 9 -> 4
    assert net(image=image).shape == (6, 2)
