"""The ImageNet-pretrained backbones (Zhen's Inception-ResNet-V2, Wang's ResNet-50) see their
inputs normalised with timm's mean/std for that model (issue 12), not the samplers' [0, 1]:
checked on the tensor that reaches the backbone's first convolution (a forward pre-hook), on a
real CT slice of the bundled demo cohort."""

import pytest
import SimpleITK as sitk
import torch

from HCCAnalysisLib.nets.fusion import build_wang, build_zhen

pytest.importorskip("timm")

# timm's pretrained_cfg values, written out here so the test does not read them from the code.
RESNET50 = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
INCEPTION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@pytest.fixture(scope="module")
def real_slices(sample_data):
    """A [0, 1] batch of two axial CT slices (lung1), 96 x 96."""
    volume = sitk.GetArrayFromImage(sitk.ReadImage(str(sample_data / "demo-cohort" / "lung1" / "image.nrrd")))
    volume = torch.as_tensor(volume, dtype=torch.float32)
    middle = volume.shape[0] // 2
    slices = volume[[middle - 2, middle + 2]]
    slices = (slices - slices.min()) / (slices.max() - slices.min())
    return torch.nn.functional.interpolate(slices[:, None], size=(96, 96), mode="bilinear", align_corners=False)


def first_conv_input(net, first_conv, image, **extra):
    """The tensor the backbone's first convolution receives for `image`."""
    seen = []
    handle = net.backbone.get_submodule(first_conv).register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        net.eval()(image, **extra)
    handle.remove()
    return seen[0]


def expected(image, stats):
    mean, std = stats
    index = torch.arange(image.shape[1]) % 3
    m = torch.tensor(mean)[index].reshape(1, -1, 1, 1)
    s = torch.tensor(std)[index].reshape(1, -1, 1, 1)
    return (image - m) / s


@pytest.mark.parametrize("channels", [3, 6])
def test_wang_backbone_sees_imagenet_normalised_input(real_slices, channels, one_torch_thread):
    image = real_slices.expand(-1, channels, -1, -1).contiguous()
    net = build_wang(variant="image", in_channels=channels)
    seen = first_conv_input(net, "conv1", image)
    torch.testing.assert_close(seen, expected(image, RESNET50))
    assert not torch.allclose(seen, image)  # no longer the [0, 1] input
    assert seen.min() < 0 < seen.max()


def test_zhen_backbone_sees_imagenet_normalised_input(real_slices, one_torch_thread):
    image = real_slices.expand(-1, 6, -1, -1).contiguous()
    net = build_zhen(in_channels=6, num_classes=7, clinical_dim=0)
    seen = first_conv_input(net, "conv2d_1a.conv", image)
    torch.testing.assert_close(seen, image * 2 - 1)  # (x - 0.5) / 0.5
    torch.testing.assert_close(seen, expected(image, INCEPTION))


def test_normalisation_is_fixed_and_leaves_state_and_saliency_unchanged(real_slices, one_torch_thread):
    net = build_wang(variant="d", clinical_dim=9)
    assert not [name for name in net.state_dict() if "normalise" in name]  # model packages unchanged
    assert not [name for name, _ in net.named_parameters() if "normalise" in name]  # nothing trained
    image = real_slices.expand(-1, 3, -1, -1).clone().requires_grad_(True)
    net.eval()(image, clinical=torch.ones(2, 9)).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0  # gradients reach the [0, 1] input
