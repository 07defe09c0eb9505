"""Graph passes over Relax modules, one pass per file."""

from .fold_batchnorm import FoldBatchNorm

__all__ = ["FoldBatchNorm"]
