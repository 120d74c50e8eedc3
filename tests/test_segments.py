"""Segmented file coding of non-causal models: a fixed grid, bounded memory, exact pieces."""

from __future__ import annotations

from dataclasses import replace

import pytest
import soundfile as sf
import torch

from codec.audio import AudioCodec
from codec.audio.bitstream import CdcHeader, decode_cdc, encode_cdc
from codec.audio.compress import decode_audio, encode_audio
from codec.audio.io import Audio
from codec.audio.presets import tiny
from codec.audio.segments import SegmentGrid, model_grid

from .conftest import SAMPLES


def _non_causal(**options) -> AudioCodec:
    """A tiny non-causal model whose codebooks were k-means-initialised on real speech."""
    torch.manual_seed(0)
    config = tiny()
    model = AudioCodec(replace(config, seanet=replace(config.seanet, causal=False, pad_mode="reflect"), **options))
    data, _ = sf.read(SAMPLES / "arctic_awb_a0007.flac", dtype="float32")
    with torch.no_grad():
        model.train()(torch.from_numpy(data[None, None, :16000]))
    return model.eval()


def test_grid_spans():
    assert SegmentGrid(100, 90, 250).spans() == [(0, 100), (90, 100), (180, 70)]
    assert SegmentGrid(100, 90, 60).spans() == [(0, 60)]  # shorter than a segment: one piece
    assert SegmentGrid(100, 90, 185).spans() == [(0, 100), (90, 95), (180, 5)]  # two partial segments
    assert SegmentGrid(100, 90, 185).frames(16) == [7, 6, 1] and SegmentGrid(100, 90, 185).num_segments == 3
    model = _non_causal(segment_seconds=0.5, segment_overlap=0.1)
    assert model_grid(model, 20000, 10.0) == SegmentGrid(8000, 7200, 20000)
    assert model_grid(_non_causal(), 20000, 1.0) == SegmentGrid(16000, 15840, 20000)  # default: 1% overlap


@torch.inference_mode()  # as encode_audio: its kernels may round differently from grad mode
def test_long_input_is_coded_segment_by_segment(speech):
    """The model never sees more than one segment; each segment's codes are those of coding it
    alone; decoded audio is that segment's outside the overlaps and a blend of both inside."""
    model = _non_causal()
    x = torch.from_numpy(speech[0][None, :40000])
    seen = []
    encode = model.encode
    model.encode = lambda audio, n_q=None: seen.append(audio.shape[-1]) or encode(audio, n_q)
    encoded = encode_audio(model, Audio(x, 16000), 3, chunk_seconds=1.0)
    header, codes = CdcHeader.for_encoded(encoded, "m", "0" * 16), encoded.codes
    assert max(seen) == 16000 and (header.segment_samples, header.segment_stride) == (16000, 15840)
    spans = header.grid.spans()
    assert spans == [(0, 16000), (15840, 16000), (31680, 8320)] and not header.normalized and encoded.scales is None
    pieces = [encode(x[None, :, s:s + n], 3)[0] for s, n in spans]
    assert torch.equal(codes[0], torch.cat(pieces, -1)) and len(codes.unique()) > 20
    back, back_codes = decode_cdc(encode_cdc(header, codes))
    decoded = decode_audio(model, back.encoded(back_codes)).samples
    alone = [model.decode(p[None], n)[0] for p, (_, n) in zip(pieces, spans)]
    torch.testing.assert_close(decoded[:, 200:15800], alone[0][:, 200:15800], atol=1e-6, rtol=0)
    torch.testing.assert_close(decoded[:, 16100:31600], alone[1][:, 260:15760], atol=1e-6, rtol=0)
    overlap = decoded[:, 15840:16000]  # a convex blend of the two segments' audio
    low = torch.minimum(alone[0][:, 15840:], alone[1][:, :160])
    high = torch.maximum(alone[0][:, 15840:], alone[1][:, :160])
    assert bool(((overlap >= low - 1e-6) & (overlap <= high + 1e-6)).all())


@torch.inference_mode()
def test_short_input_is_one_pass(speech):
    model = _non_causal()
    x = torch.from_numpy(speech[0][None, :12345])
    encoded = encode_audio(model, Audio(x, 16000), 4)
    codes = encoded.codes
    assert torch.equal(codes, model.encode(x[None], 4)) and len(encoded.grid.spans()) == 1
    decoded = decode_audio(model, encoded).samples
    torch.testing.assert_close(decoded, model.decode(codes, 12345)[0], atol=1e-6, rtol=0)


def test_normalized_segments_store_their_scale(speech):
    """normalize=True: each segment is coded divided by its RMS; loud and quiet copies of the same
    audio give the same codes and scales in proportion."""
    model = _non_causal(segment_seconds=0.5, normalize=True)
    x = torch.from_numpy(speech[0][None, :20000])
    loud_encoded = encode_audio(model, Audio(x, 16000), 2)
    quiet_encoded = encode_audio(model, Audio(x * 0.125, 16000), 2)
    loud_header, loud = CdcHeader.for_encoded(loud_encoded, "m", "0" * 16), loud_encoded.codes
    quiet_header, quiet = CdcHeader.for_encoded(quiet_encoded, "m", "0" * 16), quiet_encoded.codes
    assert len(loud_header.scales) == 3 and loud_encoded.scales.shape == (1, 3)
    assert (loud == quiet).float().mean() > 0.97  # equal but for near ties (x / s rounds differently)
    plain = _non_causal(segment_seconds=0.5)  # the same weights, without normalisation
    assert (encode_audio(plain, Audio(x * 0.125, 16000), 2).codes == quiet).float().mean() < 0.5
    assert quiet_header.scales == pytest.approx([s * 0.125 for s in loud_header.scales], rel=1e-5)
    loud_audio = decode_audio(model, loud_encoded).samples
    quiet_audio = decode_audio(model, quiet_header.encoded(quiet)).samples  # the scales as the file stores them
    torch.testing.assert_close(quiet_audio, loud_audio * 0.125, atol=1e-6, rtol=1e-4)


def test_segment_options_are_for_non_causal_models():
    with pytest.raises(ValueError, match="non-causal"):
        replace(tiny(), normalize=True)
    with pytest.raises(ValueError, match="segment_overlap"):
        replace(tiny(), segment_overlap=1.0)
