"""Per-batch random rotations and flips (Zhen 2020's augmentation)."""

import math

import torch

from HCCAnalysisLib.engine.augment import BatchAugmenter, draw, rotate_flip


def _image():
    torch.manual_seed(0)
    return torch.rand(3, 2, 16, 16)


def test_identity_parameters_leave_images_unchanged():
    images = _image()
    none = torch.zeros(3, dtype=torch.bool)
    torch.testing.assert_close(rotate_flip(images, torch.zeros(3), none, none), images)


def test_flips_are_exact():
    images = _image()
    yes, no = torch.ones(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool)
    torch.testing.assert_close(rotate_flip(images, torch.zeros(3), yes, no), images.flip(-1))
    torch.testing.assert_close(rotate_flip(images, torch.zeros(3), no, yes), images.flip(-2))


def test_quarter_turn_equals_rot90():
    # With align_corners=False a 90-degree turn of a square image maps pixel centres onto pixel
    # centres, so bilinear sampling reproduces torch.rot90 (up to rounding).
    images = _image()
    no = torch.zeros(3, dtype=torch.bool)
    turned = rotate_flip(images, torch.full((3,), math.pi / 2), no, no)
    candidates = [torch.rot90(images, k, dims=(-2, -1)) for k in (1, 3)]
    assert min(float((turned - c).abs().max()) for c in candidates) < 1e-5


def test_draws_are_reproducible_and_within_range():
    a = draw(torch.Generator().manual_seed(3), 500, rotate_deg=40, flip_prob=0.5)
    b = draw(torch.Generator().manual_seed(3), 500, rotate_deg=40, flip_prob=0.5)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert float(a[0].abs().max()) <= math.radians(40)
    assert 0.35 < float(a[1].float().mean()) < 0.65


def test_shares_of_a_global_batch_match_the_whole_batch():
    """What two processes apply to their shares equals what one process applies to the batch."""
    images = _image().repeat(2, 1, 1, 1)  # 6 images
    settings = {"rotate_deg": 40, "flip_prob": 0.5}
    params = BatchAugmenter(settings, seed=5).draw_batch(6)
    whole = BatchAugmenter.apply({"image": images}, params, torch.arange(6))["image"]
    for rank in (0, 1):
        positions = torch.arange(6)[rank::2]
        share = BatchAugmenter.apply({"image": images[positions]}, params, positions)["image"]
        torch.testing.assert_close(share, whole[positions])


def test_fit_applies_the_task_augmentation_reproducibly(sample_data):
    import dataclasses

    from HCCAnalysisLib.data.cohort import load_cohort
    from HCCAnalysisLib.engine.evaluate import load_samples
    from HCCAnalysisLib.tasks import get_task
    from HCCAnalysisLib.engine.train import fit

    plain = get_task("jia2019-hcc-vs-background")
    augmented = dataclasses.replace(plain, training=dict(plain.training, augment={"rotate_deg": 40, "flip_prob": 0.5}))
    samples = [s for group in load_samples(plain, load_cohort(sample_data / "demo-cohort"), ["image"], 0,
                                           log=lambda *a: None).values() for s in group]

    def weights(task):
        net, _ = fit(task, samples, torch.device("cpu"), seed=1, epochs=1, batch_size=8, log=lambda *a: None)
        return net.state_dict()["conv1.weight"]

    first, again, without = weights(augmented), weights(augmented), weights(plain)
    torch.testing.assert_close(first, again)  # same seed, same random rotations
    assert not torch.allclose(first, without)  # the augmentation changed what was learnt
