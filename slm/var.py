"""NextScaleLM: class-conditional next-scale prediction over a multi-scale tokenizer's codes (VAR,
arXiv 2404.02905).

The tokenizer (codec/image/multiscale.py) codes an image as token maps of sides s_1 < ... < s_K,
flattened coarse to fine into N = sum(s_k^2) tokens. The model's sequence has the same N steps:

    steps of scale 1    the class token (a learned embedding of the label, one per position of s_1 x s_1;
                        VAR's 1 x 1 start token)
    steps of scale k>1  linear(area-downsample(f_hat_(k-1)) to s_k x s_k), f_hat_(k-1) the tokenizer's
                        partial latent after scales 1..k-1 (``partial_latent``)

each plus a learned embedding of its scale and a learned table of the N positions (VAR's absolute
positions, which tell a step its row and column in its map), on top of the transformer's RoPE over
the flattened sequence. Attention is block-causal: every step of scale k sees all steps of scales
<= k and none after (``block_causal_mask``), so one pass with teacher forcing scores every scale, and
the step at position p of scale k predicts the code of scale k at p.

Generation runs scale by scale: one transformer pass per scale samples all its s_k^2 codes in
parallel (temperature / top-k), the partial latent of the codes so far gives the next scale's input.
Each pass recomputes the whole prefix (no KV cache: the sequence is at most N steps; the bidirectional
transformer has no cache). Classifier-free guidance uses the null class (labels dropped to it with
probability ``cond_dropout`` in training) in a second branch batched with the first, counted as a
second forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import accumulate

import torch
import torch.nn.functional as F
from torch import Tensor, nn


from .sampling import SamplingConfig, sample
from .transformer import Transformer, TransformerConfig
from .visual_generation import Generated, GenerationOptions, check_tokenizer


def _bidirectional() -> TransformerConfig:
    return TransformerConfig(causal=False)


@dataclass(frozen=True)
class NextScaleLMConfig:
    scales: tuple[int, ...]  # sides of the token maps, coarse to fine (the tokenizer's)
    codebook_size: int  # codes of the tokenizer's single codebook
    latent_dim: int  # D of the tokenizer's latent f_hat
    num_classes: int  # labels 0 .. num_classes - 1; num_classes is the null class (guidance)
    tokenizer: str  # the tokenizer whose codes these are (a name or path)
    tokenizer_fingerprint: str  # its codec.checkpoint.model_fingerprint
    cond_dropout: float = 0.1  # training probability of the null class
    transformer: TransformerConfig = field(default_factory=_bidirectional)  # causal=False

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", tuple(self.scales))  # lists from JSON configs
        if not self.scales or self.scales[0] < 1 or any(a >= b for a, b in zip(self.scales, self.scales[1:])):
            raise ValueError(f"scales must be increasing positive sides, got {self.scales}")
        if self.codebook_size < 2 or self.latent_dim < 1 or self.num_classes < 1:
            raise ValueError(f"need codebook_size >= 2, latent_dim >= 1 and num_classes >= 1, got "
                             f"{self.codebook_size}, {self.latent_dim} and {self.num_classes}")
        if not 0 <= self.cond_dropout < 1:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.transformer.causal:
            raise ValueError("transformer.causal must be false: next-scale prediction attends within a scale "
                             "(the block-causal mask keeps later scales out)")
        if self.transformer.max_steps < self.num_tokens:
            raise ValueError(f"transformer.max_steps ({self.transformer.max_steps}) is below the sequence length "
                             f"sum(s^2) = {self.num_tokens}")

    @property
    def num_tokens(self) -> int:
        """N = sum(s_k^2): tokens per image, and the sequence length."""
        return sum(s * s for s in self.scales)


@dataclass
class NextScaleLMOutput:
    loss: Tensor  # mean cross-entropy of every code of every scale
    accuracy: Tensor  # fraction of codes the argmax gets right


def scale_index(scales: tuple[int, ...]) -> Tensor:
    """The scale (0 .. K-1) of each of the N = sum(s^2) steps: [N] long."""
    return torch.cat([torch.full((s * s,), k) for k, s in enumerate(scales)])


def block_causal_mask(scales: tuple[int, ...]) -> Tensor:
    """[N, N] bool, True where step i may attend to step j: scale(j) <= scale(i)."""
    index = scale_index(scales)
    return index[:, None] >= index[None, :]


class NextScaleLM(nn.Module):
    """[B] labels -> codes [B, 1, 1, N] of a MultiScaleTokenizer, one scale per forward pass."""

    model_type = "next_scale_lm"
    config_class = NextScaleLMConfig

    def __init__(self, config: NextScaleLMConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.transformer.dim
        self.classes = nn.Embedding(config.num_classes + 1, dim)  # the last row: the null class
        self.input = nn.Linear(config.latent_dim, dim)
        self.scale_embedding = nn.Embedding(len(config.scales), dim)
        self.positions = nn.Parameter(torch.randn(config.num_tokens, dim) * 0.02)
        self.transformer = Transformer(config.transformer)
        self.head = nn.Linear(dim, config.codebook_size)
        self.register_buffer("scale_of_step", scale_index(config.scales), persistent=False)  # [N]
        self.register_buffer("mask", block_causal_mask(config.scales), persistent=False)  # [N, N]

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def check_tokenizer(self, tokenizer: nn.Module) -> None:
        """CodecError unless ``tokenizer`` is the one the config names (by fingerprint)."""
        check_tokenizer(tokenizer, self.config.tokenizer, self.config.tokenizer_fingerprint)

    # --- inputs ---------------------------------------------------------------------------------
    def _scale_input(self, f_hat: Tensor, k: int) -> Tensor:
        """The partial latent f_hat [B, D, h, w] after scales < k -> the inputs of scale k [B, s_k^2, dim]."""
        side = self.config.scales[k]
        return self.input(F.interpolate(f_hat, size=(side, side), mode="area").flatten(2).transpose(1, 2))

    def _sequence(self, labels: Tensor, scale_inputs: list[Tensor]) -> Tensor:
        """Labels [B] and the inputs of scales 2..k -> the first N_k steps [B, N_k, dim] with their embeddings."""
        first = self.config.scales[0] ** 2
        parts = [self.classes(labels)[:, None].expand(-1, first, -1)] + scale_inputs
        x = torch.cat(parts, dim=1)
        n = x.shape[1]
        return x + self.scale_embedding(self.scale_of_step[:n]) + self.positions[:n]

    def _logits(self, x: Tensor) -> Tensor:
        """Steps [B, N_k, dim] of the first k scales -> logits [B, N_k, codebook_size]."""
        n = x.shape[1]
        return self.head(self.transformer(x, attn_mask=self.mask[:n, :n]))

    def _check_inputs(self, labels: Tensor, tokenizer: nn.Module) -> None:
        found = (tuple(tokenizer.scales), tokenizer.config.latent_dim, tokenizer.token_spec.codebook_sizes[0])
        wanted = (self.config.scales, self.config.latent_dim, self.config.codebook_size)
        if found != wanted:
            raise ValueError(f"the tokenizer's (scales, latent_dim, codebook_size) {found} are not the model's "
                             f"{wanted}")
        if labels.dim() != 1 or labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < self.null_class:
            raise ValueError(f"labels must be [B] class indices in 0..{self.null_class - 1}, got {labels.tolist()}")

    # --- training ---------------------------------------------------------------------------------
    def forward(self, codes: Tensor, labels: Tensor, tokenizer: nn.Module,
                generator: torch.Generator | None = None) -> NextScaleLMOutput:
        """Teacher-forced loss of codes [B, 1, 1, N] given labels [B]; the inputs come from ``tokenizer``'s
        partial latents of the true codes (no gradient into it). The tokenizer must be the config's:
        check it once with ``check_tokenizer`` (hashing its weights every step would be slow)."""
        self._check_inputs(labels, tokenizer)
        if codes.shape[0] != labels.shape[0] or codes.shape[1:] != (1, 1, self.config.num_tokens):
            raise ValueError(f"expected codes [B={labels.shape[0]}, 1, 1, {self.config.num_tokens}], "
                             f"got {tuple(codes.shape)}")
        if self.training and self.config.cond_dropout > 0:
            where = generator.device if generator is not None else labels.device  # a generator draws on its device
            drop = torch.rand(labels.shape, generator=generator, device=where).to(labels.device)
            drop = drop < self.config.cond_dropout
            labels = torch.where(drop, torch.full_like(labels, self.null_class), labels)
        ends = list(accumulate(s * s for s in self.config.scales))  # N_1, ..., N_K
        with torch.no_grad():
            partials = [tokenizer.partial_latent(codes[..., :end]) for end in ends[:-1]]  # f_hat after 1..K-1
        inputs = [self._scale_input(f_hat, k + 1) for k, f_hat in enumerate(partials)]
        logits = self._logits(self._sequence(labels, inputs))  # [B, N, K]
        targets = codes.flatten(1)  # [B, N]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        accuracy = (logits.argmax(-1) == targets).float().mean()
        return NextScaleLMOutput(loss, accuracy)

    # --- generation -------------------------------------------------------------------------------
    def forward_passes(self, options: GenerationOptions) -> int:
        """Transformer passes of one ``generate`` call: one per scale, twice with guidance."""
        return len(self.config.scales) * (2 if options.cfg != 1 else 1)

    @torch.no_grad()
    def generate_codes(self, labels: Tensor, tokenizer: nn.Module, options: GenerationOptions = GenerationOptions(),
                       generator: torch.Generator | None = None) -> Tensor:
        """Labels [B] -> codes [B, 1, 1, N], scale by scale (all codes of a scale drawn in parallel)."""
        self.check_tokenizer(tokenizer)
        self._check_inputs(labels, tokenizer)
        b, guided = labels.shape[0], options.cfg != 1
        if guided:
            labels = torch.cat([labels, torch.full_like(labels, self.null_class)])
        config = SamplingConfig(temperature=options.temperature, top_k=options.top_k)
        maps: list[Tensor] = []  # codes [B, 1, s, s] of the scales so far
        inputs: list[Tensor] = []  # inputs [B or 2B, s^2, dim] of scales 2..k
        for k, side in enumerate(self.config.scales):
            logits = self._logits(self._sequence(labels, inputs))[:, -side * side:].float()  # [B or 2B, s^2, K]
            if guided:
                conditional, unconditional = logits.chunk(2)
                logits = unconditional + options.cfg * (conditional - unconditional)
            maps.append(sample(logits, config, generator).view(b, 1, side, side))
            if k + 1 < len(self.config.scales):
                scale_input = self._scale_input(tokenizer.partial_latent(tokenizer.merge_scales(maps)), k + 1)
                inputs.append(torch.cat([scale_input, scale_input]) if guided else scale_input)
        return tokenizer.merge_scales(maps)

    @torch.no_grad()
    def generate(self, labels: Tensor, tokenizer: nn.Module, options: GenerationOptions = GenerationOptions(),
                 generator: torch.Generator | None = None) -> Generated:
        """Labels [B] -> images [B, C, H, W] in [0, 1] decoded by ``tokenizer`` (the config's, checked)."""
        codes = self.generate_codes(labels, tokenizer, options, generator)
        return Generated(tokenizer.decode(codes), self.forward_passes(options))
