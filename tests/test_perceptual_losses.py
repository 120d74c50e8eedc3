"""Perceptual losses through frozen pretrained networks: gradients, freezing, real-speech behaviour."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import nn

from codec.errors import CodecError
from codec.losses.perceptual import (
    ECAPASpeakerLoss,
    EmotionLoss,
    GE2ESpeakerLoss,
    PitchLoss,
    SemanticDistillationLoss,
    SpeechBrainEmbeddingLoss,
    SSLModel,
    load_ssl_model,
)
from codec.losses.perceptual.ge2e import bundled_weights_path

DEVSPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "devspeech"
SR = 24000  # the codec's rate in these tests: every loss resamples to its network's rate

PRETRAINER = """\
modules: {%s}
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables: {%s: !ref <%s>}
    paths: {%s: !ref <pretrained_path>/%s.ckpt}
"""
ECAPA_YAML = """\
sample_rate: 16000
pretrained_path: unused
compute_features: !new:speechbrain.lobes.features.Fbank {n_mels: 24}
mean_var_norm: !new:speechbrain.processing.features.InputNormalization {norm_type: sentence, std_norm: False}
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    {input_size: 24, channels: [16, 16, 16, 16, 48], attention_channels: 8, se_channels: 8, res2net_scale: 2}
""" + PRETRAINER % (
    "compute_features: !ref <compute_features>, mean_var_norm: !ref <mean_var_norm>, "
    "embedding_model: !ref <embedding_model>", *["embedding_model"] * 4
)
WAV2VEC2_YAML = """\
sample_rate: 16000
pretrained_path: unused
wav2vec2: !new:speechbrain.nnet.CNN.Conv1d {input_shape: [null, null], out_channels: 8, kernel_size: 401, stride: 160}
avg_pool: !new:speechbrain.nnet.pooling.StatisticsPooling {return_std: False}
""" + PRETRAINER % ("wav2vec2: !ref <wav2vec2>, avg_pool: !ref <avg_pool>", *["wav2vec2"] * 4)


def need(package: str) -> None:
    """Skip when an optional package holding a network (or its weights) is not installed."""
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed")


def _speechbrain_folder(folder: Path, yaml: str, module: str, seed: int) -> Path:
    """Write ``yaml`` and a random-weight checkpoint for ``module`` built from it."""
    need("speechbrain")
    from hyperpyyaml import load_hyperpyyaml

    folder.mkdir(parents=True)
    (folder / "hyperparams.yaml").write_text(yaml)
    torch.manual_seed(seed)
    net = load_hyperpyyaml(yaml)[module]
    torch.save(net.state_dict(), folder / f"{module}.ckpt")
    return folder


@pytest.fixture(scope="module")
def ecapa_dir(tmp_path_factory) -> Path:
    return _speechbrain_folder(tmp_path_factory.mktemp("sb") / "tiny-ecapa", ECAPA_YAML, "embedding_model", 1)


def tiny_wav2vec2(seed: int) -> nn.Module:
    """A 2-layer, 32-dim wav2vec2-family model with the real 320-sample (20 ms) frame hop."""
    from torchaudio.models import wav2vec2_model

    torch.manual_seed(seed)
    convs = [(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2
    return wav2vec2_model("group_norm", convs, False, 32, 0.0, 16, 4, 2, 4, 0.0, 64, 0.0, 0.0, False, 0.0, None)


@pytest.fixture(scope="module")
def clip(speech) -> torch.Tensor:
    """Two different 1.8 s crops (start and end) of a real speech clip at SR: [2, 1, T]."""
    data, sr = speech
    x = AF.resample(torch.from_numpy(data), sr, SR)
    n = int(1.8 * SR)
    return torch.stack([x[:n], x[-n:]])[:, None]


@pytest.fixture(scope="module", params=["ge2e", "pitch", "ecapa", "emotion"])
def loss(request, tmp_path_factory) -> nn.Module:
    if request.param == "ge2e":
        need("resemblyzer")
        return GE2ESpeakerLoss(SR)
    if request.param == "pitch":
        need("torchcrepe")
        return PitchLoss(SR, hop_ms=20.0)
    if request.param == "ecapa":
        return ECAPASpeakerLoss(SR, str(request.getfixturevalue("ecapa_dir")))
    folder = _speechbrain_folder(tmp_path_factory.mktemp("sb") / "tiny-w2v", WAV2VEC2_YAML, "wav2vec2", 2)
    return EmotionLoss(SR, str(folder))


def test_gradient_reaches_pred(loss, clip):
    torch.manual_seed(0)
    pred = (clip + 0.02 * torch.randn_like(clip)).requires_grad_(True)
    value = loss(pred, clip)
    value.backward()
    assert value.dim() == 0 and value.item() > 0
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_identical_inputs_give_zero(loss, clip):
    stereo = torch.cat([clip, clip.flip(-1)], 1)  # [2, 2, T]: channels are folded into the batch
    assert abs(loss(clip, clip.clone()).item()) < 1e-6
    assert abs(loss(stereo, stereo.clone()).item()) < 1e-6


def test_frozen_through_parent_training(loss, clip):
    parent = nn.Module()
    parent.gen = nn.Conv1d(1, 1, 3, padding=1)
    parent.loss = loss
    frozen = [m for m in loss.modules() if m.__class__.__name__ == "Frozen"]
    assert frozen and all(not p.requires_grad for m in frozen for p in m.parameters())
    before = {k: v.clone() for m in frozen for k, v in nn.Module.state_dict(m).items()}
    gen_before = parent.gen.weight.detach().clone()
    parent.train()
    assert all(not m.training for f in frozen for m in f.modules())
    optimizer = torch.optim.AdamW(parent.parameters(), lr=1e-2)
    parent.loss(parent.gen(clip), clip).backward()
    optimizer.step()
    after = {k: v for m in frozen for k, v in nn.Module.state_dict(m).items()}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(gen_before, parent.gen.weight)
    # the pretrained weights stay out of the owner's checkpoint, which still loads strictly
    state = parent.state_dict()
    assert set(state) == {"gen.weight", "gen.bias"}
    parent.load_state_dict(state, strict=True)
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # resemblyzer imports scipy.ndimage.morphology
def test_ge2e_matches_resemblyzer(monkeypatch):
    """Our embedding equals resemblyzer's VoiceEncoder.embed_utterance on a real 2.7 s clip."""
    need("resemblyzer")
    vad = types.ModuleType("webrtcvad")  # resemblyzer imports webrtcvad (needs pkg_resources)
    vad.Vad = lambda mode=3: types.SimpleNamespace(is_speech=lambda buf, sample_rate: True)
    monkeypatch.setitem(sys.modules, "webrtcvad", vad)
    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import normalize_volume

    data, sr = sf.read(Path(__file__).resolve().parents[1] / "samples" / "arctic_slt_a0009.flac", dtype="float32")
    wav = normalize_volume(data[: int(2.7 * sr)], -30, increase_only=True).astype(np.float32)
    reference = VoiceEncoder("cpu", verbose=False).embed_utterance(wav)
    loss = GE2ESpeakerLoss(16000)
    with torch.no_grad():
        ours = loss.embed(torch.from_numpy(wav)[None, None])[0].numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def _devspeech(kind: str) -> list[np.ndarray]:
    need("resemblyzer")
    if not DEVSPEECH.is_dir():
        pytest.skip("devspeech is not available")
    rows = [json.loads(line) for line in (DEVSPEECH / "manifest.jsonl").read_text().splitlines()]
    paths = sorted(r["path"] for r in rows if r["path"].startswith(kind) and r["duration_s"] >= 2.6)
    return [sf.read(DEVSPEECH / p, dtype="float32")[0][:40000] for p in paths[:5]]


def test_ge2e_separates_real_speakers():
    allison, librivox, arctic = _devspeech("real/asterisk_en"), _devspeech("real/librivox"), _devspeech("real/arctic")
    awb, slt = arctic
    a, lv = allison, librivox
    same = [(a[0], a[1]), (a[2], a[3]), (lv[0], lv[1]), (lv[2], lv[3])]
    different = [(a[0], lv[0]), (a[1], lv[1]), (a[2], slt), (slt, awb), (lv[2], awb)]
    loss = GE2ESpeakerLoss(16000)

    def distances(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        as_batch = lambda clip: torch.from_numpy(clip)[None, None]  # noqa: E731
        with torch.no_grad():
            return np.array([loss(as_batch(x), as_batch(y)).item() for x, y in pairs])

    d_same, d_diff = distances(same), distances(different)
    assert d_diff.mean() > 2 * d_same.mean()
    assert d_diff.min() > d_same.max()


def _shift_up(x: torch.Tensor, ratio: tuple[int, int] = (9, 8)) -> torch.Tensor:
    """Raise the pitch by ratio (9/8: 2.04 semitones) keeping the duration: phase vocoder + resample."""
    n_fft, hop = 512, 128
    window = torch.hann_window(n_fft)
    spec = torch.stft(x.flatten(0, -2), n_fft, hop, window=window, return_complex=True)
    advance = torch.linspace(0, math.pi * hop, spec.shape[-2])[:, None]
    slow = AF.phase_vocoder(spec, ratio[1] / ratio[0], advance)
    y = torch.istft(slow, n_fft, hop, window=window, length=x.shape[-1] * ratio[0] // ratio[1])
    return AF.resample(y, ratio[0], ratio[1])[..., : x.shape[-1]].reshape(x.shape)


def test_pitch_loss_prefers_noise_to_a_pitch_shift(speech):
    need("torchcrepe")
    torch.manual_seed(0)
    x = torch.from_numpy(speech[0])[None, None]
    loss = PitchLoss(speech[1])
    noisy = x + 0.01 * x.std() * torch.randn_like(x)  # 40 dB SNR
    with torch.no_grad():
        d_shift, d_noise = loss(_shift_up(x), x).item(), loss(noisy, x).item()
    assert d_shift > 1.0 > 0.2 > d_noise


def test_pitch_analysis_matches_torchcrepe(speech, monkeypatch):
    torchcrepe = pytest.importorskip("torchcrepe")

    monkeypatch.setattr(torchcrepe.convert, "dither", lambda cents: cents)
    x = torch.from_numpy(speech[0][:24000])[None]
    loss = PitchLoss(16000, min_std=1e-10)
    with torch.no_grad():
        cents, periodicity = loss.analyse(x[None])
        f0, reference = torchcrepe.predict(
            x, 16000, 160, model="tiny", decoder=torchcrepe.decode.weighted_argmax, return_periodicity=True
        )
    torch.testing.assert_close(periodicity, reference, atol=1e-5, rtol=0)
    voiced = reference > 0.5
    assert voiced.sum() > 20
    # torchcrepe weights the local average by sigmoid(activation), we by the activation (as CREPE)
    assert (cents - 1200 * torch.log2(f0 / 10))[voiced].abs().max() < 20  # one bin


def test_pitch_full_model_loads():
    need("torchcrepe")
    loss = PitchLoss(16000, model="full")
    x = torch.randn(1, 1, 1600)
    assert abs(loss(x, x.clone()).item()) < 1e-6
    with pytest.raises(CodecError):
        PitchLoss(16000, model="huge")  # type: ignore[arg-type]


def test_speechbrain_loader_matches_encoder_classifier(ecapa_dir, clip, tmp_path):
    from speechbrain.inference.classifiers import EncoderClassifier

    loss = SpeechBrainEmbeddingLoss(16000, str(ecapa_dir))
    saved = torch.load(ecapa_dir / "embedding_model.ckpt", weights_only=True)
    loaded = loss.net.net.mods["embedding_model"].state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    reference = EncoderClassifier.from_hparams(
        source=str(ecapa_dir), savedir=str(tmp_path / "sb"), overrides={"pretrained_path": str(ecapa_dir)}
    )
    with torch.no_grad():
        torch.testing.assert_close(loss.embed(clip), reference.encode_batch(clip[:, 0]).squeeze(1))


def test_speechbrain_hub_id_offline_names_local_folder(tmp_path, monkeypatch):
    need("speechbrain")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, no retries
    with pytest.raises(CodecError, match="not available offline.*local folder.*hyperparams.yaml"):
        SpeechBrainEmbeddingLoss(16000, "speechbrain/spkrec-ecapa-voxceleb", savedir=str(tmp_path / "sb"))
    with pytest.raises(CodecError, match="does not exist"):
        ECAPASpeakerLoss(16000, str(tmp_path / "no" / "such" / "folder"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CodecError, match="hyperparams.yaml"):
        ECAPASpeakerLoss(16000, str(tmp_path / "empty"))


def test_ge2e_missing_weights_names_the_bundled_file(tmp_path):
    need("resemblyzer")
    with pytest.raises(CodecError, match=r"not found at .*missing\.pt.*resemblyzer.*pretrained\.pt"):
        GE2ESpeakerLoss(16000, weights_path=str(tmp_path / "missing.pt"))
    assert bundled_weights_path().is_file()


@pytest.fixture(scope="module")
def ssl_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ssl") / "tiny.pt"
    torch.save(tiny_wav2vec2(0).state_dict(), path)
    return path


def test_ssl_loader_roundtrip(ssl_file, tmp_path):
    from safetensors.torch import save_file

    reference = tiny_wav2vec2(0).eval()
    save_file(reference.state_dict(), tmp_path / "tiny.safetensors")
    wav = torch.randn(2, 8000)
    expected = reference.extract_features(wav, num_layers=2)[0]
    for path in (ssl_file, tmp_path / "tiny.safetensors"):
        loaded = load_ssl_model(path, tiny_wav2vec2(5), layer=2)
        assert isinstance(loaded, SSLModel) and loaded.dim == 32
        features = loaded.model.eval().extract_features(wav, num_layers=2)[0]
        torch.testing.assert_close(features, expected)
        assert features[1].shape == (2, 24, 32)  # 8000 samples at a 320-sample hop


def test_ssl_loader_errors(ssl_file, tmp_path):
    with pytest.raises(CodecError, match=r"not found at .*hubert\.pt.*download\.pytorch\.org.*hubert_fairseq_base"):
        load_ssl_model(tmp_path / "hubert.pt", "hubert_base", layer=9)
    with pytest.raises(CodecError, match="does not hold weights for wav2vec2_base"):
        load_ssl_model(ssl_file, "wav2vec2_base", layer=6)
    with pytest.raises(CodecError, match="between 1 and 2"):
        load_ssl_model(ssl_file, tiny_wav2vec2(1), layer=3)


def test_semantic_distillation(ssl_file, clip):
    ssl, ssl_dim = load_ssl_model(ssl_file, tiny_wav2vec2(1), layer=1)
    torch.manual_seed(0)
    loss = SemanticDistillationLoss(16, ssl, ssl_dim, layer=1, sample_rate=SR)
    codes = torch.randn(2, 16, 45, requires_grad=True)  # e.g. 45 codec frames for 1.8 s
    value = loss(codes, clip)
    value.backward()
    assert 0 < value.item() < 2
    assert torch.isfinite(codes.grad).all() and codes.grad.abs().sum() > 0
    assert loss.proj.weight.grad is not None and loss.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in ssl.parameters())
    assert set(loss.state_dict()) == {"proj.weight", "proj.bias"}
    loss.train()
    assert not any(m.training for m in ssl.modules())
    ssl_before = {k: v.clone() for k, v in ssl.state_dict().items()}
    proj_before = loss.proj.weight.detach().clone()
    torch.optim.AdamW(loss.parameters(), lr=1e-2).step()
    assert all(torch.equal(v, ssl.state_dict()[k]) for k, v in ssl_before.items())
    assert not torch.equal(proj_before, loss.proj.weight)

    # the projection is what is trained: with W = I, features equal to the SSL target give 0
    same = SemanticDistillationLoss(ssl_dim, ssl, ssl_dim, layer=1, sample_rate=SR)
    with torch.no_grad():
        same.proj.weight.copy_(torch.eye(ssl_dim))
        same.proj.bias.zero_()
        target = same.ssl_features(clip)
        assert target.shape == (2, ssl_dim, 89)  # 1.8 s at 50 Hz, unpadded 400-sample receptive field
        assert abs(same(target, clip).item()) < 1e-6
        assert same(target[..., ::2], clip).item() < 0.1 * value.item()  # half-rate frames, interpolated
    with pytest.raises(CodecError, match="no 48-dimensional layer 1"):
        SemanticDistillationLoss(16, ssl, 48, layer=1, sample_rate=SR)(codes, clip)
