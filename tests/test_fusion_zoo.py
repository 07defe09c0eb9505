"""Every SqueezeNext in the zoo has every block fused, matches ONNX Runtime, and `--explain` says so."""

from __future__ import annotations

import re

import pytest

import sqnxt_compiler
from sqnxt_compiler.cli.compile import main as compile_main
from sqnxt_compiler.models import build_model
from sqnxt_compiler.models.squeezenext import SQUEEZENEXT_SPECS
from sqnxt_compiler.models.thirdparty import THIRD_PARTY_SPECS
from sqnxt_compiler.passes.fuse_low_rank_conv import fills_its_vectors
from sqnxt_compiler.target import load_target
from sqnxt_compiler.verify import reference_outputs, relative_error
from utils import seeded_input

PATTERNS = ("low_rank", "reduce_chain", "expand_epilogue")
HOST = load_target("host")
LAST_STAGE_WIDTH = 7  # every SqueezeNext of the zoo at its default resolution


def expected_counts(name: str) -> dict[str, int]:
    """One low-rank pair (fused, or its 3x1 as Winograd rows), one reduce pair and one expand epilogue per
    block; the 7x7 stage's pairs stay two convs where 7 columns fill at most half a vector. Classic CNNs have none
    of the first two (resnet-tiny's two 1x1-projection blocks do end in an expand epilogue). The 7x7 stage's
    reduce pairs of the larger models (2.0: 512->256->128, 655 KB of weights on 4 pixel chunks) are left to the
    conv schedules wherever their weights are more than half of L2: the blocks after the first, and the first
    (which reads its stage's input subsampled, 256->256->128) or v5's one block after its strided entry conv,
    each by its own weights."""
    spec = SQUEEZENEXT_SPECS.get(name) or THIRD_PARTY_SPECS.get(name)
    if spec is None:
        return {"expand_epilogue": 2} if name == "resnet-tiny" else {}
    counts = dict.fromkeys(PATTERNS, sum(spec.blocks_per_stage))
    if not fills_its_vectors(LAST_STAGE_WIDTH, HOST.vector_lanes):
        counts["low_rank"] -= spec.blocks_per_stage[-1]
    if name not in SQUEEZENEXT_SPECS:
        return counts
    *_, before, channels = [0, *SQUEEZENEXT_SPECS[name].stage_channels()]
    half_l2 = int(HOST.cpu["l2_bytes"]) // 2
    first_inputs = channels if spec.chained_entry else before
    weights = [4 * (inputs * channels // 2 + channels * channels // 8)
               for inputs in [first_inputs] + [channels] * (spec.blocks_per_stage[-1] - 1)]
    counts["reduce_chain"] -= sum(w > half_l2 for w in weights)
    return counts


def fused_counts(lines: list[str]) -> dict[str, int]:
    return {m[1]: int(m[2]) for line in lines if (m := re.match(r"(\w+): (\d+) fused", line.strip()))}


def compile_compare_and_count(name: str, tmp_path) -> tuple[dict[str, int], dict]:
    model = build_model(name, resolution=99 if name == "alexnet" else None)
    result = sqnxt_compiler.compile(model, target="host", output=tmp_path / f"{name}.so")
    inputs = [seeded_input(i.shape, seed) for seed, i in enumerate(result.inputs)]
    actual = sqnxt_compiler.load(result.library).run(*inputs)
    expected = reference_outputs(model, {i.name: x for i, x in zip(result.inputs, inputs)})
    assert relative_error(actual[0], expected[0]) <= 1e-4
    notes = result.notes
    counts = fused_counts(notes.get("fuse_low_rank", []) + notes.get("fuse_bottleneck", []))
    # a block's low-rank pair is one kernel, or two when its 3x1 is computed as Winograd along rows
    rows = sum(int(n) for line in notes.get("winograd_rows", []) for n in re.findall(r"3x1, F\(4,3\): (\d+)", line))
    if rows:
        counts["low_rank"] = counts.get("low_rank", 0) + rows
    return counts, notes


def test_explain_reports_every_block_of_sqnxt23(tmp_path, capsys):
    """The CLI path: `--explain` prints the counts per pattern and per stage, `--run` checks vs ONNX Runtime."""
    assert compile_main(["--model", "1.0-SqNxt-23", "-o", str(tmp_path / "m.so"), "--explain", "--run",
                         "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    # the 3x1s with >= 32 outputs (28x28, 14x14) as Winograd rows, the other pairs fused
    assert "winograd_rows: 14 fused (3x1, F(4,3): 14); per stage: 28x28: 6, 14x14: 8" in out
    assert ("low_rank: 7 fused (3x1->1x3: 4, 1x3->3x1: 3); per stage: 55x55: 6, 7x7: 1" in out
            if fills_its_vectors(LAST_STAGE_WIDTH, HOST.vector_lanes) else
            "low_rank: 6 fused (3x1->1x3: 3, 1x3->3x1: 3); per stage: 55x55: 6" in out)
    assert "expand_epilogue: 21 fused (1x1+projection+relu: 4, 1x1+identity+relu: 17)" in out
    assert "reduce_chain: 21 fused (1x1->1x1: 21)" in out
    assert "6 strided 1x1 convs read 3 subsampled copies, per stage: 28x28: 2, 14x14: 2, 7x7: 2" in out
    assert re.search(r"check vs ONNX Runtime: max relative error \S+ \(OK", out)
    assert (out.index("[winograd_rows]") < out.index("[fuse_low_rank]") < out.index("[fuse_bottleneck]")
            < out.index("[legalize]"))


@pytest.mark.parametrize("name", ["sqnxt23_w1", "1.0-G-SqNxt-23"])
def test_third_party_and_grouped_fully_fused(name, tmp_path):
    counts, notes = compile_compare_and_count(name, tmp_path)
    assert counts == expected_counts(name)
    rules = {"fused_low_rank": "fused_low_rank", "fused_expand_epilogue": "fused_pixel_chunks",
             # the first reduce pair of a stage reads its input subsampled: pixel chunks too
             "fused_reduce_chain": "fused_pixel_chunks"}
    for kernel, expected in rules.items():
        lines = [line for line in notes["schedule"] if line.startswith(kernel)]
        used = {line.split(": ")[1].split(" (")[0] for line in lines}
        assert lines and used == set([expected] if isinstance(expected, str) else expected), (kernel, lines)


SWEEP = [n for n in [*SQUEEZENEXT_SPECS, *THIRD_PARTY_SPECS, "squeezenet1.0", "resnet-tiny", "alexnet"]
         if n not in ("1.0-SqNxt-23", "sqnxt23_w1", "1.0-G-SqNxt-23")]


@pytest.mark.slow
@pytest.mark.parametrize("name", SWEEP)
def test_whole_zoo_fused_and_matches_onnxruntime(name, tmp_path):
    counts, notes = compile_compare_and_count(name, tmp_path)
    assert counts == expected_counts(name)
    if not expected_counts(name):
        assert notes["fuse_low_rank"] == ["nothing to fuse; module unchanged"]
