"""Image and video tokenizers train through the shared loop (task image_tokenizer / video_tokenizer):
they beat the baselines they must beat, resume exactly, train a patch discriminator, track dead codes."""

from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import load_file

from codec.checkpoint import load_checkpoint
from codec.errors import CodecError
from codec.recipebook import find_recipe
from codec.train import run_training
from codec.train.checkpoints import latest_checkpoint, read_checkpoint
from codec.train.visual_objective import DeadCodes

TINY_IMAGE = {"architecture": "conv", "channels": 1, "image_size": 16, "downsample": 4, "width": 16, "latent_dim": 8,
              "quantizer": {"kind": "ema", "n_q": 2, "codebook_size": 32, "kmeans_iters": 5}}


def recipe(tmp_path, name: str, **config) -> str:
    base = {"steps": 60, "batch_size": 16, "seed": 0, "log_every": 10, "valid_every": 30, "checkpoint_every": 10,
            "keep_checkpoints": 10, "optim": {"lr": 3e-3, "betas": [0.9, 0.99], "schedule": "constant"}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(base | config))
    return str(path)


def test_an_image_tokenizer_beats_the_mean_image_and_its_best_model_loads(tmp_path):
    path = recipe(tmp_path, "digits", task="image_tokenizer", model=TINY_IMAGE,
                  data={"dataset": "digits", "size": 16, "valid_items": 64})
    results = run_training(find_recipe(path), tmp_path / "run")
    assert results["mse"] < 0.5 * results["baseline_mean_mse"]
    assert 0 < results["usage_0"] <= 1 and results["psnr"] > 18
    best = load_checkpoint(tmp_path / "run" / "best")
    assert best.token_spec.grid == (4, 4) and best.token_spec.codebook_sizes == (32, 32)


def test_a_resumed_image_run_equals_an_uninterrupted_one(tmp_path):
    config = dict(task="image_tokenizer", model=TINY_IMAGE, steps=20, valid_every=20,
                  data={"dataset": "digits", "size": 16, "valid_items": 16})
    straight = recipe(tmp_path, "straight", **config)
    run_training(find_recipe(straight), tmp_path / "a")
    run_training(find_recipe(straight), tmp_path / "b", overrides=["steps=10"])
    run_training(find_recipe(straight), tmp_path / "b", overrides=["steps=20"], resume=True)
    weights = [load_file(latest_checkpoint(tmp_path / run) / "model" / "model.safetensors") for run in ("a", "b")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_video_tokenizer_beats_the_mean_and_previous_frame_baselines(tmp_path):
    model = {"channels": 1, "image_size": 16, "frame_rate": 8.0, "spatial_downsample": 4, "temporal_downsample": 2,
             "width": 16, "latent_dim": 8, "quantizer": {"kind": "ema", "n_q": 2, "codebook_size": 64,
                                                          "kmeans_iters": 5}}
    path = recipe(tmp_path, "moving", task="video_tokenizer", model=model, batch_size=8, steps=160, valid_every=80,
                  data={"dataset": "moving_digits", "size": 16, "frames": 5, "train_items": 400, "valid_items": 16})
    results = run_training(find_recipe(path), tmp_path / "run")
    assert results["mse"] < 0.7 * min(results["baseline_mean_mse"], results["baseline_previous_mse"])


def test_a_patch_discriminator_trains_alongside_and_is_checkpointed(tmp_path):
    path = recipe(tmp_path, "adv", task="image_tokenizer", model=TINY_IMAGE, steps=12, valid_every=12,
                  losses={"adversarial": 0.1, "adversarial_start": 4, "discriminator": {"channels": 1, "width": 8}},
                  data={"dataset": "digits", "size": 16, "valid_items": 16})
    run_training(find_recipe(path), tmp_path / "run")
    objective = read_checkpoint(latest_checkpoint(tmp_path / "run"))["objective"]
    assert {"discriminator", "disc_optimizer", "disc_scheduler", "dead_codes"} <= set(objective)
    assert objective["disc_optimizer"]["state"], "the discriminator took optimizer steps"
    run_training(find_recipe(path), tmp_path / "run", overrides=["steps=16"], resume=True)
    assert latest_checkpoint(tmp_path / "run").name == "step_00000016"


def test_dead_codes_are_those_unused_for_a_window_of_steps():
    tracker = DeadCodes((4, 2), window=3)
    codes = torch.tensor([[[0, 1]], [[0, 0]]]).permute(1, 0, 2)  # [B=1, Q=2, N=2]: level 0 uses 0, 1; level 1 uses 0
    for step in range(3):
        dead = tracker.update(codes, step)
    assert dead.tolist() == [0.0, 0.0]  # nothing is dead before a whole window has passed
    dead = tracker.update(codes, 3)
    assert dead.tolist() == [0.5, 0.5]  # level 0: codes 2, 3 of 4; level 1: code 1 of 2
    dead = tracker.update(torch.tensor([[[2], [1]]]), 4)  # codes 2 and 1 come back
    assert dead.tolist() == [0.25, 0.0]


def test_bad_visual_configs_are_clear_errors(tmp_path):
    path = recipe(tmp_path, "bad", task="image_tokenizer", model=TINY_IMAGE, data={"dataset": "no_such_set"})
    with pytest.raises(CodecError, match="Unknown image dataset"):
        run_training(find_recipe(path), tmp_path / "run")
    path = recipe(tmp_path, "bad2", task="video_tokenizer", data={"dataset": "digits"})
    with pytest.raises(CodecError, match="moving_digits or a folder"):
        run_training(find_recipe(path), tmp_path / "run2")
    path = recipe(tmp_path, "bad3", task="image_tokenizer", model=TINY_IMAGE, losses={"l1": 0, "ssim": 0})
    with pytest.raises(CodecError, match="reconstruction loss"):
        run_training(find_recipe(path), tmp_path / "run3")
