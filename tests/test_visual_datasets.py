"""Image and video training datasets: values, splits, determinism by (index, seed), folders, moving digits."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from codec.errors import CodecError
from codec.image.datasets import (SAMPLE_IMAGES, FolderImages, SampleImageCrops, digits_images, faces_images,
                                  image_dataset, split_indices)
from codec.image.io import write_image
from codec.video.io import write_video
from codec.video.moving_digits import MovingDigits, VideoFolder

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


# ---- images -----------------------------------------------------------------------------------

def test_digit_splits_are_disjoint_and_cover_everything():
    parts = [split_indices(1797, split) for split in ("train", "valid", "test")]
    assert [len(p) for p in parts] == [1439, 179, 179]
    assert torch.equal(torch.cat(parts).sort().values, torch.arange(1797))
    datasets = [digits_images(split, size=8) for split in ("train", "valid", "test")]
    for dataset in datasets:
        assert dataset.num_classes == 10 and set(dataset.labels.tolist()) == set(range(10))
    train = {tuple(x.flatten().tolist()) for x in datasets[0].images}
    test = {tuple(x.flatten().tolist()) for x in datasets[2].images}
    assert len(train & test) < 5  # sklearn's digits hold a few exact duplicates, no more


def test_digits_values_and_labels_match_sklearn():
    digits = load_digits()
    valid = digits_images("valid", size=8)
    index = 8  # the first item of the valid split (i % 10 == 8)
    torch.testing.assert_close(valid[0][0], torch.from_numpy(digits.images[index]).float() / 16)
    assert valid.labels[0] == digits.target[index]
    big = digits_images("train", size=32, channels=3)
    x = big[5]
    assert x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1 and x.max() > 0.9
    assert torch.equal(x[0], x[2])
    assert torch.equal(big[5], big[(5, 123)])  # fixed images: the sample seed changes nothing
    # bilinear upsampling keeps the mean brightness
    torch.testing.assert_close(x.mean(), big.images[5].mean(), atol=0.02, rtol=0)


def test_faces():
    faces = faces_images("train", size=40)
    assert len(faces) == 80 and len(faces_images("test")) == 10
    x = faces[3]
    assert x.shape == (1, 40, 40) and 0 <= x.min() and x.max() <= 1 and x.std() > 0.05
    assert faces.labels is None


def test_sample_crops_are_deterministic_by_index_and_seed():
    crops = SampleImageCrops(("camera", "astronaut"), size=24, channels=3, items=10, seed=3)
    assert len(crops) == 10
    x = crops[(4, 77)]
    assert x.shape == (3, 24, 24) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x, SampleImageCrops(("camera", "astronaut"), 24, 3, 10, seed=3)[(4, 77)])
    assert not torch.equal(x, crops[(4, 78)])
    assert not torch.equal(x, SampleImageCrops(("camera", "astronaut"), 24, 3, 10, seed=4)[(4, 77)])
    grey_source = crops[(2, 0)]  # even items come from the grey camera image: repeated to RGB
    assert torch.equal(grey_source[0], grey_source[1])
    assert SampleImageCrops(("astronaut",), 24, channels=1, items=1)[0].shape == (1, 24, 24)


def test_sample_crop_of_full_size_is_the_image_or_its_mirror():
    from skimage.data import microaneurysms

    source = torch.from_numpy(microaneurysms()).float() / 255  # 102 x 102 grey
    crops = SampleImageCrops(("microaneurysms",), size=102, channels=1, items=8)
    flips = 0
    for i in range(8):
        x = crops[i][0]
        flipped = torch.equal(x, source.flip(-1))
        assert flipped or torch.equal(x, source)
        flips += flipped
    assert 0 < flips < 8


def test_sample_image_splits_are_disjoint():
    train, valid, test = (set(SAMPLE_IMAGES[s]) for s in ("train", "valid", "test"))
    assert not (train & valid or train & test or valid & test)
    held_out = image_dataset("samples", "test", size=16, items=3)
    assert held_out.names == SAMPLE_IMAGES["test"] and held_out[0].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="skimage sample images"):
        SampleImageCrops(("lily",), 16)


def test_folder_images(tmp_path):
    (tmp_path / "sub").mkdir()
    tall = torch.arange(40 * 20, dtype=torch.float32).view(1, 40, 20) / 800  # distinct values
    write_image(tmp_path / "sub" / "tall.png", tall)
    Image.new("RGB", (30, 30), (255, 0, 0)).save(tmp_path / "RED.JPG")
    (tmp_path / "notes.txt").write_text("not an image")
    center = FolderImages(tmp_path, size=20, channels=1, crop="center")
    assert [p.name for p in center.files] == ["RED.JPG", "tall.png"]
    expected = (tall * 255).round() / 255
    assert torch.equal(center[1], expected[:, 10:30])
    red = FolderImages(tmp_path, size=10, channels=3, crop="resize")[0]
    torch.testing.assert_close(red.mean((1, 2)), torch.tensor([1.0, 0.0, 0.0]), atol=0.03, rtol=0)
    random = FolderImages(tmp_path, size=20, channels=1, crop="random", seed=1)
    crops = [random[(1, s)] for s in range(12)]
    for crop in crops:  # a 20 x 20 window of the image, possibly mirrored
        rows = [top for top in range(21) if torch.equal(crop, expected[:, top:top + 20])
                or torch.equal(crop, expected[:, top:top + 20].flip(-1))]
        assert len(rows) == 1
    assert len({tuple(c.flatten().tolist()) for c in crops}) > 3
    assert torch.equal(random[(1, 5)], FolderImages(tmp_path, 20, 1, "random", seed=1)[(1, 5)])
    via_name = image_dataset(str(tmp_path), "valid", size=20, channels=1)
    assert isinstance(via_name, FolderImages) and torch.equal(via_name[1], center[1])


def test_folder_errors(tmp_path):
    with pytest.raises(CodecError, match="holds no image files"):
        FolderImages(tmp_path, size=8)
    with pytest.raises(CodecError, match="does not exist"):
        FolderImages(tmp_path / "missing", size=8)
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(CodecError, match="bad.png' is not an image"):
        FolderImages(tmp_path, size=8)[0]


def test_image_dataset_entry_point():
    digits = image_dataset("digits", "test", size=16)
    assert isinstance(digits, type(digits_images("test"))) and digits[0].shape == (1, 16, 16)
    assert image_dataset("faces", "valid", size=16, channels=3)[0].shape == (3, 16, 16)
    with pytest.raises(CodecError, match="Unknown image dataset 'mnist': use digits, samples, faces"):
        image_dataset("mnist")
    with pytest.raises(ValueError, match="split"):
        image_dataset("digits", "training")


# ---- videos -----------------------------------------------------------------------------------

def test_moving_digits_are_deterministic_and_in_range():
    videos = MovingDigits(5, frames=10, size=32, digit_size=16, num_digits=2, seed=1)
    x = videos[2]
    assert x.shape == (1, 10, 32, 32) and x.min() == 0 and x.max() <= 1 and x.max() > 0.9
    assert torch.equal(x, MovingDigits(5, 10, 32, 16, 2, seed=1)[2])
    assert torch.equal(x, MovingDigits(50, 10, 32, 16, 2, seed=1)[(2, 99)])  # nor on num_videos or sample seed
    assert not torch.equal(x, MovingDigits(5, 10, 32, 16, 2, seed=2)[2])
    assert not torch.equal(x, videos[3])
    label = videos.label(2)
    assert label.shape == (2,) and all(0 <= c <= 9 for c in label.tolist())
    with pytest.raises(IndexError):
        videos[5]


def test_moving_digits_stay_inside_and_move():
    videos = MovingDigits(8, frames=40, size=32, digit_size=16, num_digits=1, split="valid")
    bounced = 0
    for i in range(len(videos)):
        x = videos[i][0]
        path = videos.trajectory(i)[0]  # [T, 2]
        assert path.min() >= 0 and path.max() <= 16
        # the whole digit is in every frame: its brightness is never cut off by an edge
        mass = x.sum((1, 2))
        torch.testing.assert_close(mass, mass[:1].expand(40))
        top, left = path[0].tolist()
        digit = x[0, top:top + 16, left:left + 16]
        assert torch.isclose(digit.sum(), mass[0])
        # the digit is a valid-split digit of the labelled class
        matches = (videos.digits == digit).all(-1).all(-1)
        assert videos.digit_labels[matches].tolist()[:1] == videos.label(i).tolist()
        steps = path.diff(dim=0)
        assert steps.abs().sum() > 20  # it moves
        assert not torch.equal(x[0], x[-1])
        bounced += bool(((steps[1:] * steps[:-1]) < 0).any())  # some direction reversed at an edge
    assert bounced >= 4


def test_moving_digits_splits_use_different_digits():
    train = MovingDigits(1, 1, split="train")
    test = MovingDigits(1, 1, split="test")
    assert len(train.digits) == 1439 and len(test.digits) == 179


@needs_ffmpeg
def test_video_folder(tmp_path, caplog):
    frames = 12
    ramp = (torch.arange(frames, dtype=torch.float32) / frames * 0.8 + 0.1).view(1, frames, 1, 1)
    write_video(tmp_path / "ramp.mp4", ramp.expand(3, frames, 24, 32).contiguous(), fps=10)
    write_video(tmp_path / "short.gif", torch.rand(1, 3, 16, 16), fps=10)
    (tmp_path / "notes.txt").write_text("not a video")
    with caplog.at_level(logging.WARNING):
        clips = VideoFolder(tmp_path, frames=6, size=16, channels=3, crop="random", seed=0)
    assert [p.name for p in clips.files] == ["ramp.mp4"] and "fewer than 6 frames" in caplog.text
    starts = set()
    for sample_seed in range(8):
        x = clips[(0, sample_seed)]
        assert x.shape == (3, 6, 16, 16) and 0 <= x.min() and x.max() <= 1
        levels = x.mean((0, 2, 3))
        start = int(((levels[0] - 0.1) / 0.8 * frames).round())
        torch.testing.assert_close(levels, ramp.flatten()[start:start + 6], atol=0.02, rtol=0)
        starts.add(start)
    assert len(starts) > 2
    assert torch.equal(clips[(0, 3)], VideoFolder(tmp_path, 6, 16, 3, "random", seed=0)[(0, 3)])
    center = VideoFolder(tmp_path, frames=6, size=8, channels=1, crop="center")[0]
    assert center.shape == (1, 6, 8, 8)
    torch.testing.assert_close(center.mean((0, 2, 3)), ramp.flatten()[3:9], atol=0.02, rtol=0)


def test_video_folder_errors(tmp_path):
    with pytest.raises(CodecError, match="holds no video files"):
        VideoFolder(tmp_path, frames=4, size=8)
    (tmp_path / "bad.mp4").write_bytes(np.zeros(100, np.uint8).tobytes())
    with pytest.raises(CodecError, match="bad.mp4"):
        VideoFolder(tmp_path, frames=4, size=8)
