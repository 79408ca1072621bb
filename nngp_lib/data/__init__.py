"""Data: CIFAR-10 (official batches or JPEG images), the NB101 table, NAS-Bench-101 TFRecords.

Every reader takes an optional ``data_dir``; see :mod:`nngp_lib.config` for the layout.
"""

from nngp_lib.data.cifar10 import NNGPData, load_cifar10, nngp_split, standardize
from nngp_lib.data.nb101_table import load_table
from nngp_lib.data.tfrecord import convert_tfrecord

__all__ = ["NNGPData", "convert_tfrecord", "load_cifar10", "load_table", "nngp_split", "standardize"]
