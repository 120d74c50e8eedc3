"""The codec training loop: one process or many (torchrun + DDP), resumable at any step.

Each step: the codec reconstructs a batch of crops; reconstruction, perceptual and (after
the warm-up) adversarial losses are combined by a weighted sum or the gradient balancer;
the quantizer's commitment loss and semantic distillation are added outside the balancer.
The discriminator then takes its own step on the same batch.

Data are a pure function of the step (see ``StepBatchSampler``), so resuming restores the
data position from the step alone; models, optimizers, schedulers, the balancer and the RNG
come from the checkpoint.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import save_pretrained
from ..audio.model import AudioCodec
from ..distributed import all_reduce_mean_
from ..data import SegmentDataset, build_train_loader, prepare_manifests
from ..discriminators import Discriminator, DiscriminatorOutput
from ..errors import CodecError
from ..losses.adversarial import discriminator_loss
from ..losses.balancer import Balancer
from .checkpoints import latest_checkpoint, load_checkpoint_state, save_checkpoint
from .config import TrainConfig, dump_train_config
from .distributed import DistributedEnv, barrier, init_distributed
from .logger import TrainLogger
from .objective import GeneratorObjective
from .optim import build_optimizer
from .validation import validate


class Trainer:
    """Build everything a run needs from a TrainConfig, then ``fit()``."""

    def __init__(self, config: TrainConfig, run_dir: str | Path, resume: bool = False) -> None:
        self.config, self.run_dir = config, Path(run_dir)
        self.env: DistributedEnv = init_distributed(config.device)
        if config.batch_size % self.env.world_size:
            raise CodecError(f"batch_size {config.batch_size} does not split over {self.env.world_size} processes.")
        torch.manual_seed(config.seed)
        device = self.env.device
        self.model = AudioCodec(config.model).to(device)
        self.objective = GeneratorObjective(config, self.model).to(device)
        adv = config.adversarial
        self.discriminator = Discriminator(adv.discriminator).to(device) if adv.discriminator else None
        generator_params = list(self.model.parameters()) + list(self.objective.trainable_parameters())
        self.optimizer, self.scheduler = build_optimizer(generator_params, config.optim, config.steps)
        if self.discriminator is not None:
            self.disc_optimizer, self.disc_scheduler = build_optimizer(
                self.discriminator.parameters(), config.optim, config.steps, lr=adv.lr, betas=adv.betas)
        self.balancer = Balancer(self.objective.balanced_weights()) if config.balancer else None
        self.ema = ({k: v.detach().clone() for k, v in self.model.state_dict().items()}
                    if config.ema_decay > 0 else None)
        self.step, self.nonfinite_streak, self.best_valid = 0, 0, math.inf
        self._prepare_data()
        if resume:
            self._resume()
        self.train_model = self._wrap(self.model)
        self.train_discriminator = self._wrap(self.discriminator) if self.discriminator is not None else None
        self._stop_requested = False

    # --- set-up ----------------------------------------------------------------------------
    def _wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.env.world_size == 1:
            return module
        ids = [self.env.device.index] if self.env.device.type == "cuda" else None
        # EMA codebooks synchronise themselves (all-reduced statistics): no buffer broadcast per forward.
        return DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False)

    def _prepare_data(self) -> None:
        manifests = self.run_dir / "manifests"
        if self.env.is_main:
            prepare_manifests(self.config.data, manifests)
        barrier()
        train_cuts, valid_cuts = prepare_manifests(self.config.data, manifests)
        sr = self.config.model.sample_rate
        segment = int(self.config.data.segment_seconds * sr)
        self.train_set = SegmentDataset(train_cuts, sr, segment, self.config.data, train=True)
        # validation re-reads the same few clips every valid_every steps: keep them decoded
        self.valid_set = SegmentDataset(valid_cuts, sr, None, self.config.data, train=False, cache=True)

    def _resume(self) -> None:
        path = latest_checkpoint(self.run_dir)
        if path is None:
            raise CodecError(f"Nothing to resume in {self.run_dir}: it has no complete checkpoint.")
        state, ema = load_checkpoint_state(path, self.model, self.discriminator, self.env.device)
        self.objective.load_trainable_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.discriminator is not None:
            self.disc_optimizer.load_state_dict(state["disc_optimizer"])
            self.disc_scheduler.load_state_dict(state["disc_scheduler"])
        if self.balancer is not None:
            self.balancer.load_state_dict(state["balancer"])
        if self.ema is not None and ema is not None:
            self.ema = ema
        self.step, self.nonfinite_streak = state["step"], state["nonfinite_streak"]
        self.best_valid = state["best_valid"]

    # --- one step --------------------------------------------------------------------------
    def _autocast(self):
        if self.env.device.type == "cuda" and self.config.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _all_finite(self, losses: dict[str, torch.Tensor]) -> bool:
        flag = torch.tensor(float(all(torch.isfinite(v).all() for v in losses.values())), device=self.env.device)
        if self.env.world_size > 1:
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        return bool(flag.item())

    def _all_reduce_grads(self, params: list[torch.nn.Parameter]) -> None:
        if self.env.world_size > 1:
            for p in params:
                if p.grad is not None:
                    all_reduce_mean_(p.grad)

    def _clip(self, params) -> float:
        clip = self.config.optim.grad_clip
        return float(torch.nn.utils.clip_grad_norm_(list(params), clip if clip > 0 else math.inf))

    def train_step(self, batch: torch.Tensor) -> dict[str, float]:
        """One generator step (and discriminator step when scheduled) on a batch [B, 1, T]."""
        adv = self.config.adversarial
        disc_active = self.discriminator is not None and self.step >= adv.start_step
        gen_adversarial = disc_active and self.step >= adv.start_step + adv.warmup_steps
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            out = self.train_model(batch)
            terms = self.objective(out, batch, self.discriminator if gen_adversarial else None)
        losses = {**terms.balanced, **terms.direct}
        if not self._all_finite(losses):
            return self._skip_step(losses)
        self.nonfinite_streak = 0
        direct = sum(self.objective.direct_weight(k) * v for k, v in terms.direct.items())
        metrics: dict[str, float] = {}
        if self.balancer is not None:
            grad, metrics = self.balancer.gradient(terms.balanced, out.audio)
            torch.autograd.backward([out.audio, direct], [grad * self.env.world_size, None])
        else:
            (self.objective.weighted_sum(terms.balanced) + direct).backward()
        self._all_reduce_grads(self.objective.trainable_parameters())  # not inside DDP
        metrics["grad_norm"] = self._clip(list(self.model.parameters()) + self.objective.trainable_parameters())
        self.optimizer.step()
        self.scheduler.step()
        if self.discriminator is not None:
            self.disc_optimizer.zero_grad(set_to_none=True)  # drop grads left by the generator's losses
            if disc_active and self.step % adv.update_every == 0:
                metrics["discriminator"] = self._discriminator_step(batch, out.audio.detach())
            self.disc_scheduler.step()
        self._update_ema()
        metrics.update({f"loss/{k}": v.item() for k, v in losses.items()})
        metrics["lr"] = self.scheduler.get_last_lr()[0]
        for q, (usage, ppl) in enumerate(zip(out.quantizer.usage.tolist(), out.quantizer.perplexity.tolist())):
            metrics[f"codebook/usage_{q}"], metrics[f"codebook/perplexity_{q}"] = usage, ppl
        return metrics

    def _discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        with self._autocast():  # one forward over real and fake, as DDP expects one forward per backward
            outputs = self.train_discriminator(torch.cat([real, fake]))
            halves = [(DiscriminatorOutput(o.logits[: len(real)], [f[: len(real)] for f in o.features]),
                       DiscriminatorOutput(o.logits[len(real):], [f[len(real):] for f in o.features])) for o in outputs]
            loss = discriminator_loss([r for r, _ in halves], [f for _, f in halves], self.config.adversarial.loss)
        if not self._all_finite({"d": loss}):
            return float("nan")
        loss.backward()
        self._clip(self.discriminator.parameters())
        self.disc_optimizer.step()
        return loss.item()

    def _skip_step(self, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        self.nonfinite_streak += 1
        self.optimizer.zero_grad(set_to_none=True)
        bad = ", ".join(k for k, v in losses.items() if not torch.isfinite(v).all())
        if self.nonfinite_streak >= self.config.max_nonfinite_steps:
            raise CodecError(f"Training diverged: {self.nonfinite_streak} steps in a row had non-finite losses "
                             f"({bad}) at step {self.step}.")
        return {"nonfinite_steps": float(self.nonfinite_streak)}

    def _update_ema(self) -> None:
        """EMA of the weights; the decay warms up as (1 + step) / (10 + step), so the random
        initial weights do not linger in the average (0.999 ** 2000 would still keep 13.5%)."""
        if self.ema is None:
            return
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for name, value in self.model.state_dict().items():
                if value.dtype.is_floating_point:
                    self.ema[name].lerp_(value, 1 - decay)
                else:
                    self.ema[name].copy_(value)

    # --- checkpoints -----------------------------------------------------------------------
    def export_model(self) -> AudioCodec:
        """The model to publish: the weight EMA when enabled, else the trained weights (eval mode)."""
        if self.ema is None:
            return self.model.eval()
        exported = AudioCodec(self.config.model).to(self.env.device)
        exported.load_state_dict(self.ema)
        return exported.eval()

    def save(self) -> None:
        if not self.env.is_main:
            return
        state = {
            "objective": self.objective.trainable_state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "nonfinite_streak": self.nonfinite_streak,
            "best_valid": self.best_valid,
        }
        if self.discriminator is not None:
            state["disc_optimizer"] = self.disc_optimizer.state_dict()
            state["disc_scheduler"] = self.disc_scheduler.state_dict()
        if self.balancer is not None:
            state["balancer"] = self.balancer.state_dict()
        save_checkpoint(self.run_dir, self.step, self.model, state, self.ema, self.discriminator,
                        self.config.keep_checkpoints)

    # --- the loop --------------------------------------------------------------------------
    def _request_stop(self, signum, frame) -> None:
        self._stop_requested = True

    def fit(self) -> dict[str, float]:
        """Train to ``config.steps``; Ctrl-C / SIGTERM save a checkpoint and return early."""
        config = self.config
        if self.env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(dump_train_config(config))
        logger = TrainLogger(self.run_dir, config, self.step, enabled=self.env.is_main)
        previous = {s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        loader = build_train_loader(self.train_set, config.batch_size, config.seed, self.env.rank,
                                    self.env.world_size, self.step, config.data.num_workers)
        last_valid: dict[str, float] = {}
        try:
            if self.step == 0:
                last_valid = self._validate(logger)  # the untrained baseline
            for batch in loader:
                if self.step >= config.steps or self._stop_requested:
                    break
                started = time.perf_counter()
                metrics = self.train_step(batch.to(self.env.device))
                self.step += 1
                metrics["seconds_per_step"] = time.perf_counter() - started
                logger.log_train(self.step, metrics)
                if self.step % config.valid_every == 0 or self.step == config.steps:
                    last_valid = self._validate(logger)
                if self.step % config.checkpoint_every == 0 or self.step == config.steps:
                    self.save()
            if self._stop_requested and self.env.is_main:
                logger.message(f"stopped at step {self.step}; resume with --resume")
                self.save()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            logger.close()
        return last_valid

    def _validate(self, logger: TrainLogger) -> dict[str, float]:
        if not self.env.is_main:
            barrier()
            return {}
        model = self.export_model()
        results = validate(model, self.valid_set, logger, self.step, self.config.audio_examples)
        self.model.train()
        if results["mel_distance"] < self.best_valid:
            self.best_valid = results["mel_distance"]
            save_pretrained(model, self.run_dir / "best", {"step": str(self.step), "valid_mel_distance":
                            f"{self.best_valid:.4f}"}, force=True)
        barrier()
        return results
