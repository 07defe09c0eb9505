"""The benchmark tables that time our kernels against what they replace still find their kernels (nothing else
runs them: a table that no longer matches the pipeline's kernels would only fail when someone measures), and
their headers say how the peers ran."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sqnxt_compiler.target import load_target

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from engines import cpu_flags  # noqa: E402


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


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
maskable = pytest.mark.skipif(not {"avx512f", "cpuid_fault"} <= cpu_flags(),
                              reason="needs AVX-512 to hide and CPUID faulting to hide it")


def _in_fresh_process(code: str, returncode: int = 0) -> list[str]:
    """`code` run by a new interpreter with benchmarks/ importable (the CPUID mask and the peers' imports are
    process-wide); its output lines, once it ended with `returncode`."""
    import subprocess
    import textwrap

    done = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(BENCHMARKS)!r})\n"
                           + textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert done.returncode == returncode, done.stderr
    return done.stdout.splitlines()


@maskable
def test_avx2_peers_see_a_cpu_without_avx512_and_still_compute() -> None:
    """After the mask, CPUID reports no AVX512F (also to ONNX Runtime as it loads: it asks through the handler),
    and ONNX Runtime's AVX2 kernels give what numpy gives on a conv."""
    lines = _in_fresh_process("""
        import numpy as np, onnx
        from onnx import helper
        from avx2_peers import _mask_library, limit_peers_to_avx2
        print(limit_peers_to_avx2(required=True))
        mask = _mask_library()
        asked = mask.sqnxt_emulated_cpuids()
        import onnxruntime as ort
        print(mask.sqnxt_cpuid_avx512f(), mask.sqnxt_emulated_cpuids() > asked)
        rng = np.random.default_rng(0)
        x, w = rng.standard_normal((1, 64, 14, 14), "float32"), rng.standard_normal((96, 64, 1, 1), "float32")
        graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
                                  [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                                  [onnx.numpy_helper.from_array(w, "w")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        y = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
        expected = np.einsum("oc,nchw->nohw", w[:, :, 0, 0], x)
        print(float(np.abs(y - expected).max() / np.abs(expected).max()))
    """)
    assert lines[0].startswith("Peers: both on their AVX2 kernels"), lines
    assert lines[1] == "0 True", lines
    assert float(lines[2]) < 1e-5, lines


@maskable
def test_a_real_fault_under_the_mask_still_ends_the_process() -> None:
    """Only CPUID faults are emulated: a null read goes on to the handler installed before (TVM's) and kills the
    process with SIGSEGV, as without the mask."""
    lines = _in_fresh_process("""
        import ctypes
        from avx2_peers import limit_peers_to_avx2
        print(limit_peers_to_avx2(required=True), flush=True)
        ctypes.string_at(0)
        print("survived")
    """, returncode=-11)
    assert len(lines) == 1 and lines[0].startswith("Peers: both"), lines


def test_avx2_peers_must_come_before_the_peers_load() -> None:
    lines = _in_fresh_process("""
        import onnxruntime
        from avx2_peers import limit_peers_to_avx2
        try:
            limit_peers_to_avx2(required=False)
        except RuntimeError as error:
            print(error)
    """)
    assert lines == ["limit_peers_to_avx2 must run before onnxruntime and openvino are imported"]
