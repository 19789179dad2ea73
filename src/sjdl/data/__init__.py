"""Data: records and readers, P x K sampling, paired transforms, fog synthesis, demo set."""

from .dataset import BadImageLog, ReIDDataset, collate, eval_loader, train_loader
from .demo import demo_root
from .fog import add_fog, builtin_depth, random_fog, read_depth
from .readers import ReIDData, read_dataset, read_folder_dataset, read_fvrid, read_veri
from .records import DatasetError, ImageRecord, summary_table
from .sampler import PKSampler
from .transforms import PairedTransform

__all__ = [
    "BadImageLog",
    "DatasetError",
    "ImageRecord",
    "PKSampler",
    "PairedTransform",
    "ReIDData",
    "ReIDDataset",
    "add_fog",
    "builtin_depth",
    "collate",
    "demo_root",
    "random_fog",
    "read_dataset",
    "read_depth",
    "read_folder_dataset",
    "read_fvrid",
    "read_veri",
    "summary_table",
    "eval_loader",
    "train_loader",
]
