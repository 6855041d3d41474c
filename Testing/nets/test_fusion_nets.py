"""Zhen 2020 / Wang 2020 networks: shapes at the papers' inputs, the joint loss against a
hand computation, local pretrained weights, and real training steps on real lesion crops."""

import csv
import math

import numpy as np
import pytest
import torch

from fusion_test_data import DATA, batch, need_lesions
from HCCAnalysisLib.clinical.schemas import asaur_derivable_columns, wang2020_vector_from_asaur
from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.losses import build_loss
from HCCAnalysisLib.losses.joint import JointLoss
from HCCAnalysisLib.nets import build_net
from HCCAnalysisLib.nets.fusion import build_wang, build_wang_clinical, build_zhen


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread


# Zhen 2020 Models A-G: (input sequences, classes, clinical vector length: Zhen schema = 34)
ZHEN_MODELS = {"A": (6, 7, 0), "B": (3, 7, 0), "C": (6, 2, 0), "D": (3, 2, 0),
               "E": (6, 3, 0), "F": (6, 3, 34), "G": (3, 3, 34)}


@pytest.mark.parametrize("model", sorted(ZHEN_MODELS))
def test_zhen_models_at_299(model):
    channels, classes, clinical_dim = ZHEN_MODELS[model]
    torch.manual_seed(0)
    net = build_net("zhen_inception_resnet_v2", in_channels=channels, num_classes=classes,
                    clinical_dim=clinical_dim).eval()
    inputs = {"image": torch.randn(1, channels, 299, 299)}
    if clinical_dim:
        inputs["clinical"] = torch.randint(0, 2, (1, clinical_dim)).float()
    with torch.no_grad():
        features = net.embed(**inputs)
        logits = net.classifier(features)
    assert logits.shape == (1, classes)
    assert features.shape == (1, 1536 + clinical_dim)  # clinical joins right before the FC
    if clinical_dim:
        assert torch.equal(features[:, 1536:], inputs["clinical"])


def test_zhen_input_errors():
    net = build_zhen(in_channels=3, num_classes=3, clinical_dim=34).eval()
    with pytest.raises(HCCInputError, match="has 6 channels, the net was built for 3"):
        net(image=torch.zeros(1, 6, 75, 75), clinical=torch.zeros(1, 34))
    with pytest.raises(HCCInputError, match="needs 'clinical'"):
        net(image=torch.zeros(1, 3, 75, 75))
    with pytest.raises(HCCInputError, match="NaN"):
        net(image=torch.zeros(1, 3, 75, 75), clinical=torch.full((1, 34), float("nan")))
    with pytest.raises(HCCInputError, match="'clinical' must be 1 x 34, got \\(2, 34\\)"):
        net(image=torch.zeros(1, 3, 75, 75), clinical=torch.zeros(2, 34))


# The paper does not give its ROI size: 224 x 224 (ImageNet pretraining) for the image model
# and fusion D joint; 64 x 64 for the others (global pooling: same output shapes, less CPU).
@pytest.mark.parametrize("variant, joint, embed_dim, size", [
    ("image", False, 2048, 224), ("a", False, 2048 + 9, 64), ("b", False, 64 + 9, 64),
    ("c", False, 64 + 8 * 9, 64), ("d", False, 64 + 64, 64), ("d", True, 64 + 64, 224)])
def test_wang_variants(variant, joint, embed_dim, size):
    torch.manual_seed(0)
    net = build_net("wang_fusion", variant=variant, joint=joint).eval()
    image = torch.randn(2, 3, size, size)  # NC/ART/PV ROIs stacked as channels
    clinical = torch.randint(0, 2, (2, 9)).float()
    with torch.no_grad():
        out = net(image=image, clinical=clinical)
        assert net.embed(image=image, clinical=clinical).shape == (2, embed_dim)
    if joint:
        assert set(out) == {"logits", "image_logits", "clinical_logits"}
        assert all(v.shape == (2, 2) for v in out.values())
    else:
        assert isinstance(out, torch.Tensor) and out.shape == (2, 2)


def test_wang_rejects_bad_configurations():
    with pytest.raises(HCCInputError, match="unknown Wang 2020 variant 'e'"):
        build_wang(variant="e")
    with pytest.raises(HCCInputError, match="variant 'image' has none"):
        build_wang(variant="image", joint=True)
    with pytest.raises(HCCInputError, match="has no clinical pathway"):
        build_wang_clinical("image")


def _ce(logits, target):
    """Cross-entropy by hand: mean over rows of log(sum exp) - logit of the true class."""
    total = 0.0
    for row, t in zip(logits, target):
        total += math.log(sum(math.exp(v) for v in row)) - row[t]
    return total / len(target)


def test_joint_loss_matches_hand_computation():
    fused = [[2.0, -1.0], [0.5, 0.3], [-1.2, 0.7]]
    image = [[0.1, 0.2], [1.5, -0.5], [0.0, 0.0]]
    clinical = [[-0.3, 0.9], [0.2, 0.2], [2.5, -2.0]]
    target = [0, 1, 1]
    output = {"logits": torch.tensor(fused), "image_logits": torch.tensor(image),
              "clinical_logits": torch.tensor(clinical)}
    expected = 0.25 * _ce(image, target) + 0.25 * _ce(clinical, target) + 0.5 * _ce(fused, target)
    got = build_loss("joint")(output, torch.tensor(target))
    assert float(got) == pytest.approx(expected, rel=1e-6)
    weighted = JointLoss(image_weight=1.0, clinical_weight=0.0, fused_weight=2.0)
    assert float(weighted(output, torch.tensor(target))) == pytest.approx(
        _ce(image, target) + 2 * _ce(fused, target), rel=1e-6)
    with pytest.raises(HCCInputError, match="build the fusion net with joint=True"):
        JointLoss()(torch.tensor(fused), torch.tensor(target))
    with pytest.raises(HCCInputError, match="must be >= 0"):
        JointLoss(image_weight=-1)


def test_local_resnet50_weights_and_stem_adaptation(tmp_path):
    import timm
    import torchvision
    from safetensors.torch import save_file

    # An ImageNet-layout state dict (3 input channels, 1000-class head), as torchvision saves it.
    reference = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    net = build_wang(variant="image", pretrained_path=path)
    assert net.weights_report["dropped"] == ["fc.bias", "fc.weight"]
    assert torch.equal(net.backbone.layer4[2].conv3.weight, reference.layer4[2].conv3.weight)
    # Six channels: RGB kernels repeated over channels 0-2 and 3-5, scaled by 3/6.
    six = build_wang(variant="d", in_channels=6, pretrained_path=path)
    stem = six.backbone.conv1.weight
    assert stem.shape[1] == 6 and "3 -> 6 channels" in six.weights_report["stem"]
    assert torch.allclose(stem[:, :3], reference.conv1.weight * 0.5)
    assert torch.allclose(stem[:, 3:], reference.conv1.weight * 0.5)
    # The same weights as safetensors.
    st = tmp_path / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet50").state_dict().items()}, st)
    assert build_wang(variant="a", pretrained_path=st).weights_report["stem"] == "unchanged"


def test_wrong_weight_files_are_refused(tmp_path):
    garbage = tmp_path / "weights.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(HCCInputError, match="cannot read pretrained weights"):
        build_wang(variant="image", pretrained_path=garbage)
    with pytest.raises(HCCInputError, match="not found"):
        build_wang(variant="image", pretrained_path=tmp_path / "missing.pth")
    pickled = tmp_path / "object.pth"
    torch.save({"net": torch.nn.Linear(2, 2)}, pickled)  # a module needs pickle: refused
    with pytest.raises(HCCInputError, match="cannot read pretrained weights"):
        build_wang(variant="image", pretrained_path=pickled)
    other = tmp_path / "small.pth"
    torch.save(build_wang_clinical("d", 9).state_dict(), other)
    with pytest.raises(HCCInputError, match="do not fit resnet50.*missing keys"):
        build_wang(variant="image", pretrained_path=other)


def test_local_inception_resnet_v2_weights(tmp_path):
    import timm

    reference = timm.create_model("inception_resnet_v2", pretrained=False)  # 3 ch, 1000 classes
    path = tmp_path / "irv2.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    net = build_zhen(in_channels=3, num_classes=7, pretrained_path=path)
    assert net.weights_report["dropped"] == ["classif.bias", "classif.weight"]
    assert torch.equal(net.backbone.conv2d_7b.conv.weight, reference.conv2d_7b.conv.weight)
    torch.save(timm.create_model("resnet18").state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(HCCInputError, match="do not fit timm inception_resnet_v2"):
        build_zhen(in_channels=6, pretrained_path=tmp_path / "resnet.pth")


def _params(net):
    return {k: v.detach().clone() for k, v in net.named_parameters()}


def test_inception_resnet_v2_trains_on_real_slices():
    """Model A configuration (6 channels, 7 classes), 299 x 299, batch 2: one Adam step, then
    the loss on the same batch must drop and every parameter stay finite."""
    need_lesions()
    torch.manual_seed(0)
    images = batch(["lung1", "lung2"], channels=6, size=299)
    target = torch.tensor([4, 5])
    net = build_zhen(in_channels=6, num_classes=7)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-4)
    before = _params(net)
    loss = build_loss("cross_entropy")(net(image=images), target)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    with torch.no_grad():  # train mode still: the same batch statistics as the step used
        after_loss = float(build_loss("cross_entropy")(net(image=images), target))
    print(f"\nIRv2 real-slice loss: {loss.item():.4f} -> {after_loss:.4f}")
    after = _params(net)
    assert np.isfinite(after_loss) and after_loss < loss.item()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert not torch.equal(before["backbone.conv2d_1a.conv.weight"],
                           after["backbone.conv2d_1a.conv.weight"])


def test_resnet50_fusion_d_joint_trains_on_real_slices():
    """Fusion D with joint loss: real lesion crops (3 slices as the 3 channels, 96 x 96)
    paired with the derivable Wang bits of four real asaur patients (the pairing is
    arbitrary: no public data set has both)."""
    need_lesions()
    asaur = DATA / "clinical" / "asaur_hepatoCellular.csv"
    if not asaur.is_file():
        pytest.skip(f"real clinical data not found at {asaur}")
    with open(asaur, newline="") as handle:
        rows = list(csv.DictReader(handle))[:4]
    columns = asaur_derivable_columns()
    clinical = torch.from_numpy(np.stack([wang2020_vector_from_asaur(r)[columns] for r in rows]))
    torch.manual_seed(0)
    images = batch(["lung1", "lung2", "brain1", "brain2"], channels=3, size=96)
    target = torch.tensor([0, 1, 1, 0])
    net = build_wang(variant="d", clinical_dim=4, joint=True)
    loss_fn = build_loss("joint")
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-4)
    before = _params(net)
    losses = []
    for _ in range(2):
        loss = loss_fn(net(image=images, clinical=clinical), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(float(loss_fn(net(image=images, clinical=clinical), target)))
    print(f"\nResNet-50 fusion D joint real-slice losses: {', '.join(f'{v:.4f}' for v in losses)}")
    after = _params(net)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    for name in ("backbone.conv1.weight", "image_head.weight", "clinical.pathway.layers.0.weight",
                 "clinical.head.weight", "classifier.weight"):
        assert not torch.equal(before[name], after[name]) and torch.isfinite(after[name]).all()
