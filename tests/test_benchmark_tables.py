"""The benchmark tables that time our kernels against what they replace still find their kernels (nothing else
runs them: a table that no longer matches the pipeline's kernels would only fail when someone measures), and
their headers say how the peers ran."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sqnxt_compiler.target import load_target

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.parametrize("target_name", ["x86-avx2", "host"])  # the row kernel; on AVX-512 machines the tiles
def test_stem_table_times_the_stem_with_its_pool_against_conv_and_pool(target_name, capsys) -> None:
    import latency

    latency.winograd_vs_direct("1.0-SqNxt-23v5", 1, load_target(target_name))
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| fused_winograd_stem")]
    assert len(rows) == 1 and "+ max pool 3x3 | 64x56x56 |" in rows[0], rows


def test_openvino_note_says_when_its_kernels_are_limited_to_an_instruction_set(monkeypatch) -> None:
    pytest.importorskip("openvino")
    import engines

    monkeypatch.delenv(engines.ONEDNN_ISA_LIMIT, raising=False)
    assert "limited" not in engines.openvino_note()
    monkeypatch.setenv(engines.ONEDNN_ISA_LIMIT, "AVX2")
    assert "kernels limited to AVX2 (ONEDNN_MAX_CPU_ISA" in engines.openvino_note()
