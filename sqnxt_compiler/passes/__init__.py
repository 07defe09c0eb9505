"""Graph passes over Relax modules, one pass per file."""

from .align_channel_planes import AlignChannelPlanes
from .canonicalize_clip import CanonicalizeClip
from .channel_concat import ChannelConcat
from .chunk_major_tensors import ChunkMajorTensors
from .concat_in_place import ConcatInPlace
from .depthwise_conv import DepthwiseConv
from .few_channel_conv import FewChannelConv
from .fold_batchnorm import FoldBatchNorm
from .fuse_bottleneck import FuseBottleneck
from .fuse_low_rank_conv import FuseLowRankConv
from ._fusion_report import summarize
from .pair_pixel_chunks import PairPixelChunks
from .pointwise_conv_over_chunks import PointwiseConvOverChunks
from .remove_dropout import RemoveDropout
from .subsample_pointwise import SubsamplePointwise
from .winograd_row_conv import WinogradRowConv
from .winograd_stem import WinogradStem

__all__ = ["AlignChannelPlanes", "CanonicalizeClip", "ChannelConcat", "ChunkMajorTensors", "ConcatInPlace",
           "DepthwiseConv", "FewChannelConv", "FoldBatchNorm", "FuseBottleneck", "FuseLowRankConv", "PairPixelChunks",
           "PointwiseConvOverChunks", "RemoveDropout", "SubsamplePointwise", "WinogradRowConv", "WinogradStem",
           "summarize"]
