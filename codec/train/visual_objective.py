"""The objective of image and video tokenizers: pixel (L1, L2), structural (1 - SSIM), quantizer and
optional adversarial losses, with codebook usage and dead codes tracked per level.

Each step: the tokenizer reconstructs the batch ([B, C, H, W] or [B, C, T, H, W] in [0, 1]); after
``adversarial_start`` a patch discriminator judges the reconstruction (hinge loss) and takes its own
step on the same batch afterwards, with its own optimizer, saved in the objective's state.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..discriminators import DiscriminatorOutput
from ..discriminators.patch import PatchDiscriminator
from ..eval.image_metrics import ssim
from ..image.output import VisualOutput
from ..losses.adversarial import discriminator_loss, generator_loss
from .distributed import DistributedEnv, all_finite, autocast, wrap_ddp
from .objective import Objective, StepOutput
from .optim import build_optimizer, clip_gradients
from .state import Stateful, load_parts, save_parts
from .visual_config import ImageTrainConfig, VideoTrainConfig


def frames_as_images(x: Tensor) -> Tensor:
    """Images [B, C, H, W] unchanged; videos [B, C, T, H, W] -> frames [B T, C, H, W]."""
    return x.transpose(1, 2).flatten(0, 1) if x.dim() == 5 else x


class DeadCodes(nn.Module):
    """The step each code of each level was last used; codes unused for ``window`` steps are dead."""

    last_used: Tensor

    def __init__(self, codebook_sizes: tuple[int, ...], window: int) -> None:
        super().__init__()
        self.window = window
        self.register_buffer("last_used", torch.zeros(len(codebook_sizes), max(codebook_sizes), dtype=torch.long))
        sizes = torch.tensor(codebook_sizes)
        self.register_buffer("valid", torch.arange(int(sizes.max()))[None] < sizes[:, None], persistent=False)

    def update(self, codes: Tensor, step: int) -> Tensor:
        """Mark the codes [B, Q, *axes] used at ``step``; the dead fraction of each level [Q]."""
        flat = codes.detach().transpose(0, 1).flatten(1)  # [Q, N]
        used = torch.zeros_like(self.last_used, dtype=torch.bool).scatter_(1, flat, True)
        self.last_used.masked_fill_(used, step)
        dead = (step - self.last_used >= self.window) & self.valid & (step >= self.window)
        return dead.sum(1) / self.valid.sum(1)


class VisualObjective(Objective):
    """The losses of an image or video tokenizer and the patch discriminator trained against it."""

    def __init__(self, config: ImageTrainConfig | VideoTrainConfig, model: nn.Module, env: DistributedEnv) -> None:
        self.config, self.env, self.losses = config, env, config.losses
        self.dead_codes = DeadCodes(model.token_spec.codebook_sizes, config.losses.dead_code_window).to(env.device)
        self.discriminator = None
        if self.losses.adversarial > 0:
            self.discriminator = PatchDiscriminator(self.losses.discriminator).to(env.device)
            self.disc_optimizer, self.disc_scheduler = build_optimizer(
                self.discriminator.parameters(), config.optim, config.steps, lr=self.losses.disc_lr, betas=(0.5, 0.9))
            self.train_discriminator = wrap_ddp(self.discriminator, env)

    def _adversarial(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.losses.adversarial_start

    def compute(self, model: nn.Module, batch: Tensor, step: int) -> StepOutput:
        out: VisualOutput = model(batch)
        y, w = out.reconstruction, self.losses
        losses: dict[str, Tensor] = {}
        if w.l1:
            losses["l1"] = w.l1 * (y - batch).abs().mean()
        if w.l2:
            losses["l2"] = w.l2 * (y - batch).square().mean()
        if w.ssim:
            losses["ssim"] = w.ssim * (1 - ssim(frames_as_images(y).float(), frames_as_images(batch).float()).mean())
        losses["commitment"] = w.commitment * out.quantizer.commitment_loss
        losses["codebook"] = w.codebook * out.quantizer.codebook_loss
        if self._adversarial(step):
            losses["adversarial"] = w.adversarial * generator_loss(self.discriminator(y))
        metrics = {}
        dead = self.dead_codes.update(out.codes, step)
        for q, (usage, ppl) in enumerate(zip(out.quantizer.usage.tolist(), out.quantizer.perplexity.tolist())):
            metrics[f"codebook/usage_{q}"], metrics[f"codebook/perplexity_{q}"] = usage, ppl
            metrics[f"codebook/dead_{q}"] = float(dead[q])
        return StepOutput(losses, metrics, out)

    def after_step(self, batch: Tensor, step_out: StepOutput, step: int) -> dict[str, float]:
        if self.discriminator is None:
            return {}
        self.disc_optimizer.zero_grad(set_to_none=True)  # drop grads left by the generator's losses
        if not self._adversarial(step):
            return {}
        loss = self._discriminator_step(batch, step_out.output.reconstruction.detach())
        self.disc_scheduler.step()
        return {"discriminator": loss}

    def _discriminator_step(self, real: Tensor, fake: Tensor) -> float:
        with autocast(self.env, self.config.bf16):  # one forward over real and fake (DDP: one per backward)
            (both,) = self.train_discriminator(torch.cat([real, fake]))
            n = len(real)
            loss = discriminator_loss([DiscriminatorOutput(both.logits[:n], [])],
                                      [DiscriminatorOutput(both.logits[n:], [])])
        if not all_finite({"d": loss}, self.env):
            return float("nan")
        loss.backward()
        clip_gradients(self.discriminator.parameters(), self.config.optim.grad_clip)
        self.disc_optimizer.step()
        return loss.item()

    def parts(self) -> dict[str, Stateful]:
        parts: dict[str, Stateful] = {"dead_codes": self.dead_codes}
        if self.discriminator is not None:
            parts.update(discriminator=self.discriminator, disc_optimizer=self.disc_optimizer,
                         disc_scheduler=self.disc_scheduler)
        return parts

    def state_dict(self) -> dict:
        return save_parts(self.parts())

    def load_state_dict(self, state: dict) -> None:
        load_parts(self.parts(), state, "objective state")
