"""Scores of generated digit images and videos, judged by the bundled ``DigitClassifier``.

- Fréchet distance (FD, the FID recipe on the classifier's 64-dim features): fit a Gaussian
  (mean, unbiased covariance) to each feature set and take
  ``|mu_a - mu_b|^2 + tr(C_a) + tr(C_b) - 2 tr((C_a C_b)^(1/2))``. The last trace is computed as
  the sum of square roots of the eigenvalues of the symmetric PSD matrix ``C_a^(1/2) C_b C_a^(1/2)``
  (which has the eigenvalues of ``C_a C_b``), with both eigen-decompositions in float64 and
  rounding-negative eigenvalues clipped to 0: no complex square root, no imaginary residue, and
  singular covariances (fewer samples than dimensions) are fine. Lower is better; FD is biased
  upwards by small sample counts, so compare sets of equal size.
- Class accuracy: how often the classifier sees the requested class (conditional generation).
- Diversity: the mean Euclidean distance between the features of two different samples of the
  same class (averaged over classes with at least two samples), so that a conditional generator
  that draws one image per class scores 0 although its classes differ. ``score_images`` reports
  it relative to the same measure on the reference images: about 1 is as diverse as real
  digits, below 1 is mode collapse.
- Temporal consistency (videos): the mean absolute change of a pixel between consecutive frames.
  A frozen video scores 0, real moving digits a little (their digit moves 1-3 pixels a frame),
  flicker a lot; ``score_videos`` reports it relative to the reference videos (about 1 is
  right). Label agreement adds whether a video keeps its digit: the fraction of its frames
  classified as its most frequent class.

Images are [N, C, H, W] and videos [B, C, T, H, W] in [0, 1] (C = 1 or 3; the classifier reads
grey 32 x 32); features are [N, D].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from codec.eval.digit_classifier import DigitClassifier, extract_features, predict


def _check_features(features: Tensor, name: str = "features") -> Tensor:
    if features.dim() != 2 or len(features) < 2 or not features.shape[1]:
        raise ValueError(f"{name} must be [N, D] with N >= 2 and D >= 1, got {tuple(features.shape)}")
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} hold non-finite values")
    return features.detach().cpu().double()


def _psd_sqrt(matrix: Tensor) -> Tensor:
    """The symmetric square root of a symmetric PSD matrix [D, D] (negative rounding clipped)."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to [N, D] and [M, D] features (>= 0)."""
    a, b = _check_features(features_a, "features_a"), _check_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features_a and features_b differ in dimension: {a.shape[1]} vs {b.shape[1]}")
    cov_a, cov_b = torch.atleast_2d(torch.cov(a.T)), torch.atleast_2d(torch.cov(b.T))
    root_a = _psd_sqrt(cov_a)
    product = root_a @ cov_b @ root_a
    cross = torch.linalg.eigvalsh((product + product.T) / 2).clamp(min=0).sqrt().sum()
    distance = (a.mean(0) - b.mean(0)).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(distance.item(), 0.0)


def class_accuracy(classifier: DigitClassifier, images: Tensor, labels: Tensor) -> float:
    """The fraction of images [N, C, H, W] that ``classifier`` assigns their label [N]."""
    if images.dim() != 4 or not len(images) or labels.shape != images.shape[:1]:
        raise ValueError(f"images must be [N, C, H, W] with N >= 1 and labels [N], got {tuple(images.shape)} "
                         f"and {tuple(labels.shape)}")
    return (predict(classifier, images) == labels.cpu()).float().mean().item()


def diversity(features: Tensor, classes: Tensor | None = None) -> float:
    """Mean Euclidean distance between the features [N, D] of two different samples of one class
    (``classes`` [N]; None: all one class), averaged over the classes with >= 2 samples."""
    features = _check_features(features)
    classes = torch.zeros(len(features), dtype=torch.long) if classes is None else classes.cpu()
    if classes.shape != features.shape[:1]:
        raise ValueError(f"classes must be [{len(features)}], got {tuple(classes.shape)}")
    per_class = []
    for c in classes.unique():
        group = features[classes == c]
        if len(group) >= 2:  # the diagonal (0) is left out of the mean
            distances = torch.cdist(group, group, compute_mode="donot_use_mm_for_euclid_dist")  # exact zeros
            per_class.append(distances.sum() / (len(group) * (len(group) - 1)))
    if not per_class:
        raise ValueError("diversity needs at least two samples of one class")
    return torch.stack(per_class).mean().item()


def temporal_consistency(videos: Tensor) -> Tensor:
    """[B, C, T, H, W] (T >= 2) -> [B]: the mean absolute change of a pixel between consecutive
    frames (0 for a frozen video; lower is steadier)."""
    if videos.dim() != 5 or videos.shape[2] < 2:
        raise ValueError(f"videos must be [B, C, T, H, W] with T >= 2, got {tuple(videos.shape)}")
    return videos.float().diff(dim=2).abs().flatten(1).mean(1)


def label_agreement(classifier: DigitClassifier, videos: Tensor) -> float:
    """The mean over videos [B, C, T, H, W] of the fraction of frames classified as the video's
    most frequent class (1: every frame shows the same digit)."""
    if videos.dim() != 5 or not len(videos):
        raise ValueError(f"videos must be [B, C, T, H, W] with B >= 1, got {tuple(videos.shape)}")
    predicted = predict(classifier, frames_of(videos)).view(len(videos), -1)  # [B, T]
    return (predicted == predicted.mode(1).values[:, None]).float().mean().item()


def frames_of(videos: Tensor) -> Tensor:
    """[B, C, T, H, W] -> [B * T, C, H, W], video by video."""
    return videos.transpose(1, 2).flatten(0, 1)


@dataclass(frozen=True)
class GenerationScores:
    """frechet_distance: FD of the generated vs the reference features (per frame for videos);
    class_accuracy: of the requested classes (None when unconditional); diversity: within-class
    diversity relative to the reference; frame_change: temporal_consistency relative to the
    reference, and label_agreement, for videos only (None for images)."""

    frechet_distance: float
    class_accuracy: float | None
    diversity: float
    num_generated: int
    num_reference: int
    frame_change: float | None = None
    label_agreement: float | None = None


def score_images(classifier: DigitClassifier, generated: Tensor, labels: Tensor | None, reference_images: Tensor,
                 reference_labels: Tensor | None = None) -> GenerationScores:
    """Scores of ``generated`` images [N, C, H, W] drawn for classes ``labels`` [N] (None:
    unconditional) against held-out real ``reference_images`` [M, C, H, W].

    Diversity groups each set by class: ``labels`` / ``reference_labels``, or the classifier's
    predictions where those are None."""
    features, reference = extract_features(classifier, generated), extract_features(classifier, reference_images)
    generated_classes = labels if labels is not None else predict(classifier, generated)
    reference_classes = reference_labels if reference_labels is not None else predict(classifier, reference_images)
    return GenerationScores(
        frechet_distance=frechet_distance(features, reference),
        class_accuracy=None if labels is None else class_accuracy(classifier, generated, labels),
        diversity=diversity(features, generated_classes) / diversity(reference, reference_classes),
        num_generated=len(generated), num_reference=len(reference_images))


def score_videos(classifier: DigitClassifier, generated: Tensor, labels: Tensor | None, reference_videos: Tensor,
                 reference_labels: Tensor | None = None) -> GenerationScores:
    """Scores of ``generated`` videos [B, C, T, H, W] of one digit each, of classes ``labels`` [B]
    (None: unconditional), against real ``reference_videos`` [B', C, T', H, W] (moving digits).

    FD and class accuracy are over all frames; diversity is over each video's mean frame
    feature (so motion within a video does not count as diversity)."""
    frames, reference_frames = frames_of(generated), frames_of(reference_videos)
    steps, reference_steps = generated.shape[2], reference_videos.shape[2]
    features = extract_features(classifier, frames)
    reference = extract_features(classifier, reference_frames)
    video_features = features.view(len(generated), steps, -1).mean(1)
    reference_video_features = reference.view(len(reference_videos), reference_steps, -1).mean(1)
    generated_classes = labels if labels is not None else predict(classifier, frames).view(-1, steps).mode(1).values
    reference_classes = (reference_labels if reference_labels is not None
                         else predict(classifier, reference_frames).view(-1, reference_steps).mode(1).values)
    frame_labels = None if labels is None else labels.repeat_interleave(steps)
    return GenerationScores(
        frechet_distance=frechet_distance(features, reference),
        class_accuracy=None if labels is None else class_accuracy(classifier, frames, frame_labels),
        diversity=(diversity(video_features, generated_classes)
                   / diversity(reference_video_features, reference_classes)),
        num_generated=len(generated), num_reference=len(reference_videos),
        frame_change=(temporal_consistency(generated).mean() / temporal_consistency(reference_videos).mean()).item(),
        label_agreement=label_agreement(classifier, generated))
