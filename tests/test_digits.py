"""The zoo's SqueezeNext trained on scikit-learn's digits: held-out accuracy through ONNX Runtime, the host build,
the int8 accelerator builds (WS, OS, tuned tilings) and the ARM build under emulation."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import sqnxt_compiler
from sqnxt_compiler.accel.int8.quantize import load_calibration, quantize_qdq
from sqnxt_compiler.accel.int8.reference import Int8Executor
from sqnxt_compiler.cli.compile import main as compile_main
from sqnxt_compiler.cli.sim import main as sim_main
from sqnxt_compiler.models import ZOO, build_model
from sqnxt_compiler.models.digits import (CALIBRATION_IMAGES, DATASET, SPLIT_FILE, TRAINED, calibration_images,
                                          digits, make_split, model_dataset, predict, top1, trained_file)
from sqnxt_compiler.target import load_target
from sqnxt_compiler.tuning.accel_tuner import tune_accel
from sqnxt_compiler.verify import reference_session

MODEL = "1.0-SqNxt-23-digits"
# Measured: 99.17% (float), see docs/digits.md. Random weights give ~10%; 97% leaves room for a retrain.
FLOAT_TOP1_FLOOR = 0.97
ACCEL_BATCH = 40        # 9 batches of the 360 held-out images: the simulator runs a batch ~2x faster per image
TUNING_TRIALS = 100


def _ort_logits(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    session = reference_session(model)
    batch = model.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    return predict(lambda x: session.run(None, {model.graph.input[0].name: x})[0], images, batch)


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    return digits("test")


@pytest.fixture(scope="module")
def float_logits(held_out) -> np.ndarray:
    return _ort_logits(build_model(MODEL), held_out[0])


@pytest.fixture(scope="module")
def host_cli(tmp_path_factory) -> tuple[str, np.ndarray]:
    """`sqnxt-compile --model 1.0-SqNxt-23-digits --target host --run`: its stdout and the library's logits."""
    library = tmp_path_factory.mktemp("digits_host") / "digits.so"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert compile_main(["--model", MODEL, "--target", "host", "-o", str(library), "--run", "--repeat", "2"]) == 0
    loaded = sqnxt_compiler.load(library)
    return out.getvalue(), predict(lambda x: loaded.run(x)[0], digits("test")[0])


# --- the data set and the shipped files ------------------------------------------------------------------

def test_split_is_fixed_disjoint_and_covers_every_class():
    split = json.loads(SPLIT_FILE.read_text())
    train, test = set(split["train"]), set(split["test"])
    assert len(test) == 360 and len(train) == 1437 and not train & test and train | test == set(range(1797))
    assert split == make_split(split["seed"])   # the shipped indices are what the seed gives
    _, labels = digits("test")
    assert np.bincount(labels, minlength=10).min() >= 25


def test_shipped_onnx_is_the_zoo_model_and_runs_without_torch():
    """One architecture definition: the zoo rebuilds the official graph and takes the shipped trained weights by
    name, so its initializers are the shipped file's; the shipped file is a plain ONNX model."""
    for name in TRAINED:
        shipped = onnx.load(str(trained_file(name)))
        onnx.checker.check_model(shipped)
        built = build_model(name)
        assert [t.name for t in built.graph.initializer] == [t.name for t in shipped.graph.initializer]
        assert all(np.array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))
                   for a, b in zip(built.graph.initializer, shipped.graph.initializer))
        assert model_dataset(built) == model_dataset(shipped) == DATASET
        assert trained_file(name).stat().st_size < 5e6
    assert ZOO[MODEL].default_resolution == 32


def test_the_zoo_entry_needs_no_torch():
    """torch is an optional extra: with it unimportable, the zoo still builds the trained model and ORT runs it."""
    script = ("import sys\n"
              "class NoTorch:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name.split('.')[0] == 'torch': raise ImportError('torch is blocked')\n"
              "sys.meta_path.insert(0, NoTorch())\n"
              "import onnxruntime as ort\n"
              "from sqnxt_compiler.models import build_model\n"
              "from sqnxt_compiler.models.digits import digits, predict, top1\n"
              "model = build_model('1.0-SqNxt-23-digits')\n"
              "session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])\n"
              "x, y = digits('test')\n"
              "print(top1(predict(lambda a: session.run(None, {'data': a})[0], x), y))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout) >= FLOAT_TOP1_FLOOR


def test_zoo_model_takes_other_batches():
    images, _ = digits("test")
    ours = _ort_logits(build_model(MODEL, batch=8), images[:20])
    np.testing.assert_allclose(ours, _ort_logits(build_model(MODEL), images[:20]), rtol=1e-4, atol=1e-4)


# --- float: ONNX Runtime and the host build ---------------------------------------------------------------

def test_float_top1_through_onnxruntime(held_out, float_logits, record_property):
    accuracy = top1(float_logits, held_out[1])
    record_property("float_top1", accuracy)
    assert accuracy >= FLOAT_TOP1_FLOOR


def test_host_build_predicts_what_onnxruntime_predicts(host_cli, held_out, float_logits, record_property):
    _, ours = host_cli
    agreement = float((ours.argmax(1) == float_logits.argmax(1)).mean())
    record_property("host_top1", top1(ours, held_out[1]))
    assert agreement >= 0.995
    assert top1(ours, held_out[1]) >= FLOAT_TOP1_FLOOR


def test_cli_run_prints_the_held_out_accuracy(host_cli, held_out, float_logits):
    stdout, ours = host_cli
    assert "held-out digits: 360 images" in stdout and "top-5" not in stdout
    found = re.search(r"top-1: this build ([\d.]+)%, ONNX Runtime float32 ([\d.]+)%; same class on (\d+)/360", stdout)
    assert found, stdout
    assert float(found[1]) == pytest.approx(100 * top1(ours, held_out[1]), abs=0.01)
    assert float(found[2]) == pytest.approx(100 * top1(float_logits, held_out[1]), abs=0.01)
    assert int(found[3]) >= 359 and "(OK, bound 1e-4)" in stdout


# --- int8 on the accelerator ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def accel_model() -> onnx.ModelProto:
    return build_model(MODEL, batch=ACCEL_BATCH)


@pytest.fixture(scope="module")
def tuned_log(accel_model, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("digits_accel_log")
    tune_accel(accel_model, load_target("accel-16x16"), log_dir, TUNING_TRIALS)
    return log_dir


@pytest.fixture(scope="module", params=["ws", "os", "tuned"])
def accel_build(request, accel_model, tuned_log, tmp_path_factory):
    """The int8 accelerator build (calibrated on training images by default) and its held-out logits."""
    options = {"tuning_log": tuned_log} if request.param == "tuned" else {"dataflow": request.param}
    output = tmp_path_factory.mktemp(f"digits_{request.param}") / "digits_accel.so"
    result = sqnxt_compiler.compile(accel_model, target="accel-16x16", output=output, **options)
    loaded = sqnxt_compiler.load(result.library)
    return request.param, result, predict(lambda x: loaded.run(x)[0], digits("test")[0], ACCEL_BATCH), loaded


@pytest.fixture(scope="module")
def int8_reference(accel_model) -> np.ndarray:
    """The int8 reference executor's held-out logits of the model quantized as the builds quantize it."""
    qdq = quantize_qdq(accel_model, load_calibration(calibration_images(batch=ACCEL_BATCH), accel_model))
    return predict(Int8Executor(qdq, backend="reference").run, digits("test")[0], ACCEL_BATCH)


def test_int8_accelerator_keeps_the_float_accuracy(accel_build, int8_reference, float_logits, held_out,
                                                   record_property):
    dataflow, result, ours, loaded = accel_build
    assert result.accel["calibration"] == f"{CALIBRATION_IMAGES} training images of the digits split"
    accuracy, reference = top1(ours, held_out[1]), top1(float_logits, held_out[1])
    record_property(f"int8_top1_{dataflow}", accuracy)
    assert accuracy >= reference - 0.01, f"{dataflow}: int8 {accuracy:.2%} vs float {reference:.2%}"
    assert np.array_equal(ours, int8_reference)    # bit-exact with the int8 reference, whatever the tiling
    tilings = {r.tiling["dataflow"] for r in loaded.accel_reports}
    if dataflow == "tuned":
        assert result.accel["tuned_layers"] == result.accel["layers"]
    else:
        assert tilings == {dataflow}


# --- reports: sqnxt-sim int8 and study --------------------------------------------------------------------

def test_sim_int8_reports_the_accuracy(capsys):
    assert sim_main(["int8", "--models", MODEL, "--samples", "60"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {MODEL} |"))
    float_top1, int8_top1 = (float(cell.strip().rstrip("%")) for cell in row.split("|")[4:6])
    assert float_top1 >= 100 * FLOAT_TOP1_FLOOR and int8_top1 >= float_top1 - 1.0


def test_study_puts_accuracy_beside_cycles_and_energy(tmp_path, capsys):
    assert sim_main(["study", "--models", f"{MODEL},1.0-SqNxt-23", "--configs", "accel-16x16", "--resolution", "32",
                     "--shortlist", "2", "--out", str(tmp_path / "study")]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(f"| {MODEL} | accel-16x16 |")]
    assert len(rows) == 3   # one per strategy
    assert re.search(r"\| WS \| 9\d\.\d\d% / 9\d\.\d\d% \| [\d,]+ \|", rows[0]), rows[0]
    assert "| 1.0-SqNxt-23 | accel-16x16 | WS | - (random weights) |" in out
    data = json.loads((tmp_path / "study" / "study.json").read_text())
    assert data["accuracy"][MODEL]["float"] >= FLOAT_TOP1_FLOOR and "1.0-SqNxt-23" not in data["accuracy"]


# --- ARM, under emulation ---------------------------------------------------------------------------------

ARM_SAMPLE = 24


def test_arm_build_agrees_with_the_host_under_emulation(aarch64_env, host_cli, held_out, tmp_path):
    model = build_model(MODEL, batch=ARM_SAMPLE)
    result = sqnxt_compiler.compile(model, target="arm", output=tmp_path / "digits_arm.so")
    images = held_out[0][:ARM_SAMPLE]
    np.save(tmp_path / "images.npy", images)
    aarch64_env.run(aarch64_env.sqnxt_command("run", str(result.library), "--input", str(tmp_path / "images.npy"),
                                              "--output", str(tmp_path / "logits.npy"), "--repeat", "0"),
                    timeout=600)
    arm = np.load(tmp_path / "logits.npy")
    _, host = host_cli
    assert np.array_equal(arm.argmax(1), host[:ARM_SAMPLE].argmax(1))
    np.testing.assert_allclose(arm, host[:ARM_SAMPLE], rtol=1e-4, atol=1e-4 * np.abs(host).max())


# --- training (the optional [train] extra) ----------------------------------------------------------------

def test_torch_runs_the_zoo_graph_as_onnxruntime_does(held_out):
    """The training script executes the zoo's ONNX graph with torch ops: on the shipped weights it gives ONNX
    Runtime's logits, so what was trained is what ships."""
    pytest.importorskip("torch")
    import torch

    from sqnxt_compiler.models.train_digits import OnnxGraphModule

    model = build_model(MODEL)
    net = OnnxGraphModule(model).eval()
    with torch.no_grad():
        ours = net(torch.from_numpy(held_out[0][:32])).numpy()
    np.testing.assert_allclose(ours, _ort_logits(model, held_out[0][:32]), rtol=1e-4, atol=1e-4)


def test_training_is_reproducible():
    """Same seed, same weights, bit for bit (one thread, deterministic algorithms, seeded shuffles and shifts)."""
    pytest.importorskip("torch")
    from sqnxt_compiler.models.train_digits import train

    runs = [train(epochs=3, train_images=640, log=lambda line: None) for _ in range(2)]
    assert runs[0].weights_sha256() == runs[1].weights_sha256() and runs[0].test_top1 == runs[1].test_top1
    assert runs[0].test_top1[-1] > 0.2    # learning (27.8% after these 30 steps): chance is 10%


def test_training_script_rejects_bad_flags(capsys):
    pytest.importorskip("torch")
    from sqnxt_compiler.models.train_digits import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--epochs", "0"])
    assert exit_info.value.code == 2 and capsys.readouterr().err.strip() == "error: --epochs must be >= 1, not 0"
