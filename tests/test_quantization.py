"""Quantizers: config validation, EMA codebook learning, RVQ, factorized VQ, FSQ."""

from __future__ import annotations

import ast
import copy
import dataclasses
from pathlib import Path

import pytest
import soundfile as sf
import torch

from codec.quantization import (
    EMACodebook,
    FactorizedVectorQuantizer,
    FiniteScalarQuantizer,
    QuantizerConfig,
    ResidualVectorQuantizer,
    VectorQuantizer,
    build_quantizer,
)
from codec.quantization.metrics import codebook_metrics

ROOT = Path(__file__).resolve().parents[1]
DEVSPEECH = ROOT.parent / "shared" / "data" / "devspeech"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def trained(kind: str, dim: int = 16, **overrides) -> torch.nn.Module:
    """A small quantizer after a few training passes, in eval mode."""
    config = QuantizerConfig(kind=kind, n_q=4, codebook_size=32, kmeans_iters=10, **overrides)
    quantizer = build_quantizer(dim, config).train()
    for _ in range(3):
        quantizer(torch.randn(4, dim, 50))
    return quantizer.eval()


# --- config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "pq"}, "unknown quantizer kind 'pq'"),
        ({"codebook_size": 1}, "codebook_size must be >= 2"),
        ({"n_q": 0}, "n_q must be >= 1"),
        ({"ema_decay": 1.0}, r"ema_decay must be in \[0, 1\)"),
        ({"quantizer_dropout": 1.5}, "quantizer_dropout must be a probability"),
        ({"fsq_levels": (8, 1)}, "fsq_levels must be one or more integers >= 2"),
        ({"commitment_weight": -1.0}, "commitment_weight must be >= 0"),
    ],
)
def test_config_rejects_invalid_values(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QuantizerConfig(**overrides)


def test_build_quantizer_maps_kind_to_class_and_sizes() -> None:
    ema = build_quantizer(32, QuantizerConfig(n_q=3, codebook_size=64))
    factorized = build_quantizer(32, QuantizerConfig(kind="factorized", n_q=2))
    fsq_config = QuantizerConfig(kind="fsq", fsq_levels=[8, 5, 5, 5])  # a list, as from JSON
    fsq = build_quantizer(32, fsq_config)
    assert isinstance(ema, ResidualVectorQuantizer) and ema.codebook_sizes == (64, 64, 64)
    assert all(isinstance(level, FactorizedVectorQuantizer) for level in factorized.levels)
    assert isinstance(fsq, FiniteScalarQuantizer) and fsq_config.fsq_levels == (8, 5, 5, 5)
    assert fsq.codebook_sizes == fsq_config.codebook_sizes == (1000,)
    with pytest.raises(ValueError, match="n_q must be between 1 and 3"):
        ema(torch.randn(1, 32, 4), n_q=4)
    with pytest.raises(ValueError, match="n_q must be None or 1"):
        fsq.encode(torch.randn(1, 32, 4), n_q=2)


def test_config_module_imports_no_quantizer() -> None:
    """config.py holds QuantizerConfig only; the quantizers import it, never the other way round."""
    tree = ast.parse((ROOT / "codec" / "quantization" / "config.py").read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    local = [ast.unparse(node) for node in imports
             if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("codec"))]
    assert imports and local == []


def test_codebook_metrics_values() -> None:
    codes = torch.tensor([[[0, 1, 2, 3, 0, 1, 2, 3], [5] * 8]])  # [B=1, Q=2, T=8]
    usage, perplexity = codebook_metrics(codes, codebook_size=8)
    torch.testing.assert_close(usage, torch.tensor([0.5, 0.125]))
    torch.testing.assert_close(perplexity, torch.tensor([4.0, 1.0]))


# --- consistency of forward, encode and decode ----------------------------------------------


@pytest.mark.parametrize("kind", ["ema", "factorized", "fsq"])
def test_decode_of_codes_equals_quantized_output(kind: str) -> None:
    quantizer = trained(kind)
    x = torch.randn(3, 16, 40)
    out = quantizer(x)
    torch.testing.assert_close(quantizer.decode(out.codes), out.quantized, atol=1e-5, rtol=0)
    assert out.codes.dtype == torch.int64 and torch.equal(quantizer.encode(x), out.codes)
    assert out.usage.shape == out.perplexity.shape == (out.codes.shape[1],)
    if kind != "fsq":  # the first level alone, the target of semantic distillation
        torch.testing.assert_close(quantizer.decode(out.codes[:, :1]), out.first_level, atol=1e-5, rtol=0)


def test_eval_forward_is_deterministic_and_leaves_buffers_alone() -> None:
    quantizer = trained("ema", quantizer_dropout=1.0)
    before = {name: value.clone() for name, value in quantizer.state_dict().items()}
    x = torch.randn(8, 16, 30)
    first, second = quantizer(x), quantizer(x)
    assert torch.equal(first.codes, second.codes) and torch.equal(first.quantized, second.quantized)
    assert first.codes.shape[1] == 4  # no dropout in eval: every level is used
    torch.testing.assert_close(quantizer.decode(first.codes), first.quantized, atol=1e-5, rtol=0)
    quantizer.train().encode(x)  # encode never learns, even in training mode
    for name, value in quantizer.state_dict().items():
        assert torch.equal(value, before[name]), name


# --- EMA codebooks --------------------------------------------------------------------------


def speech_features(path: Path, frames: int = 400) -> torch.Tensor:
    """Log-magnitude STFT of a 16 kHz clip: [64, frames]."""
    wav, rate = sf.read(path, dtype="float32")
    assert rate == 16000
    window = torch.hann_window(128)
    spec = torch.stft(torch.from_numpy(wav), 128, 64, window=window, return_complex=True).abs()
    return torch.log(spec[1:, :frames] + 1e-4)


def test_rvq_error_falls_with_every_level_on_real_speech() -> None:
    clips = sorted(DEVSPEECH.glob("real/arctic/*.flac")) + sorted(DEVSPEECH.glob("real/librivox/*.flac"))
    if len(clips) < 3:
        pytest.skip(f"real speech clips not found under {DEVSPEECH}")
    x = torch.stack([speech_features(path) for path in clips])  # [B, 64, 400]
    x = (x - x.mean((0, 2), keepdim=True)) / x.std((0, 2), keepdim=True)
    train, held_out = x[:-1], x[-1:]
    rvq = ResidualVectorQuantizer(64, QuantizerConfig(n_q=8, codebook_size=128, kmeans_iters=20))
    rvq.train()
    for _ in range(5):
        rvq(train)
    rvq.eval()
    for data in (train, held_out):
        errors = torch.stack([(rvq.decode(rvq.encode(data, n)) - data).pow(2).mean() for n in range(1, 9)])
        assert (errors.diff() < 0).all(), errors
        assert errors[-1] < 0.5 * errors[0], errors


def clustered_data(clusters: int = 16, per_cluster: int = 64, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Well-separated gaussian clusters: points [clusters * per_cluster, dim], centers [clusters, dim]."""
    centers = torch.randn(clusters, dim) * 10
    points = centers.repeat_interleave(per_cluster, 0) + 0.1 * torch.randn(clusters * per_cluster, dim)
    return points, centers


def test_kmeans_init_beats_random_init_on_clustered_data() -> None:
    x, centers = clustered_data()
    config = QuantizerConfig(codebook_size=16, kmeans_iters=50)

    def quantization_error(codebook: EMACodebook) -> float:
        _, vectors = codebook.eval()(x)
        return (vectors - x).pow(2).mean().item()

    kmeans_init = EMACodebook(8, config).train()
    kmeans_init(x)  # the first training batch runs k-means
    random_init = EMACodebook(8, config)
    random_init.embedding.copy_(x[torch.randperm(len(x))[:16]])
    kmeans_error, random_error = quantization_error(kmeans_init), quantization_error(random_init)
    assert kmeans_error < 0.02 < 1.0 < random_error  # within-cluster variance is 0.01
    assert torch.cdist(centers, kmeans_init.embedding).min(1).values.max() < 0.1  # every cluster found


def test_ema_update_moves_codes_to_the_mean_of_their_vectors() -> None:
    codebook = EMACodebook(2, QuantizerConfig(codebook_size=4, ema_decay=0.0, dead_code_threshold=0.0)).train()
    codebook(torch.randn(256, 2))  # k-means initialisation
    x = torch.randn(256, 2)
    codes, _ = codebook(x)
    for k in codes.unique():
        torch.testing.assert_close(codebook.embedding[k], x[codes == k].mean(0), atol=1e-3, rtol=0)


def test_dead_codes_are_restarted_on_batch_vectors() -> None:
    vq = build_quantizer(4, QuantizerConfig(n_q=1, codebook_size=16, ema_decay=0.9)).levels[0]
    x = torch.randn(8, 4, 64)
    codebook = vq.codebook
    live = x.transpose(1, 2).reshape(-1, 4)[torch.randperm(512)[:8]]
    codebook.embedding.copy_(torch.cat([live, torch.full((8, 4), 100.0)]))  # codes 8..15 far away
    codebook.cluster_size.copy_(torch.cat([torch.full((8,), 50.0), torch.full((8,), 1e-3)]))
    codebook.embedding_sum.copy_(codebook.embedding * codebook.cluster_size[:, None])
    codebook.initialized.fill_(True)
    vq.eval()
    assert set(vq.encode(x).unique().tolist()) <= set(range(8))  # the far codes are dead
    vq.train()
    for _ in range(3):
        vq(x)
    assert codebook.embedding[8:].abs().max() < 5.0  # moved into the data
    assert set(range(8, 16)) <= set(vq.eval().encode(x).unique().tolist())  # and used


# --- residual quantization ------------------------------------------------------------------


def test_quantizer_dropout_gives_items_different_numbers_of_levels() -> None:
    config = QuantizerConfig(kind="factorized", n_q=8, codebook_size=32, quantizer_dropout=1.0)
    rvq = build_quantizer(16, config).train()
    x = torch.randn(48, 16, 10)
    with torch.no_grad():
        out = rvq(x)
        levels_used = []
        for b in range(len(x)):
            prefixes = [rvq.decode(out.codes[b : b + 1, :n])[0] for n in range(1, 9)]
            matches = [n for n, q in enumerate(prefixes, 1) if torch.allclose(out.quantized[b], q, atol=1e-5)]
            assert len(matches) == 1
            levels_used += matches
        assert len(set(levels_used)) >= 4 and out.codes.shape[1] == 8
        evaluated = rvq.eval()(x)
        torch.testing.assert_close(evaluated.quantized, rvq.decode(evaluated.codes), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_straight_through_passes_the_upstream_gradient_to_the_input(mode: str) -> None:
    rvq = trained("ema").train(mode == "train")
    x = torch.randn(2, 16, 20, requires_grad=True)
    upstream = torch.randn(2, 16, 20)
    rvq(x).quantized.backward(upstream)
    torch.testing.assert_close(x.grad, upstream)


def test_factorized_losses_train_encoder_and_codebook_with_cosine_lookup() -> None:
    config = QuantizerConfig(kind="factorized", n_q=2, codebook_size=32,
                             commitment_weight=0.25, codebook_weight=1.0)
    rvq = build_quantizer(16, config).train()
    x = torch.randn(2, 16, 20, requires_grad=True)
    out = rvq(x)
    assert torch.isfinite(out.commitment_loss) and out.commitment_loss > 0
    assert torch.isfinite(out.codebook_loss) and out.codebook_loss > 0
    torch.testing.assert_close(out.commitment_loss, 0.25 * out.codebook_loss)  # same mse, both weights
    out.codebook_loss.backward(retain_graph=True)
    codebook = rvq.levels[0].codebook.weight
    assert codebook.grad[out.codes[:, 0].unique()].abs().sum() > 0 and x.grad is None
    out.quantized.sum().backward()
    assert x.grad.abs().sum() > 0

    level = rvq.levels[0]
    z = torch.randn(2, 8, 30)
    codes = level.nearest(z)
    assert torch.equal(level.nearest(z * (0.1 + 10 * torch.rand(2, 1, 30))), codes)  # input norms ignored
    with torch.no_grad():
        codebook.mul_(0.1 + 10 * torch.rand(32, 1))
    assert torch.equal(level.nearest(z), codes)  # code norms ignored


def test_factorized_dead_codes_are_restarted_only_when_asked() -> None:
    config = QuantizerConfig(kind="factorized", n_q=1, codebook_size=16, codebook_dim=4, ema_decay=0.5,
                             dead_code_threshold=0.5, restart_dead_codes=True)
    level = build_quantizer(8, config).levels[0].train()
    plain = build_quantizer(8, dataclasses.replace(config, restart_dead_codes=False)).levels[0].train()
    level.load_state_dict(plain.state_dict())  # weights saved without usage statistics (init_from) load
    assert "usage" not in plain.state_dict() and (level.usage == 0.5 / (1 - 0.5)).all()
    x = torch.randn(8)[None, :, None] + 0.05 * torch.randn(4, 8, 32)  # latents around one direction v
    with torch.no_grad():  # codes 0..7 near v, codes 8..15 at -v: never picked
        v = level.project_in(x).mean((0, 2))
        level.codebook.weight[:8] = v + 0.2 * v.norm() * torch.randn(8, 4)
        level.codebook.weight[8:] = -v
        plain.codebook.weight.copy_(level.codebook.weight)
    assert set(level.nearest(level.project_in(x)).unique().tolist()) <= set(range(8))
    before = level.codebook.weight.clone()
    picked = set()
    for _ in range(2):  # usage 1 -> 0.5 + c1 / 2 -> 0.25 + c1 / 4 + c2 / 2: dead (< 0.5) if never picked
        picked |= set(level(x).codes.unique().tolist())
        plain(x)
    assert torch.equal(plain.codebook.weight, before)  # off: a forward pass never moves a code
    moved = (level.codebook.weight != before).any(1)
    never_picked = torch.tensor([code not in picked for code in range(16)])
    assert torch.equal(moved, never_picked) and moved[8:].all()  # exactly the dead codes were restarted ...
    latents = level.project_in(x).detach().transpose(1, 2).reshape(-1, 4)
    for code in level.codebook.weight[8:].detach():  # ... onto projected latents of the batch
        assert torch.isclose(latents, code).all(1).any()
    assert (level.usage[8:] > 0.5).all()  # with a fresh grace period
    assert len(level.eval().encode(x).unique()) > 8  # and now in use


RESTART_RANK_SCRIPT = """
import sys, torch, torch.distributed as dist
from codec.quantization import QuantizerConfig, build_quantizer
rank, rendezvous, result = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method="file://" + rendezvous, rank=rank, world_size=2)
torch.manual_seed(0)  # the same model on both ranks
level = build_quantizer(8, QuantizerConfig(kind="factorized", n_q=1, codebook_size=64, codebook_dim=4, ema_decay=0.5,
                                           dead_code_threshold=0.5, restart_dead_codes=True)).levels[0].train()
torch.manual_seed(1 + rank)  # different data and random draws on each rank
x = torch.randn(2, 8, 16)
for _ in range(3):
    level(x)
torch.save({"codebook": level.codebook.weight.detach(), "usage": level.usage, "x": x}, result)
dist.destroy_process_group()
"""


def test_factorized_restarts_agree_across_data_parallel_ranks(tmp_path):
    """Two gloo ranks with different batches and seeds restart the same codes onto the same latents."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", RESTART_RANK_SCRIPT, str(r), str(tmp_path / "rdv"),
                               str(tmp_path / f"{r}.pt")], env=env) for r in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    ranks = [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in range(2)]
    torch.testing.assert_close(ranks[0]["codebook"], ranks[1]["codebook"], rtol=0, atol=0)
    torch.testing.assert_close(ranks[0]["usage"], ranks[1]["usage"], rtol=0, atol=0)
    assert not torch.equal(ranks[0]["x"], ranks[1]["x"])


# --- finite scalar quantization -------------------------------------------------------------


@pytest.mark.parametrize("levels", [(8, 5, 5, 5), (2, 3, 4), (7, 5, 5, 5, 5)])
def test_fsq_round_trip_is_exact_over_the_whole_implicit_codebook(levels: tuple[int, ...]) -> None:
    fsq = FiniteScalarQuantizer(4, QuantizerConfig(kind="fsq", fsq_levels=levels))
    size = torch.tensor(levels).prod().item()
    assert fsq.codebook_size == size
    codes = torch.arange(size).view(1, 1, -1)
    values = fsq.codes_to_values(codes)  # [1, C, size]
    assert torch.equal(fsq.values_to_codes(values), codes)
    assert values.transpose(1, 2).unique(dim=1).shape[1] == size  # all grid points distinct
    half = torch.tensor(levels)[:, None] // 2
    digits = values[0] * half
    assert torch.equal(digits, digits.round())  # on the integer grid
    assert ((digits >= -half) & (digits <= torch.tensor(levels)[:, None] - 1 - half)).all()


def test_fsq_bound_reaches_every_level_and_keeps_zero() -> None:
    fsq = FiniteScalarQuantizer(4, QuantizerConfig(kind="fsq", fsq_levels=(8, 5, 2, 3)))
    values = fsq.quantize_values(5 * torch.randn(1, 4, 5000))
    assert [len(row.unique()) for row in values[0]] == [8, 5, 2, 3]
    torch.testing.assert_close(fsq.bound(torch.zeros(1, 4, 1))[:, [0, 1, 3]], torch.zeros(1, 3, 1))
    out = fsq(torch.randn(2, 4, 30))
    assert out.codes.shape == (2, 1, 30) and out.commitment_loss == 0 and out.codebook_loss == 0
    assert 0 < out.usage.item() <= 60 / 240 and 1 <= out.perplexity.item() <= 60


# --- any number of token axes ---------------------------------------------------------------

QUANTIZERS = ["vq", "vq-projected", "factorized", "rvq-ema", "rvq-factorized", "fsq"]
AXES = [(12,), (3, 4), (2, 3, 2)]  # audio [B, D, F], image [B, D, H, W], video [B, D, T, H, W]
AXIS_FIELDS = {"quantized", "codes", "first_level"}  # the result fields laid out over the axes


def tiny_quantizer(name: str, dim: int = 6) -> torch.nn.Module:
    """A tiny quantizer of each kind (levels and whole quantizers), with quantizer dropout for the RVQs."""
    kind = {"vq": "ema", "vq-projected": "ema", "factorized": "factorized", "rvq-ema": "ema",
            "rvq-factorized": "factorized", "fsq": "fsq"}[name]
    config = QuantizerConfig(kind=kind, n_q=3, codebook_size=8, codebook_dim=4, kmeans_iters=2,
                             quantizer_dropout=0.5, fsq_levels=(3, 4, 2))
    if name == "vq":
        return VectorQuantizer(dim, config)
    if name == "vq-projected":
        return VectorQuantizer(dim, config, codebook_dim=4)
    if name == "factorized":
        return FactorizedVectorQuantizer(dim, config)
    return build_quantizer(dim, config)


def result_fields(out: object) -> dict[str, torch.Tensor]:
    return {f.name: getattr(out, f.name) for f in dataclasses.fields(out) if getattr(out, f.name) is not None}


def assert_same_as_flattened(out: object, flat_out: object, axes: tuple[int, ...]) -> None:
    """A result over axes equals the result over the hand-flattened axis, reshaped back."""
    fields, flat_fields = result_fields(out), result_fields(flat_out)
    assert fields.keys() == flat_fields.keys()
    for name, value in fields.items():
        expected = flat_fields[name].unflatten(-1, axes) if name in AXIS_FIELDS else flat_fields[name]
        assert value.shape == expected.shape and torch.equal(value, expected), name


@pytest.mark.parametrize("axes", AXES)
@pytest.mark.parametrize("name", QUANTIZERS)
def test_eval_encode_decode_forward_over_axes_equal_flattened(name: str, axes: tuple[int, ...]) -> None:
    quantizer = tiny_quantizer(name).eval()
    x = torch.randn(2, 6, *axes)
    flat = x.flatten(2)  # [B, D, N] by hand
    codes, flat_codes = quantizer.encode(x), quantizer.encode(flat)
    level_dims = 1 if name in ("vq", "vq-projected", "factorized") else 2  # [B, *axes] or [B, Q, *axes]
    assert codes.shape == (*flat_codes.shape[:level_dims], *axes)
    assert torch.equal(codes, flat_codes.unflatten(-1, axes))
    decoded = quantizer.decode(codes)
    assert decoded.shape == x.shape and torch.equal(decoded, quantizer.decode(flat_codes).unflatten(-1, axes))
    with torch.no_grad():
        assert_same_as_flattened(quantizer(x), quantizer(flat), axes)
    if level_dims == 2:
        assert_same_as_flattened(quantizer(x), quantizer(x.reshape(2, 6, -1)), axes)  # and with gradients


@pytest.mark.parametrize("axes", AXES[1:])
@pytest.mark.parametrize("name", QUANTIZERS)
def test_training_forward_over_axes_equals_flattened(name: str, axes: tuple[int, ...]) -> None:
    """Same codes, losses, metrics, input gradients and codebook updates (k-means, EMA, dead codes, dropout)."""
    quantizer = tiny_quantizer(name).train()
    twin = copy.deepcopy(quantizer)  # identical start: EMA codebooks learn from what they see
    x = torch.randn(4, 6, *axes, requires_grad=True)
    flat = x.detach().flatten(2).requires_grad_()
    upstream = torch.randn(x.shape)
    for step in range(2):  # the first EMA step runs k-means, the second the EMA update
        torch.manual_seed(step)
        out = quantizer(x)
        torch.manual_seed(step)
        flat_out = twin(flat)
        assert_same_as_flattened(out, flat_out, axes)
        (out.quantized * upstream).sum().add(out.commitment_loss.sum()).backward()
        (flat_out.quantized * upstream.flatten(2)).sum().add(flat_out.commitment_loss.sum()).backward()
        assert torch.equal(x.grad, flat.grad.unflatten(-1, axes))
        for (key, value), (_, twin_value) in zip(quantizer.state_dict().items(), twin.state_dict().items()):
            assert torch.equal(value, twin_value), key
    if name.startswith("rvq"):  # with these seeds quantizer dropout acts: some items use fewer levels
        for step in range(2):
            torch.manual_seed(step)
            assert (quantizer._active_levels(4, 3, x.device) < 3).any()


def test_codebook_metrics_over_axes_equal_flattened() -> None:
    codes = torch.randint(0, 8, (2, 3, 4, 5))  # [B, Q, H, W]
    for value, flat_value in zip(codebook_metrics(codes, 8), codebook_metrics(codes.flatten(2), 8)):
        assert torch.equal(value, flat_value)


@pytest.mark.parametrize("name", QUANTIZERS)
def test_wrong_shapes_give_a_clear_error(name: str) -> None:
    quantizer = tiny_quantizer(name).eval()
    with pytest.raises(ValueError, match=r"expected a latent \[B, D=6, \*axes\] with at least one axis, got shape \(2, 6\)"):
        quantizer.encode(torch.randn(2, 6))
    with pytest.raises(ValueError, match=r"D=6.*got shape \(2, 5, 3, 3\)"):
        quantizer(torch.randn(2, 5, 3, 3))
    no_axis = torch.zeros(2, dtype=torch.long) if name in ("vq", "vq-projected", "factorized") else torch.zeros(2, 1, dtype=torch.long)
    with pytest.raises(ValueError, match=r"expected codes \[B, (Q, )?\*axes\] with at least one axis"):
        quantizer.decode(no_axis)
