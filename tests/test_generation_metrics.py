"""The bundled digit classifier and the generation metrics built on it (FD, class accuracy,
diversity, temporal consistency), on real digits, moving digits and degraded copies."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from codec.errors import CodecError
from codec.eval.digit_classifier import (BUNDLED_CLASSIFIER, DigitClassifier, DigitClassifierConfig,
                                         augment_digits, digits_tensors, evaluate_accuracy, extract_features,
                                         load_digit_classifier, read_classifier_info, train_digit_classifier)
from codec.eval.generation_metrics import (class_accuracy, diversity, frechet_distance, label_agreement,
                                           score_images, score_videos, temporal_consistency)
from codec.video.moving_digits import MovingDigits


@pytest.fixture(scope="module")
def classifier() -> DigitClassifier:
    return load_digit_classifier()


@pytest.fixture(scope="module")
def test_digits() -> tuple[torch.Tensor, torch.Tensor]:
    return digits_tensors("test")


def moving_digits(split: str, count: int = 24, frames: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` one-digit videos [count, 1, frames, 32, 32] of ``split`` and their labels [count]."""
    dataset = MovingDigits(count, frames, split=split)
    return (torch.stack([dataset[i] for i in range(count)]),
            torch.cat([dataset.label(i) for i in range(count)]))


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """[N, 1, H, W] blurred by a Gaussian of std ``sigma`` pixels."""
    t = torch.arange(-6, 7, dtype=torch.float32)
    kernel = torch.exp(-t ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    x = F.conv2d(images, kernel.view(1, 1, -1, 1), padding=(6, 0))
    return F.conv2d(x, kernel.view(1, 1, 1, -1), padding=(0, 6))


# --- the classifier ------------------------------------------------------------------------------

def test_bundled_classifier_reaches_its_stated_accuracy(classifier):
    info = read_classifier_info()
    accuracy = evaluate_accuracy(classifier, "test")
    assert accuracy >= 0.95
    assert abs(accuracy - info["accuracy"]["test"]) <= 1 / 179  # at most one image off, whatever the CPU
    assert (BUNDLED_CLASSIFIER / "model.safetensors").stat().st_size < 500_000


def test_classifier_reads_rgb_and_other_sizes_like_grey_32(classifier, test_digits):
    images = test_digits[0][:16]
    grey = extract_features(classifier, images)
    torch.testing.assert_close(extract_features(classifier, images.expand(-1, 3, -1, -1)), grey,
                               atol=1e-4, rtol=1e-4)
    assert class_accuracy(classifier, digits_tensors("test", size=64)[0], test_digits[1]) >= 0.9


def test_broken_classifier_folders_raise_clear_errors(tmp_path):
    with pytest.raises(CodecError, match="missing"):
        load_digit_classifier(tmp_path / "absent")
    folder = tmp_path / "copy"
    shutil.copytree(BUNDLED_CLASSIFIER, folder)
    assert isinstance(load_digit_classifier(folder), DigitClassifier)
    (folder / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(CodecError, match="corrupt"):
        load_digit_classifier(folder)
    shutil.copy(BUNDLED_CLASSIFIER / "model.safetensors", folder / "model.safetensors")
    info = json.loads((folder / "info.json").read_text())
    info["config"]["widths"] = [8, 16, 32]
    (folder / "info.json").write_text(json.dumps(info))
    with pytest.raises(CodecError, match="do not match"):
        load_digit_classifier(folder)
    (folder / "info.json").write_text("{broken")
    with pytest.raises(CodecError, match="not valid JSON"):
        load_digit_classifier(folder)
    with pytest.raises(ValueError, match="image_size"):
        DigitClassifierConfig(image_size=30)


def test_training_runs_and_lowers_the_loss():
    images, labels = digits_tensors("train")
    torch.manual_seed(0)
    untrained = DigitClassifier().eval()
    trained = train_digit_classifier(steps=40, seed=0, augment=False, batch_size=64)
    with torch.no_grad():
        before = F.cross_entropy(untrained.logits(images), labels).item()
        after = F.cross_entropy(trained.logits(images), labels).item()
    assert before > 2.2 and after < 1.0


def test_augmentation_is_seeded_and_keeps_digits_in_range():
    images = digits_tensors("valid")[0][:32]
    first = augment_digits(images, torch.Generator().manual_seed(1))
    assert torch.equal(first, augment_digits(images, torch.Generator().manual_seed(1)))
    assert first.shape == images.shape and first.min() >= 0 and first.max() <= 1
    assert (first - images).abs().mean() > 0.05
    assert (first.flatten(1).sum(1) > 0.1 * images.flatten(1).sum(1)).all()  # no digit pushed out of the frame


# --- Fréchet distance ----------------------------------------------------------------------------

def test_frechet_distance_is_zero_for_one_set_symmetric_and_grows_with_a_shift():
    features = torch.randn(300, 8, generator=torch.Generator().manual_seed(0)) @ torch.randn(8, 8)
    other = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    assert frechet_distance(features, features) == pytest.approx(0, abs=1e-8)
    assert frechet_distance(features, other) == pytest.approx(frechet_distance(other, features), rel=1e-9)
    direction = torch.ones(8) / 8 ** 0.5
    shifted = [frechet_distance(features, features + d * direction) for d in (0.5, 1.0, 2.0)]
    assert shifted == pytest.approx([0.25, 1.0, 4.0], rel=1e-6)  # equal covariances: |mean shift|^2


def test_frechet_distance_matches_the_closed_forms():
    hadamard = torch.from_numpy(scipy.linalg.hadamard(8)).double()[:, 1:4]  # [8, 3]: zero-mean orthogonal columns
    mu_a, mu_b = torch.tensor([0.0, 1.0, -2.0]).double(), torch.tensor([0.5, 1.0, 1.0]).double()
    s_a, s_b = torch.tensor([1.0, 2.0, 0.5]).double(), torch.tensor([3.0, 2.0, 0.0]).double()
    a, b = mu_a + hadamard * s_a, mu_b + hadamard * s_b  # sample covariances diag(s^2 * 8/7)
    expected = (mu_a - mu_b).square().sum() + ((s_a - s_b) * (8 / 7) ** 0.5).square().sum()
    assert frechet_distance(a, b) == pytest.approx(expected.item(), rel=1e-9)
    one_d = frechet_distance(a[:, :1], b[:, :1])  # 1-D: (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2
    assert one_d == pytest.approx(0.25 + (8 / 7) * (1.0 - 3.0) ** 2, rel=1e-9)

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 5)) @ rng.normal(size=(5, 5)), rng.normal(size=(40, 5)) * 2 + 1
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    reference = (((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(cov_x) + np.trace(cov_y)
                 - 2 * np.trace(scipy.linalg.sqrtm(cov_x @ cov_y)).real)
    assert frechet_distance(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(reference, rel=1e-7)


def test_frechet_distance_handles_singular_covariances_and_rejects_bad_input(classifier, test_digits):
    features = extract_features(classifier, test_digits[0][:20])  # 20 samples in 64 dimensions
    assert frechet_distance(features, features) == pytest.approx(0, abs=1e-6 * features.var(0).sum().item())
    assert frechet_distance(features[:10], features[10:]) > 0
    with pytest.raises(ValueError, match="dimension"):
        frechet_distance(features, features[:, :3])
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(features[:1], features)


# --- class accuracy and diversity ----------------------------------------------------------------

def test_class_accuracy_is_high_with_true_labels_and_chance_with_shuffled(classifier, test_digits):
    images, labels = test_digits
    assert class_accuracy(classifier, images, labels) >= 0.95
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    assert 0.03 <= class_accuracy(classifier, images, shuffled) <= 0.2
    with pytest.raises(ValueError, match="labels"):
        class_accuracy(classifier, images, labels[:-1])


def test_diversity_is_the_mean_distance_within_a_class(classifier, test_digits):
    assert diversity(torch.tensor([[0.0], [1.0], [3.0]])) == pytest.approx(2.0)  # pairs: 1, 3, 2
    images, labels = test_digits
    assert diversity(extract_features(classifier, images[:1].expand(40, -1, -1, -1))) == 0
    features = extract_features(classifier, images)
    assert diversity(features, labels) > 0
    one_per_class = torch.stack([features[labels == c][0] for c in range(10)]).repeat(5, 1)  # [50, 64]
    classes = torch.arange(10).repeat(5)
    assert diversity(one_per_class) > 0 and diversity(one_per_class, classes) == 0  # collapse within classes


# --- temporal consistency ------------------------------------------------------------------------

def test_temporal_consistency_of_static_moving_and_flickering_videos(classifier):
    videos, labels = moving_digits("test")
    moving = temporal_consistency(videos)
    assert torch.equal(temporal_consistency(videos[:, :, :1].expand_as(videos)), torch.zeros(len(videos)))
    assert (moving > 0).all() and moving.mean() < 0.15
    flicker = torch.rand(videos.shape, generator=torch.Generator().manual_seed(0))
    assert temporal_consistency(flicker).mean() > 5 * moving.mean()
    blink = torch.zeros(1, 1, 4, 2, 2)
    blink[:, :, 1::2] = 1
    assert temporal_consistency(blink).item() == 1.0
    assert label_agreement(classifier, videos) >= 0.9
    swapped = videos.clone()
    other = next(i for i in range(len(videos)) if labels[i] != labels[0])
    swapped[0, :, 4:] = videos[other, :, 4:]  # the digit changes half-way
    assert label_agreement(classifier, swapped[:1]) == pytest.approx(0.5, abs=0.125)


# --- end to end ----------------------------------------------------------------------------------

def test_held_out_digits_score_close_to_the_reference_and_degraded_ones_far(classifier, test_digits):
    reference, reference_labels = test_digits
    valid, valid_labels = digits_tensors("valid")
    real = score_images(classifier, valid, valid_labels, reference, reference_labels)
    assert real.class_accuracy >= 0.95 and 0.8 <= real.diversity <= 1.25
    assert (real.num_generated, real.num_reference) == (179, 179)
    blurred = score_images(classifier, blur(valid, 2.0), valid_labels, reference, reference_labels)
    noise = score_images(classifier, torch.rand(valid.shape, generator=torch.Generator().manual_seed(0)),
                         valid_labels, reference, reference_labels)
    assert blurred.frechet_distance > 2 * real.frechet_distance
    assert noise.frechet_distance > 10 * real.frechet_distance and noise.class_accuracy < 0.3
    collapsed = torch.stack([valid[valid_labels == c][0] for c in range(10)]).repeat(10, 1, 1, 1)
    assert score_images(classifier, collapsed, torch.arange(10).repeat(10), reference).diversity == 0
    unconditional = score_images(classifier, valid, None, reference)
    assert unconditional.class_accuracy is None and unconditional.frame_change is None
    assert unconditional.frechet_distance == pytest.approx(real.frechet_distance)


def test_video_scores_of_real_frozen_and_noise_videos(classifier):
    reference, reference_labels = moving_digits("test")
    videos, labels = moving_digits("valid")
    real = score_videos(classifier, videos, labels, reference, reference_labels)
    assert real.class_accuracy >= 0.9 and real.label_agreement >= 0.9
    assert 0.7 <= real.frame_change <= 1.4 and 0.6 <= real.diversity <= 1.5
    frozen = score_videos(classifier, videos[:, :, :1].expand_as(videos), labels, reference, reference_labels)
    assert frozen.frame_change == 0 and frozen.label_agreement == 1
    noise = score_videos(classifier, torch.rand(videos.shape, generator=torch.Generator().manual_seed(0)), labels,
                         reference, reference_labels)
    assert noise.frame_change > 3 and noise.frechet_distance > 10 * real.frechet_distance
