"""The command-line tools: the happy path end to end, and every kind of bad input as one clear line."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from sqnxt_compiler.cli.compile import main as compile_main
from sqnxt_compiler.models import build_model


def run_cli(tool: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    """Run a console script as a user would (its own process, its own exit code)."""
    code = f"import sys; from sqnxt_compiler.cli.{tool} import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def resnet_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "resnet.onnx"
    path.write_bytes(build_model("resnet-tiny").SerializeToString())
    return path


def test_compile_run_and_deploy(tmp_path, resnet_onnx):
    lib = tmp_path / "resnet.so"
    proc = run_cli("compile", str(resnet_onnx), "--target", "host", "-o", str(lib), "--run", "--repeat", "2")
    assert proc.returncode == 0, proc.stderr
    assert "check vs ONNX Runtime" in proc.stdout and "(OK" in proc.stdout and "top-5" in proc.stdout
    meta = json.loads((tmp_path / "resnet.so.json").read_text())
    assert meta["inputs"][0]["shape"] == [1, 3, 64, 64] and meta["versions"]["tvm"]
    image = tmp_path / "image.npy"
    np.save(image, np.random.default_rng(1).random((1, 3, 64, 64), dtype=np.float32))
    out = tmp_path / "out.npy"
    proc = run_cli("run", str(lib), "--input", str(image), "--output", str(out), "--repeat", "2")
    assert proc.returncode == 0, proc.stderr
    assert np.load(out).shape == (1, 10) and "latency: median" in proc.stdout


def test_builtin_model_explain_and_dump(tmp_path, capsys):
    dump = tmp_path / "ir"
    assert compile_main(["--model", "resnet-tiny", "-o", str(tmp_path / "m.so"), "--explain",
                         "--dump-ir", str(dump)]) == 0
    out = capsys.readouterr().out
    assert "[fold_batchnorm]" in out and "[schedule]" in out
    dumps = sorted(p.name for p in dump.iterdir())
    assert dumps[0] == "00_import.py" and any("legalize" in d for d in dumps)


def test_list_targets_and_ops(capsys):
    assert compile_main(["--list-targets"]) == 0
    assert "arm" in capsys.readouterr().out
    assert compile_main(["--list-ops"]) == 0
    assert "Conv" in capsys.readouterr().out.split()


def test_missing_file(tmp_path):
    assert_one_line_error(run_cli("compile", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "x.so")),
                          "does not exist")
    assert not (tmp_path / "x.so").exists()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_onnx(tmp_path, resnet_onnx, damage):
    data = resnet_onnx.read_bytes()
    content = {"garbage": b"\x00\x01this is not a protobuf" * 50, "truncated": data[: len(data) // 2],
               "empty": b""}[damage]
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    proc = run_cli("compile", str(bad), "-o", str(tmp_path / "x.so"))
    assert_one_line_error(proc, "bad.onnx")
    assert list(tmp_path.iterdir()) == [bad]


def test_unsupported_operator_is_named(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Celu", ["x"], ["y"], name="my_celu")],
                                                "celu", [x], [y]), opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "celu.onnx"
    onnx.save(model, str(path))
    assert_one_line_error(run_cli("compile", str(path), "-o", str(tmp_path / "x.so")),
                          "unsupported ONNX operator(s): Celu (node 'my_celu')")
    assert not (tmp_path / "x.so").exists()


def test_dynamic_shape_needs_input_shape(tmp_path):
    model = build_model("resnet-tiny")
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    path = tmp_path / "dyn.onnx"
    onnx.save(model, str(path))
    assert_one_line_error(run_cli("compile", str(path), "-o", str(tmp_path / "x.so")),
                          "input 'data'", "--input-shape data=1,3,64,64")
    proc = run_cli("compile", str(path), "-o", str(tmp_path / "x.so"), "--input-shape", "data=2,3,64,64")
    assert proc.returncode == 0, proc.stderr


def test_unknown_target_lists_known(tmp_path, resnet_onnx):
    assert_one_line_error(run_cli("compile", str(resnet_onnx), "--target", "pentium"),
                          "unknown target 'pentium'", "known targets:", "arm", "host")


def test_bad_mcpu_in_target_file(tmp_path, resnet_onnx):
    target = tmp_path / "typo.toml"
    target.write_text('name = "typo"\nkind = "cpu"\n[llvm]\nkind = "llvm"\nmcpu = "cortex-a27"\n'
                      'mtriple = "aarch64-linux-gnu"\n[cross]\ntriple = "aarch64-linux-gnu"\n')
    assert_one_line_error(run_cli("compile", str(resnet_onnx), "--target", str(target)), "cortex-a27")


def test_no_cross_toolchain(tmp_path, resnet_onnx, monkeypatch, capsys):
    import sqnxt_compiler.toolchain as toolchain

    monkeypatch.delenv(toolchain.CROSS_ENV, raising=False)
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None)
    monkeypatch.setattr(toolchain.importlib.util, "find_spec", lambda name: None)
    out = tmp_path / "arm.so"
    assert compile_main([str(resnet_onnx), "--target", "arm", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no cross toolchain for aarch64-linux-gnu") and "ziglang" in err
    assert "\n" not in err and not out.exists()


def test_cross_compiler_override_not_found(tmp_path, resnet_onnx, monkeypatch):
    monkeypatch.setenv("SQNXT_CROSS_CXX", "/nonexistent/aarch64-g++")
    proc = run_cli("compile", str(resnet_onnx), "--target", "arm", "-o", str(tmp_path / "x.so"))
    assert_one_line_error(proc, "/nonexistent/aarch64-g++", "SQNXT_CROSS_CXX")


def test_run_bad_inputs(tmp_path):
    assert_one_line_error(run_cli("run", str(tmp_path / "missing.so")), "does not exist")
    fake = tmp_path / "fake.so"
    fake.write_bytes(b"not a library")
    assert_one_line_error(run_cli("run", str(fake), "--input", str(tmp_path / "x.npy")), "fake.so")


def test_run_wrong_input_shape(tmp_path, resnet_onnx):
    lib = tmp_path / "m.so"
    assert run_cli("compile", str(resnet_onnx), "-o", str(lib)).returncode == 0
    image = tmp_path / "img.npy"
    np.save(image, np.zeros((1, 3, 32, 32), np.float32))
    assert_one_line_error(run_cli("run", str(lib), "--input", str(image)), "must have shape (1, 3, 64, 64)")


def test_neither_or_both_model_sources(tmp_path, resnet_onnx):
    assert_one_line_error(run_cli("compile"), "either an ONNX file or --model")
    assert_one_line_error(run_cli("compile", str(resnet_onnx), "--model", "1.0-SqNxt-23"), "either")
