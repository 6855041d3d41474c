"""Liang et al. 2018 (ResGL-BDLSTM): pace rule, patch sampler, net variants, loss, label map + SVM.

Real-data training uses the pyradiomics lung CT cases (../shared/data/lesions). Only
single-phase CT exists there: the three "phases" (NC, ART, PV) are a STAND-IN made of
three neighbouring axial slices (z-1, z, z+1) of the same scan, and the two "classes"
are the two patients' tumours. This exercises the real pipeline on real pixels; it
says nothing about focal-liver-lesion classification.
"""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.methods.liang2018.label_map_svm import LabelMapSVM, class_proportions, label_map, lesion_features
from HCCAnalysisLib.losses import build_loss
from HCCAnalysisLib.losses.centre import CentreLoss, ResGLLoss, inter_loss
from HCCAnalysisLib.nets import build_net
from HCCAnalysisLib.methods.liang2018.patches import pace, patch_centres, sample_lesion_patches

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lesions"
TINY = {"width": 4, "blocks": 1, "phase_features": 16, "lstm_hidden": 8}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- eq. 1: the pace rule -------------------------------------------------------------

@pytest.mark.parametrize("w, h, expected", [
    (1, 1, 1),
    (8, 16, 1),     # 128 = epsilon: not above it -> 1
    (10, 13, 1),    # 130 / 128 -> sqrt 1.008 -> 1
    (20, 20, 1),    # 400 / 128 = 3.125 -> 1.77 -> 1
    (16, 32, 2),    # 512 / 128 = 4 -> exactly 2
    (32, 36, 3),    # 1152 / 128 = 9 -> exactly 3
    (40, 40, 3),    # 1600 / 128 = 12.5 -> 3.54 -> 3
    (100, 64, 7),   # 6400 / 128 = 50 -> 7.07 -> 7
    (45, 256, 9),   # 11520 / 128 = 90 -> 9.49 -> 9
])
def test_pace_hand_worked(w, h, expected):
    assert pace(w, h) == expected


def test_pace_other_epsilon_and_bad_input():
    assert pace(10, 10, epsilon=25) == 2  # 100 / 25 = 4
    with pytest.raises(HCCInputError):
        pace(0, 5)


# ---- the sampler on a hand-made lesion --------------------------------------------------

def _ramp_phases(shape=(50, 60), n=3):
    """Phase i holds value 1000 * i + 100 * y + x, so every pixel says where it came from."""
    y, x = np.mgrid[:shape[0], :shape[1]]
    return [(1000.0 * i + 100 * y + x).astype(np.float32) for i in range(n)]


def test_sampler_training_pace_and_test_pace():
    phases = _ramp_phases()
    mask = np.zeros((50, 60), np.uint8)
    mask[5:45, 10:50] = 1  # 40 x 40 box: pace 3 when training
    train = sample_lesion_patches(phases, mask, training=True, window=None, local_size=16, global_size=32)
    test = sample_lesion_patches(phases, mask, training=False, window=None, local_size=16, global_size=32)
    assert train.paces.tolist() == [3] and test.paces.tolist() == [1]
    assert len(train) == 14 * 14 and len(test) == 40 * 40  # ceil(40 / 3) = 14 grid lines per axis
    assert set(np.unique(np.diff(np.unique(train.centres[:, 1])))) == {3}
    # each raw patch is the 7 x 7 neighbourhood of its centre, phase by phase, in phase order
    z, y, x = train.centres[17]
    for i in range(3):
        expected = phases[i][y - 3:y + 4, x - 3:x + 4]
        np.testing.assert_array_equal(train.raw_local[17, i], expected)
    inputs = train.inputs([0, 17])
    assert inputs["local"].shape == (2, 3, 1, 16, 16) and inputs["global_roi"].shape == (2, 3, 1, 32, 32)
    # the global ROI is the lesion box resized: its mean stays that of the box
    for i in range(3):
        assert abs(train.global_roi[0, i, 0].mean() - phases[i][5:45, 10:50].mean()) < 1.0


def test_patch_grid_by_hand():
    mask = np.zeros((9, 8), np.uint8)
    mask[2:7, 1:6] = 1  # box rows 2..6, cols 1..5
    mask[2, 1] = 0  # a grid point off the lesion is dropped
    centres = patch_centres(mask, 2)  # rows 2, 4, 6 x cols 1, 3, 5, minus (2, 1)
    expected = [(y, x) for y in (2, 4, 6) for x in (1, 3, 5) if (y, x) != (2, 1)]
    assert [tuple(c) for c in centres] == expected


def test_thin_lesion_missed_by_the_grid_falls_back_to_pace_1():
    mask = np.zeros((40, 40), np.uint8)
    mask[np.arange(5, 35), np.arange(34, 4, -1)] = 1  # anti-diagonal: box 30 x 30 -> pace 2, grid hits nothing
    patches = sample_lesion_patches(_ramp_phases((40, 40)), mask, training=True, window=None)
    assert patches.paces.tolist() == [1] and len(patches) == 30


def test_sampler_keeps_only_lesion_pixels_and_shares_the_roi():
    mask = np.zeros((30, 30), np.uint8)
    yy, xx = np.mgrid[:30, :30]
    mask[(yy - 15) ** 2 + (xx - 15) ** 2 <= 36] = 1  # a disc: box corners are not lesion
    patches = sample_lesion_patches(_ramp_phases((30, 30)), mask, training=False, window=None)
    assert len(patches) == int(mask.sum())
    assert np.all(mask[patches.centres[:, 1], patches.centres[:, 2]] == 1)
    samples = patches.samples()
    assert samples[0]["local"].shape == (3, 1, 64, 64) and samples[0]["global_roi"].shape == (3, 1, 128, 128)
    assert samples[0]["global_roi"] is samples[-1]["global_roi"] or np.shares_memory(
        samples[0]["global_roi"], samples[-1]["global_roi"])


def test_sampler_rejects_bad_input():
    mask = np.zeros((20, 20), np.uint8)
    with pytest.raises(HCCInputError, match="empty"):
        sample_lesion_patches(_ramp_phases((20, 20)), mask, training=True)
    mask[5:10, 5:10] = 1
    with pytest.raises(HCCInputError, match="shape"):
        sample_lesion_patches(_ramp_phases((20, 21)), mask, training=True)
    bad = _ramp_phases((20, 20))
    bad[1][3, 3] = np.nan
    with pytest.raises(HCCInputError, match="NaN"):
        sample_lesion_patches(bad, mask, training=True)


# ---- nets ------------------------------------------------------------------------------

def test_paper_shape_forward_all_heads():
    torch.manual_seed(0)
    net = build_net("resgl_bdlstm").eval()  # paper sizes: 19-conv pathways, 64 / 128 inputs
    with torch.no_grad():
        out = net(local=torch.rand(2, 3, 1, 64, 64), global_roi=torch.rand(2, 3, 1, 128, 128))
    assert out["logits"].shape == out["local_logits"].shape == out["global_logits"].shape == (2, 4)
    assert out["features"].shape == (2, 128)
    convs = [m for m in net.phases[0].local.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 19
    # no weight sharing between the phase blocks
    assert net.phases[0].local.stem[0].weight.data_ptr() != net.phases[1].local.stem[0].weight.data_ptr()


@pytest.mark.parametrize("variant, heads, dim", [
    ("full", {"logits", "local_logits", "global_logits", "features"}, 16),
    ("no_lstm", {"logits", "local_logits", "global_logits", "features"}, 3 * 16),
    ("local_only", {"logits", "features"}, 3 * 16),
])
def test_ablation_variants_build_and_train(variant, heads, dim):
    torch.manual_seed(0)
    net = build_net("resgl_bdlstm", variant=variant, **TINY)
    inputs = {"local": torch.rand(4, 3, 1, 16, 16), "global_roi": torch.rand(4, 3, 1, 32, 32)}
    out = net(**inputs)
    assert set(out) == heads and out["features"].shape == (4, dim)
    assert torch.equal(net.embed(**inputs), out["features"])
    loss = ResGLLoss()(out, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss)


def test_net_rejects_wrong_shapes():
    net = build_net("resgl_bdlstm", **TINY)
    with pytest.raises(HCCInputError, match="B x 3 x 1"):
        net(local=torch.rand(2, 2, 1, 16, 16), global_roi=torch.rand(2, 2, 1, 32, 32))
    with pytest.raises(HCCInputError, match="variant"):
        build_net("resgl_bdlstm", variant="lstm_only")


# ---- losses ----------------------------------------------------------------------------

def test_centre_update_matches_eq5_by_hand():
    centre = CentreLoss(num_classes=3, feature_dim=2, alpha=0.5)
    centre.centres.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]))
    features = torch.tensor([[3.0, 0.0], [1.0, 4.0], [0.0, 0.0]], requires_grad=True)
    target = torch.tensor([0, 0, 1])
    loss = centre(features, target)
    # eq. 4 with the centres before the update: 1/2 (4 + 16 + 4)
    assert loss.item() == pytest.approx(12.0)
    # eq. 5: class 0: sum(c - f) = (-2, -4), / (1 + 2), c -= 0.5 * that -> (4/3, 2/3)
    #        class 1: (0, 2) / (1 + 1) = (0, 1), c -> (0, 1.5); class 2: absent, unchanged
    expected = torch.tensor([[4 / 3, 2 / 3], [0.0, 1.5], [5.0, 5.0]])
    torch.testing.assert_close(centre.centres, expected)
    loss.backward()  # gradient of eq. 4 flows into the features only: f - c (old centres)
    torch.testing.assert_close(features.grad, torch.tensor([[2.0, 0.0], [0.0, 4.0], [0.0, -2.0]]))
    centre.eval()
    centre(features.detach(), target)
    torch.testing.assert_close(centre.centres, expected)  # frozen in eval mode


def test_inter_loss_weights_by_hand():
    target = torch.tensor([0])
    main = torch.tensor([[0.0, 0.0]], requires_grad=True)  # CE = ln 2
    local = torch.tensor([[math.log(3.0), 0.0]], requires_grad=True)  # p0 = 3/4: CE = ln 4/3
    glob = torch.tensor([[0.0, math.log(3.0)]], requires_grad=True)  # p0 = 1/4: CE = ln 4
    output = {"logits": main, "local_logits": local, "global_logits": glob, "features": torch.zeros(1, 2)}
    loss = inter_loss(output, target)
    assert loss.item() == pytest.approx(0.5 * math.log(2) + 0.25 * math.log(4 / 3) + 0.25 * math.log(4))
    loss.backward()
    # each head's gradient is its weight times the plain cross-entropy gradient (p - y)
    torch.testing.assert_close(main.grad, 0.5 * torch.tensor([[-0.5, 0.5]]))
    torch.testing.assert_close(local.grad, 0.25 * torch.tensor([[-0.25, 0.25]]))
    torch.testing.assert_close(glob.grad, 0.25 * torch.tensor([[-0.75, 0.75]]))


def test_total_loss_adds_lambda_times_centre_loss():
    features = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    logits = torch.zeros(2, 4)
    output = {"logits": logits, "local_logits": logits, "global_logits": logits, "features": features}
    target = torch.tensor([1, 2])
    plain = build_loss("resgl_inter_centre", use_centre=False)(output, target)
    assert plain.item() == pytest.approx(math.log(4))
    # centres start at zero: intra = 1/2 (1 + 4 + 9) = 7, lambda = 0.1
    full = build_loss("resgl_inter_centre")(output, target)
    assert full.item() == pytest.approx(math.log(4) + 0.1 * 7.0)


# ---- label map and SVM ------------------------------------------------------------------

def test_label_map_and_proportions():
    centres = np.array([[0, 1, 1], [0, 1, 2], [0, 2, 1], [1, 0, 0]])
    predicted = np.array([2, 2, 0, 3])
    lm = label_map(centres, predicted, (2, 3, 3))
    assert lm[0, 1, 1] == 2 and lm[1, 0, 0] == 3 and (lm == -1).sum() == 18 - 4
    np.testing.assert_allclose(class_proportions(lm, 4), [0.25, 0.0, 0.5, 0.25])  # eq. 8
    with pytest.raises(HCCInputError, match="outside"):
        label_map([[0, 3, 0]], [1], (2, 3, 3))


def test_svm_tuned_on_patient_validation_split():
    """Known ground truth: lesions whose patch votes lean to their own class (Dirichlet draws)."""
    rng = np.random.default_rng(0)

    def lesions(n_patients, first_patient):
        rows = []
        for p in range(n_patients):
            for c in range(4):
                alpha = np.ones(4)
                alpha[c] = 4.0
                rows.append((rng.dirichlet(alpha), c, f"P{first_patient + p}"))
        return [np.array(v) for v in zip(*rows)]

    x, y, groups = lesions(12, 0)
    validation = np.isin(groups, [f"P{i}" for i in range(9, 12)])
    svm = LabelMapSVM(num_classes=4).fit(x, y, groups, validation=validation)
    assert svm.best_params is not None
    x_test, y_test, _ = lesions(10, 100)
    assert (svm.predict(x_test) == y_test).mean() > 0.55  # chance is 0.25
    proba = svm.predict_proba(x_test)
    assert proba.shape == (40, 4) and np.allclose(proba.sum(axis=1), 1)
    LabelMapSVM(num_classes=4, n_splits=3).fit(x, y, groups)  # group-aware k-fold path
    leaky = validation.copy()
    leaky[0] = True  # one lesion of P0 in validation, P0's others in training
    with pytest.raises(HCCInputError, match="both"):
        LabelMapSVM(num_classes=4).fit(x, y, groups, validation=leaky)


# ---- real CT: a few training steps -------------------------------------------------------

def _real_lesion(name, training, **kwargs):
    sitk = pytest.importorskip("SimpleITK")
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / f"{name}_image.nrrd"))).astype(np.float32)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / f"{name}_label.nrrd")))
    # the lesion's slab plus one slice each side, so that z - 1 and z + 1 exist for every lesion slice
    zs = np.nonzero(mask.any(axis=(1, 2)))[0]
    slab = slice(max(zs[0] - 1, 0), zs[-1] + 2)
    image, mask = image[slab], mask[slab]
    # STAND-IN phases: slices z-1, z, z+1 as "NC, ART, PV" (only single-phase CT exists)
    phases = [np.roll(image, 1, axis=0), image, np.roll(image, -1, axis=0)]
    return sample_lesion_patches(phases, mask, training=training, **kwargs), mask


@pytest.fixture(scope="module")
def trained_tiny():
    if not (DATA / "lung1_image.nrrd").is_file():
        pytest.skip(f"real CT lesions not found at {DATA} (../shared/data relative to the repository)")
    batches = [(_real_lesion(name, True, local_size=16, global_size=32)[0], c)
               for c, name in enumerate(("lung1", "lung2"))]
    inputs = [b.inputs() for b, _ in batches]
    local = torch.from_numpy(np.concatenate([i["local"] for i in inputs]))
    roi = torch.from_numpy(np.concatenate([i["global_roi"] for i in inputs]))
    target = torch.from_numpy(np.concatenate([np.full(len(b), c) for b, c in batches]))
    torch.manual_seed(0)
    net = build_net("resgl_bdlstm", **TINY)
    loss_fn = build_loss("resgl_inter_centre")
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        optimiser.zero_grad()
        loss = loss_fn(net(local=local, global_roi=roi), target)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return net.eval(), losses, local, roi, batches


def test_real_ct_training_loss_decreases(trained_tiny):
    net, losses, local, roi, batches = trained_tiny
    assert all(b.paces[0] > 1 for b, _ in batches)  # real lesion boxes exceed epsilon: pace rule active
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


def test_lstm_uses_phase_order(trained_tiny):
    net, _, local, roi, _ = trained_tiny
    with torch.no_grad():
        forward = net(local=local[:16], global_roi=roi[:16])["logits"]
        backward = net(local=local[:16].flip(1), global_roi=roi[:16].flip(1))["logits"]
        assert (forward - backward).abs().max() > 1e-3
        # isolate the LSTM: the same phase-feature sequence, reversed, gives another patch feature
        _, _, joined = net._phase_features(local[:16], roi[:16])
        assert (net._features(joined) - net._features(joined[::-1])).abs().max() > 1e-3
        # a palindrome (a, b, a) reversed is the same sequence: no change (nothing random)
        palindrome = [joined[0], joined[1], joined[0]]
        torch.testing.assert_close(net._features(palindrome), net._features(palindrome[::-1]))


def test_real_ct_label_map_at_test_pace(trained_tiny):
    net = trained_tiny[0]
    patches, mask = _real_lesion("lung1", False, local_size=16, global_size=32)
    z = patches.centres[0, 0]
    assert len(patches) == int(mask[z].sum())  # pace 1: one patch per lesion pixel of the slice
    with torch.no_grad():
        inputs = {k: torch.from_numpy(v) for k, v in patches.inputs().items()}
        predicted = net(**inputs)["logits"].argmax(1).numpy()
    lm = label_map(patches.centres, predicted, patches.mask_shape)
    assert np.array_equal(lm[z] >= 0, mask[z] > 0)
    beta = lesion_features(patches.centres, predicted, patches.mask_shape, 4)
    assert beta.shape == (4,) and beta.sum() == pytest.approx(1.0)


def test_real_ct_paper_shape_forward():
    if not (DATA / "lung1_image.nrrd").is_file():
        pytest.skip(f"real CT lesions not found at {DATA}")
    patches, _ = _real_lesion("lung1", True)  # paper sizes: 64 x 64 patches, 128 x 128 ROI
    inputs = {k: torch.from_numpy(v) for k, v in patches.inputs([0, 1]).items()}
    assert inputs["local"].shape == (2, 3, 1, 64, 64) and inputs["global_roi"].shape == (2, 3, 1, 128, 128)
    torch.manual_seed(0)
    with torch.no_grad():
        probabilities = build_net("resgl_bdlstm").eval()(**inputs)["logits"].softmax(1)
    assert torch.allclose(probabilities.sum(1), torch.ones(2))
