"""Datasets and loaders: corpus folders -> lhotse manifests -> step-addressed training batches."""

from .config import DataConfig
from .dataset import SegmentDataset
from .loader import build_train_loader, build_valid_batches
from .manifests import prepare_manifests
from .sampler import StepBatchSampler

__all__ = ["DataConfig", "SegmentDataset", "StepBatchSampler", "build_train_loader", "build_valid_batches",
           "prepare_manifests"]
