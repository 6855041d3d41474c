"""Small real 2D inputs for the fusion-net tests: lesion-centred crops of the real
pyradiomics test cases (../shared/data/lesions), neighbouring slices stacked as channels."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LESIONS = DATA / "lesions"


def need_lesions():
    if not (LESIONS / "lung1_image.nrrd").is_file():
        pytest.skip(f"real lesion data not found under {LESIONS} (needs ../shared/data)")


def lesion_channels(case, channels, size):
    """channels x size x size float32: `channels` axial slices centred on the lesion, cropped
    to the lesion's in-plane box (+ 25% margin), z-scored, resized bilinearly."""
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(LESIONS / f"{case}_image.nrrd")))
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(LESIONS / f"{case}_label.nrrd"))) > 0
    zs, ys, xs = np.nonzero(label)
    zc = int(np.round(zs.mean()))
    half = max(ys.max() - ys.min(), xs.max() - xs.min()) * 0.625 + 4
    yc, xc = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    y0, y1 = int(max(0, yc - half)), int(min(image.shape[1], yc + half + 1))
    x0, x1 = int(max(0, xc - half)), int(min(image.shape[2], xc + half + 1))
    offsets = np.arange(channels) - channels // 2
    zidx = np.clip(zc + offsets, 0, image.shape[0] - 1)
    crop = image[zidx, y0:y1, x0:x1].astype(np.float32)
    crop = (crop - crop.mean()) / (crop.std() + 1e-6)
    tensor = torch.from_numpy(crop)[None]
    resized = torch.nn.functional.interpolate(tensor, size=(size, size), mode="bilinear",
                                              align_corners=False)
    return resized[0]


def batch(cases, channels, size):
    """B x channels x size x size real batch, one sample per case."""
    return torch.stack([lesion_channels(c, channels, size) for c in cases])
