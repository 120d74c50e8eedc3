"""The audio codec's objective: generator losses, EnCodec's gradient balancer, and discriminators.

Each step: the codec reconstructs a batch of crops [B, 1, T]; reconstruction, perceptual and
(after the warm-up) adversarial losses are combined by a weighted sum or the gradient balancer;
the quantizer's commitment loss and semantic distillation are added outside the balancer.
After the codec's optimizer step the discriminator takes its own step on the same batch, with
its own optimizer and schedule. All of it is saved in the objective's ``state_dict``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..audio.model import AudioCodec, CodecOutput
from ..discriminators import Discriminator, DiscriminatorOutput
from ..losses.adversarial import discriminator_loss
from ..losses.balancer import Balancer
from .audio_config import AudioTrainConfig
from .audio_losses import GeneratorLosses
from .distributed import DistributedEnv, all_finite, autocast, wrap_ddp
from .objective import Objective, StepOutput
from .optim import build_optimizer, clip_gradients
from .state import Stateful, TrainableParameters, load_parts, save_parts


class AudioObjective(Objective):
    """The losses of an ``AudioCodec`` and the discriminator trained against it."""

    def __init__(self, config: AudioTrainConfig, model: AudioCodec, env: DistributedEnv) -> None:
        self.config, self.env = config, env
        self.losses = GeneratorLosses(config, model).to(env.device)
        adv = config.adversarial
        self.discriminator = self.train_discriminator = None
        if adv.discriminator is not None:
            self.discriminator = Discriminator(adv.discriminator).to(env.device)
            self.disc_optimizer, self.disc_scheduler = build_optimizer(
                self.discriminator.parameters(), config.optim, config.steps, lr=adv.lr, betas=adv.betas)
            self.train_discriminator = wrap_ddp(self.discriminator, env)
        self.balancer = Balancer(self.losses.balanced_weights()) if config.balancer else None

    # --- the step ----------------------------------------------------------------------------
    def _discriminator_learns(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.config.adversarial.start_step

    def compute(self, model: nn.Module, batch: Tensor, step: int) -> StepOutput:
        """Reconstruct ``batch`` [B, 1, T]; adversarial losses once the generator warm-up is over."""
        adv = self.config.adversarial
        adversarial = self._discriminator_learns(step) and step >= adv.start_step + adv.warmup_steps
        out: CodecOutput = model(batch)
        terms = self.losses(out, batch, self.discriminator if adversarial else None)
        metrics = {}
        for q, (usage, ppl) in enumerate(zip(out.quantizer.usage.tolist(), out.quantizer.perplexity.tolist())):
            metrics[f"codebook/usage_{q}"], metrics[f"codebook/perplexity_{q}"] = usage, ppl
        return StepOutput({**terms.balanced, **terms.direct}, metrics, (out, terms))

    def backward(self, step_out: StepOutput) -> dict[str, float]:
        out, terms = step_out.output
        direct = sum(self.losses.direct_weight(k) * v for k, v in terms.direct.items())
        if self.balancer is None:
            (self.losses.weighted_sum(terms.balanced) + direct).backward()
            return {}
        grad, metrics = self.balancer.gradient(terms.balanced, out.audio)
        # DDP averages the codec's gradients over ranks: the balanced gradient is scaled to match
        torch.autograd.backward([out.audio, direct], [grad * self.env.world_size, None])
        return metrics

    def after_step(self, batch: Tensor, step_out: StepOutput, step: int) -> dict[str, float]:
        if self.discriminator is None:
            return {}
        out, _ = step_out.output
        self.disc_optimizer.zero_grad(set_to_none=True)  # drop grads left by the generator's losses
        metrics = {}
        if self._discriminator_learns(step) and step % self.config.adversarial.update_every == 0:
            metrics["discriminator"] = self._discriminator_step(batch, out.audio.detach())
        self.disc_scheduler.step()
        return metrics

    def _discriminator_step(self, real: Tensor, fake: Tensor) -> float:
        with autocast(self.env, self.config.bf16):  # one forward over real and fake: DDP expects one per backward
            outputs = self.train_discriminator(torch.cat([real, fake]))
            halves = [(DiscriminatorOutput(o.logits[: len(real)], [f[: len(real)] for f in o.features]),
                       DiscriminatorOutput(o.logits[len(real):], [f[len(real):] for f in o.features])) for o in outputs]
            loss = discriminator_loss([r for r, _ in halves], [f for _, f in halves], self.config.adversarial.loss)
        if not all_finite({"d": loss}, self.env):
            return float("nan")
        loss.backward()
        clip_gradients(self.discriminator.parameters(), self.config.optim.grad_clip)
        self.disc_optimizer.step()
        return loss.item()

    # --- state -------------------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        return self.losses.trainable_parameters()

    def parts(self) -> dict[str, Stateful]:
        """What a checkpoint keeps: trainable loss parameters (never the frozen networks), the
        discriminator with its optimizer and schedule, the balancer's gradient-norm statistics."""
        parts: dict[str, Stateful] = {"losses": TrainableParameters(self.losses)}
        if self.discriminator is not None:
            parts.update(discriminator=self.discriminator, disc_optimizer=self.disc_optimizer,
                         disc_scheduler=self.disc_scheduler)
        if self.balancer is not None:
            parts["balancer"] = self.balancer
        return parts

    def state_dict(self) -> dict:
        return save_parts(self.parts())

    def load_state_dict(self, state: dict) -> None:
        load_parts(self.parts(), state, "objective state")

