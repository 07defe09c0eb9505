"""The contract between the kernel builders and their readers (passes, schedules, tuning): the PrimFunc
attributes every fused kernel carries, its block names and the pattern names."""

from __future__ import annotations

from tvm import tirx

# Every fused kernel carries FUSION_ATTR (its value names the pattern), so the schedule rules recognise it.
FUSION_ATTR = "sqnxt.fusion"
MACS_ATTR = "sqnxt.macs"  # multiply-accumulates of the real convolutions (not the padded columns/margins)
PIXEL_CHUNK_ATTR = "sqnxt.pixel_chunk"  # on the pixel-chunk kernels: pixels per chunk
# On the pixel-chunk kernels until `passes/chunk_major_tensors.py` has chosen their layouts (it removes the
# attribute): the builder's arguments, as JSON
CHAIN_SPEC_ATTR = "sqnxt.chain_spec"
TAPS_ATTR = "sqnxt.winograd_taps"  # on the Winograd kernels: r, the row taps per phase
POOL_ATTR = "sqnxt.max_pool"  # on a Winograd stem that also max-pools its result: the pool's window
# On a concat along channels of kernels' outputs (`kernels.channel_concat`): `passes/concat_in_place.py` has the
# kernels write into its output and drops it
CHANNEL_CONCAT_ATTR = "sqnxt.channel_concat"
OPAQUE_PATTERN = 8  # relax OpPatternKind::kOpaque: FuseOps must leave the kernel alone (it is already fused)

# Blocks. Conv chains: `sqnxt_conv<i>` (reduction), `sqnxt_conv<i>_pad`, `sqnxt_conv<i>_epilogue` between
# stages; every fused kernel writes its output in OUTPUT_BLOCK.
CONV_BLOCK = "sqnxt_conv"
OUTPUT_BLOCK = "sqnxt_out"
# Pixel-chunk kernels on long reductions or small images: the chunk's input channels copied contiguous first
PACK_BLOCK = "sqnxt_pack"
PHASE_BLOCK, TRANSFORM_BLOCK, PRODUCT_BLOCK = "sqnxt_wino_phase", "sqnxt_wino_transform", "sqnxt_wino_product"
# AT into a buffer of the kernel's own: whole chunks when the image is narrower than one (OUTPUT_BLOCK then copies
# the real columns), or the conv's result that OUTPUT_BLOCK max-pools (a stem with its pool)
INVERSE_BLOCK = "sqnxt_wino_inverse"
# A stem's max pool per row tile (`winograd.emit_pool_over_row_tiles`): the tile's rows reduced per window that
# starts in it, and its first rows, which the tile before also reads; OUTPUT_BLOCK takes the max of the two
POOL_ROWS_BLOCK = "sqnxt_pool_rows"
# Winograd over 4x4 tiles (a stem with its pool): BT along columns after TRANSFORM_BLOCK's rows, AT along columns
# before INVERSE_BLOCK's rows
COLUMN_TRANSFORM_BLOCK, COLUMN_INVERSE_BLOCK = "sqnxt_wino_column_transform", "sqnxt_wino_column_inverse"

# Patterns (the value of FUSION_ATTR), one per fusion pass rewrite.
LOW_RANK = "low_rank"
REDUCE_CHAIN = "reduce_chain"
EXPAND_EPILOGUE = "expand_epilogue"
POINTWISE = "pointwise"
WINOGRAD_STEM = "winograd_stem"
WINOGRAD_ROWS = "winograd_rows"  # stride-1 3x1 and 3x3 convs, Winograd along rows (their row taps)
WINOGRAD_STEM_TILES = "winograd_stem_tiles"  # a stem and its max pool, Winograd along rows and columns
DEPTHWISE = "depthwise"  # a depthwise conv, output columns in vectors (`kernels.column_conv`)
FEW_CHANNEL_CONV = "few_channel_conv"  # a conv on an image's few channels, the same kernel


def fusion_pattern(func: tirx.PrimFunc) -> str | None:
    """The pattern of a fused kernel, None for any other PrimFunc."""
    return str(func.attrs[FUSION_ATTR]) if func.attrs is not None and FUSION_ATTR in func.attrs else None


def pixel_chunked(func: tirx.PrimFunc) -> bool:
    """True for a kernel built over chunks of the flattened image (`kernels.pixel_chunks`)."""
    return func.attrs is not None and PIXEL_CHUNK_ATTR in func.attrs
