"""The checks every Tokenizer must pass (audio codecs now; image and video tokenizers reuse them)."""

from __future__ import annotations

import torch

from codec.tokens import Tokenizer


@torch.no_grad()
def check_tokenizer(model: Tokenizer, x: torch.Tensor, seconds: float | None = None) -> None:
    """Assert the Tokenizer contract on input ``x`` (audio [B, C, T], image [B, C, H, W], video
    [B, C, T, H, W]); ``seconds``: the duration of x for a spec with a frame rate."""
    assert isinstance(model, Tokenizer)
    spec = model.token_spec
    latent = model.encode_latent(x)
    codes = model.encode(x)
    # layout: codes [B, Q, *axes], latent [B, D, *axes], codes within their codebooks
    assert codes.dtype == torch.int64 and codes.shape == (x.shape[0], spec.n_q, *latent.shape[2:])
    assert latent.shape[1] == spec.latent_dim
    sizes = torch.tensor(spec.codebook_sizes).view(1, -1, *[1] * (codes.dim() - 2))
    assert bool((codes >= 0).all()) and bool((codes < sizes).all())
    token_axes = codes.shape[3:] if spec.modality == "video" or spec.frame_rate is not None else codes.shape[2:]
    assert spec.grid == tuple(token_axes if spec.modality != "audio" else ())
    frames = codes.shape[2] if spec.frame_rate is not None else 1
    assert codes[0].numel() == spec.num_tokens(frames)
    if seconds is not None:
        assert frames == spec.num_frames(seconds)
    # encode = quantize_latent o encode_latent, decode = decode_latent o dequantize
    assert torch.equal(codes, model.quantize_latent(latent))
    y = model.decode(codes)
    assert torch.equal(y, model.decode_latent(model.dequantize(codes)))
    assert y.shape[:2] == x.shape[:2] and bool(torch.isfinite(y).all())
    assert model.dequantize(codes).shape == latent.shape
    # the number of levels
    full = spec.n_q
    for bad in (0, full + 1):
        try:
            model.set_num_codebooks(bad)
        except ValueError:
            pass
        else:
            raise AssertionError(f"set_num_codebooks({bad}) was accepted")
    assert model.token_spec == spec
    if spec.residual:
        for n_q in sorted({1, max(1, full // 2)}):
            model.set_num_codebooks(n_q)
            assert model.token_spec == spec.with_num_codebooks(n_q)
            assert torch.equal(model.encode(x), codes[:, :n_q])  # a prefix of the levels
            assert model.decode(codes[:, :n_q]).shape == y.shape
        model.set_num_codebooks(full)
        if full > 1:
            assert spec.with_num_codebooks(1).bits_per_frame < spec.bits_per_frame
    assert model.token_spec == spec
