"""ResNet20+SPP (Jia et al. 2019) and the authors' released weights.

Reference numbers in `reference/jia2019_logits.json` come from running the authors'
own model code (xyj77/Multi-scale-ResNet) on the same inputs; see
`reference/README-jia2019.md`.
"""

import gzip
import hashlib
import json
import pathlib
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from HCCAnalysisLib.errors import HCCInputError
from HCCAnalysisLib.nets import build_net
from HCCAnalysisLib.nets.jia2019_weights import from_jia2019, load_jia2019_file, transfer_pretrained
from HCCAnalysisLib.nets.resnet_spp import build_resnet20, spatial_pyramid_max_pool

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
WEIGHTS = SHARED / "pretrained-jia2019"
MNIST = SHARED / "mnist" / "mnist_5k.csv.gz"
BUNDLED = ROOT / "HCCAnalysisLib" / "methods" / "jia2019" / "weights" / "cifar_resnet_32_dict_withSPP.pkl"
REFERENCE = json.loads((ROOT / "Testing" / "reference" / "jia2019_logits.json").read_text())

needs_weights = pytest.mark.skipif(not WEIGHTS.is_dir(), reason=f"authors' weights not found at {WEIGHTS}")
needs_mnist = pytest.mark.skipif(not MNIST.is_file(), reason=f"MNIST sample not found at {MNIST}")


def random_input(channels):
    torch.manual_seed(0)
    return torch.randn(4, channels, 32, 32)


def mnist_digits(rows):
    """Real MNIST digits prepared as for the authors' weights: bilinear 28->32, MNIST mean/std."""
    table = np.loadtxt(gzip.open(MNIST), delimiter=",", dtype=np.float32)[rows]
    x = torch.from_numpy(table[:, :784].reshape(-1, 1, 28, 28) / 255.0)
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    return (x - 0.1307) / 0.3081, table[:, 784].astype(int)


def run_both_paths(net, x):
    """Logits and embedding via the folded no-grad path and via the autograd path."""
    with torch.no_grad():
        folded = net(image=x), net.embed(x)
    with torch.enable_grad():
        plain = net(image=x).detach(), net.embed(x).detach()
    return folded, plain


def test_spp_gives_320_features_and_other_levels():
    net = build_resnet20().eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert net.features(x).shape == (3, 320)
        assert net(image=x).shape == (3, 2)
        assert net.embed(x).shape == (3, 32)
    wide = build_resnet20(pyramid=(1, 2, 4), embedding_dim=16, num_classes=5).eval()
    with torch.no_grad():
        assert wide.features(torch.randn(2, 3, 40, 40)).shape == (2, 64 * 21)
        assert wide(image=torch.randn(2, 3, 40, 40)).shape == (2, 5)


def test_spp_bins_are_max_pooled_level_by_level_channel_major():
    x = torch.randn(2, 5, 8, 8)
    got = spatial_pyramid_max_pool(x, (1, 2)).numpy()
    a = x.numpy()
    level1 = a.max(axis=(2, 3))
    # 2x2 bins of 4x4 pixels, flattened as (channel, bin row, bin col)
    level2 = a.reshape(2, 5, 2, 4, 2, 4).max(axis=(3, 5)).reshape(2, 20)
    np.testing.assert_array_equal(got, np.concatenate([level1, level2], axis=1))


def test_gap_variant_trains_and_folded_eval_follows_the_weights():
    net = build_net("resnet20_spp", in_channels=1, num_classes=3, embedding_dim=16, pyramid=None)
    assert net.embedding.in_features == 64
    x, target = torch.randn(8, 1, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    optimiser = torch.optim.SGD(net.parameters(), lr=0.1)
    net.eval()
    with torch.no_grad():
        before = net(image=x)  # fills the folded-weight cache
    net.train()
    loss = F.cross_entropy(net(image=x), target)
    loss.backward()
    assert net.conv1.weight.grad.abs().sum() > 0
    optimiser.step()
    net.eval()
    (folded_logits, folded_embedding), (plain_logits, plain_embedding) = run_both_paths(net, x)
    assert not torch.allclose(folded_logits, before)
    torch.testing.assert_close(folded_logits, plain_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(folded_embedding, plain_embedding, atol=1e-4, rtol=1e-4)
    # an in-place change while in eval mode must also reach the folded path
    with torch.no_grad():
        net.layer2[1].bn2.running_mean.add_(0.5)
        changed = net(image=x)
    torch.testing.assert_close(changed, net(image=x).detach(), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(changed, folded_logits)


def test_bad_configuration_and_input_are_refused():
    with pytest.raises(HCCInputError, match="pyramid"):
        build_resnet20(pyramid=(1, 0))
    with pytest.raises(HCCInputError, match="pyramid"):
        build_resnet20(pyramid=2)
    with pytest.raises(HCCInputError, match="num_classes"):
        build_resnet20(num_classes=0)
    with pytest.raises(HCCInputError, match=r"\(B, 3, H, W\)"):
        build_resnet20().eval()(image=torch.randn(2, 1, 32, 32))


def weights_file(name):
    """The authors' file from ../shared, or the bundled copy in a fresh clone; else skip."""
    for path in (WEIGHTS / name, BUNDLED.parent / name):
        if path.is_file():
            return path
    pytest.skip(f"authors' weights {name} not found in {WEIGHTS} (only {BUNDLED.name} is bundled)")


@pytest.mark.parametrize("name", sorted(REFERENCE["models"]))
def test_logits_equal_the_authors_model(name):
    reference = REFERENCE["models"][name]
    path = weights_file(name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == reference["sha256"]
    net = from_jia2019(load_jia2019_file(path))
    assert net.pyramid == (None if reference["spp_scales"] is None else tuple(reference["spp_scales"]))
    assert (net.in_channels, net.embedding.out_features, net.classifier.out_features) == (
        reference["in_channels"], reference["embedding_dim"], reference["num_classes"])
    inputs = {"random": random_input(reference["in_channels"])}
    if "mnist" in reference and MNIST.is_file():
        inputs["mnist"] = mnist_digits(REFERENCE["inputs"]["mnist"]["rows"])[0]
    for kind, x in inputs.items():
        expected = reference[kind]
        assert float(x.double().sum()) == pytest.approx(expected["input_sum"], abs=1e-6)  # same input as theirs
        for logits, embedding in run_both_paths(net, x):
            torch.testing.assert_close(logits, torch.tensor(expected["logits"]), atol=1e-4, rtol=0)
            torch.testing.assert_close(embedding, torch.tensor(expected["embedding"]), atol=1e-4, rtol=0)
            torch.testing.assert_close(torch.log_softmax(logits, 1), torch.tensor(expected["log_softmax"]),
                                       atol=1e-4, rtol=0)
        with torch.no_grad():  # a single image takes the default-layout branch of the folded path
            torch.testing.assert_close(net(image=x[:1]), torch.tensor(expected["logits"][:1]), atol=1e-4, rtol=0)


@needs_weights
@needs_mnist
@pytest.mark.parametrize("name", ["mnist_resnet_2_dict.pkl", "mnist_resnet_2_dict_withSPP.pkl"])
def test_mnist_weights_classify_real_digits(name):
    rows = [digit * 500 + i for digit in range(10) for i in range(20)]  # 20 of each digit, 200 in all
    x, labels = mnist_digits(rows)
    net = from_jia2019(load_jia2019_file(WEIGHTS / name))
    with torch.inference_mode():
        predicted = net(image=x).argmax(1).numpy()
    accuracy = float((predicted == labels).mean())
    assert accuracy >= 0.97, f"{name}: accuracy {accuracy:.3f} on 200 MNIST digits"


def test_bundled_weights_are_the_documented_file():
    source = (BUNDLED.parent / "SOURCE.md").read_text()
    digest = hashlib.sha256(BUNDLED.read_bytes()).hexdigest()
    assert digest in source
    assert digest == REFERENCE["models"][BUNDLED.name]["sha256"]
    assert "Apache License" in (BUNDLED.parent / "LICENSE").read_text()


def test_transfer_keeps_backbone_and_leaves_a_new_3_class_head_fresh():
    state = load_jia2019_file(BUNDLED)
    torch.manual_seed(1)
    net = build_resnet20(in_channels=3, num_classes=3, embedding_dim=32, pyramid=(1, 2))
    fresh_head = net.classifier.weight.detach().clone()
    report = transfer_pretrained(net, state)
    assert set(report.skipped) == {"classifier.weight", "classifier.bias"}
    assert "embedding.weight" in report.loaded and "layer3.2.bn2.running_var" in report.loaded
    assert len(report.loaded) == 97  # 98 tensors minus the 10-class classifier
    torch.testing.assert_close(net.layer2[0].conv1.weight, state["embedding_net.layer2.0.conv1.weight"])
    torch.testing.assert_close(net.embedding.bias, state["embedding_net.linear.bias"])
    torch.testing.assert_close(net.classifier.weight.detach(), fresh_head)
    # fine-tuning from here gives the pretrained embedding
    reference = from_jia2019(state)
    x = random_input(3)
    with torch.no_grad():
        torch.testing.assert_close(net.eval().embed(x), reference.embed(x))


@needs_weights
def test_transfer_of_1_channel_mnist_weights_spreads_the_first_conv():
    # One grey phase fills all three channels, so w / 3 per channel gives the MNIST response exactly.
    net = build_resnet20(in_channels=3, num_classes=2, embedding_dim=2, pyramid=None)
    state = load_jia2019_file(WEIGHTS / "mnist_resnet_2_dict.pkl")
    report = transfer_pretrained(net, state)
    assert "conv1.weight" in report.loaded and "bn1.weight" in report.loaded
    torch.testing.assert_close(net.conv1.weight, state["embedding_net.conv1.weight"].expand(-1, 3, -1, -1) / 3)
    assert "classifier.weight" in report.skipped  # 10 classes there, 2 here


class NotATensor:
    """A class the weights-only loader must refuse to rebuild from a pickle."""


def test_non_state_dict_files_are_refused(tmp_path):
    module_file = tmp_path / "whole_model.pkl"
    torch.save(torch.nn.Linear(2, 2), module_file)  # a pickled module object, not a state dict
    with pytest.raises(HCCInputError, match="whole_model.pkl.*not a plain PyTorch state dict"):
        load_jia2019_file(module_file)
    plain_pickle = tmp_path / "object.pkl"
    plain_pickle.write_bytes(pickle.dumps({"embedding_net.conv1.weight": NotATensor()}, protocol=2))
    with pytest.raises(HCCInputError, match="object.pkl.*not a plain PyTorch state dict"):
        load_jia2019_file(plain_pickle)
    wrong_keys = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong_keys)
    with pytest.raises(HCCInputError, match="other.pt.*missing"):
        load_jia2019_file(wrong_keys)
    not_tensors = tmp_path / "numbers.pt"
    torch.save({"embedding_net.conv1.weight": 3}, not_tensors)
    with pytest.raises(HCCInputError, match="not tensors"):
        load_jia2019_file(not_tensors)
    with pytest.raises(HCCInputError, match="no such weights file"):
        load_jia2019_file(tmp_path / "absent.pkl")
    with pytest.raises(HCCInputError, match="no backbone weight"):
        transfer_pretrained(torch.nn.Linear(2, 2), load_jia2019_file(BUNDLED))


def test_embedding_width_that_fits_no_pyramid_is_refused():
    state = dict(load_jia2019_file(BUNDLED))
    state["embedding_net.linear.weight"] = torch.zeros(32, 100)
    with pytest.raises(HCCInputError, match="100 features"):
        from_jia2019(state)
    state = dict(load_jia2019_file(BUNDLED))
    state["embedding_net.layer2.0.conv1.weight"] = torch.zeros(32, 8, 3, 3)
    with pytest.raises(HCCInputError, match="does not fit ResNet20"):
        from_jia2019(state)
