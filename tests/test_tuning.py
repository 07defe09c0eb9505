"""sqnxt-tune with tiny budgets: local and RPC measurement, the cost model in use, kill + resume, bad logs."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import onnx
import pytest

from sqnxt_compiler.errors import SqnxtError
from sqnxt_compiler.models import build_model
from sqnxt_compiler.models.graph_builder import GraphBuilder, Tensor
from sqnxt_compiler.target import load_target
from sqnxt_compiler.tuning import extract_tuning_tasks, open_database, tune
from sqnxt_compiler.records.database import RECORDS, WORKLOADS, TuningLogWarning

from utils import compare_with_reference, compile_and_compare, runs_here


def two_conv_model(batch: int = 1) -> onnx.ModelProto:
    """Two distinct convolution kernels (a 3x3 and a 1x1) and nothing else worth tuning."""
    g = GraphBuilder(seed=3)
    x = Tensor("data", (batch, 8, 16, 16))
    y = g.relu(g.conv(x, 16, (3, 3), pad=(1, 1), bias=True, name="c3"))
    y = g.relu(g.conv(y, 8, (1, 1), bias=True, name="c1"))
    return g.finish("two_convs", x, y)


def record_lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in (log / RECORDS).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tuned_log(tmp_path_factory) -> tuple[Path, object]:
    log = tmp_path_factory.mktemp("tune") / "two_convs" / "host"
    report = tune(two_conv_model(), load_target("host"), log, trials=40, seed=1)
    return log, report


def test_tasks_are_deduplicated_and_weighted() -> None:
    model = build_model("1.0-SqNxt-23")
    tasks = extract_tuning_tasks(model, load_target("host"))
    names = [t.name for t in tasks]
    assert len(names) == len(set(names))
    assert sum(t.occurrences for t in tasks) > len(tasks)  # repeated blocks collapse into one task
    declared = int(next(p.value for p in model.metadata_props if p.key == "macs"))
    counted = sum(t.total_macs for t in tasks)  # conv + FC as declared, plus the pools' window reductions
    assert 0 <= (counted - declared) / declared < 0.01
    assert tasks[0].total_macs == max(t.total_macs for t in tasks)  # heaviest first


@pytest.mark.parametrize("name", ["mobilenet-v2", "resnet-18", "squeezenet1.1"])
def test_the_task_scheduler_reads_every_kernel_of_the_ordinary_cnns(name) -> None:
    """meta_schedule's task scheduler estimates each task's FLOPs from its TIR, and fails on expressions it
    does not know (a vector Shuffle in a depthwise kernel once stopped `sqnxt-tune` on MobileNetV2)."""
    from tvm.s_tir.analysis import estimate_tir_flops

    tasks = extract_tuning_tasks(build_model(name, resolution=64), load_target("host"))
    assert {"depthwise", "winograd_rows"} & {t.name.split("fused_")[-1].rstrip("0123456789") for t in tasks}
    for task in tasks:
        assert estimate_tir_flops(task.mod) >= 0, task.name


def test_tune_two_tasks_locally_and_apply(tuned_log, tmp_path) -> None:
    log, report = tuned_log
    assert [t.name for t in report.tasks if t.trials] and len(report.tasks) == 2
    assert all(t.trials > 0 and t.best_s is not None for t in report.tasks)
    assert report.trials_run >= 40 and len(record_lines(log)) == report.trials_run
    # each kernel's default schedule was measured first, and nothing failed to build or run
    assert report.default_trials == 2 and report.failed_trials == 0, report.notes
    # The XGBoost model ranked candidates after its (budget-sized) warm-up, not only random scores.
    assert report.model_predictions > 0
    assert json.loads((log / "meta.json").read_text())["target"] == "host"
    result_error = compile_and_compare(two_conv_model(), tmp_path, tuning_log=log)
    assert result_error <= 1e-4


def test_tuned_records_are_applied_and_explained(tuned_log, tmp_path) -> None:
    import sqnxt_compiler

    log, _ = tuned_log
    result = sqnxt_compiler.compile(two_conv_model(), "host", output=tmp_path / "m.so", tuning_log=log)
    assert any("2 distinct kernels scheduled from tuning records" in n for n in result.notes["schedule"])
    # the default schedule rules leave the tuned kernels alone (they would otherwise re-schedule them)
    assert not any(n.startswith("fused_conv2d") for n in result.notes["schedule"]), result.notes["schedule"]


def test_records_for_another_target_or_shape_are_ignored(tuned_log, tmp_path) -> None:
    import sqnxt_compiler

    log, _ = tuned_log
    with pytest.warns(TuningLogWarning, match="measured for CPU class 'x86-"):
        result = sqnxt_compiler.compile(two_conv_model(), "arm", output=tmp_path / "arm.so", tuning_log=log)
    assert any("no usable records" in n for n in result.notes["schedule"])
    other_shape = build_model("resnet-tiny")
    with pytest.warns(TuningLogWarning, match="do not occur in this model"):
        compile_and_compare(other_shape, tmp_path, tuning_log=log)


def test_a_log_holds_the_model_at_several_batch_sizes(tuned_log, tmp_path) -> None:
    """The model tuned at batch 2 into its batch-1 log: each build takes the records of its own batch size, and
    the other batch's records are named in a note, without the warning meant for stale records."""
    import shutil

    import sqnxt_compiler

    log = tmp_path / "two_convs" / "host"
    shutil.copytree(tuned_log[0], log)
    tune(two_conv_model(batch=2), load_target("host"), log, trials=4, seed=1)
    for batch, other in ((1, 2), (2, 1)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = sqnxt_compiler.compile(two_conv_model(batch), "host", output=tmp_path / f"b{batch}.so",
                                            tuning_log=log)
        assert not [str(w.message) for w in caught if "do not occur" in str(w.message)]
        notes = result.notes["schedule"]
        assert any("2 distinct kernels scheduled from tuning records" in n for n in notes), notes
        assert any(f"2 tuned kernels in {log} are for other batch sizes (batch {other}: 2); this build is batch "
                   f"{batch}" in n for n in notes), notes
        assert compare_with_reference(two_conv_model(batch), result) <= 1e-4
    assert json.loads((log / "meta.json").read_text())["input_shapes"] == [{"data": [1, 8, 16, 16]},
                                                                           {"data": [2, 8, 16, 16]}]


def test_cold_caches_flush_weights_and_output_before_every_run(tmp_path) -> None:
    """--cold-caches: each timed run follows a flush of every argument but the input (TVM's
    cache_flush_cpu_non_first_arg), one run per repeat; the log says how it was measured."""
    from types import SimpleNamespace

    from sqnxt_compiler.tuning.measure import _evaluator, run_evaluator_after_warmup

    asked: dict = {}

    class Module:
        entry_name = "main"

        def time_evaluator(self, **options):
            asked.update(options)
            return lambda *args: SimpleNamespace(results=[9.0] + [1.0] * (options["repeat"] - 1))

    device = SimpleNamespace(sync=lambda: None)
    for cold, preproc in ((True, "cache_flush_cpu_non_first_arg"), (False, "")):
        config = _evaluator(cold_caches=cold)
        costs = run_evaluator_after_warmup(Module(), device, config, [("data", "weight", "output")])
        assert asked["f_preproc"] == preproc and 9.0 not in costs  # the warm-up repeat is dropped
        assert (asked["number"], config.enable_cpu_cache_flush) == ((1, True) if cold else (3, False))
    log = tmp_path / "cold"
    report = tune(two_conv_model(), load_target("host"), log, trials=4, seed=1, cold_caches=True)
    assert report.trials_run >= 4 and report.failed_trials == 0
    assert json.loads((log / "meta.json").read_text())["caches"] == "cold"


def test_a_finished_log_is_not_tuned_again(tuned_log) -> None:
    log, report = tuned_log
    again = tune(two_conv_model(), load_target("host"), log, trials=report.trials_run)
    assert again.trials_run == 0 and again.trials_before == report.trials_run
    assert "nothing to do" in again.notes[0]
    assert all(t.best_s is not None for t in again.tasks)  # best times come back from the log


def test_corrupt_log_lines_are_skipped_with_a_warning(tuned_log, tmp_path) -> None:
    import shutil

    log = tmp_path / "copy"
    shutil.copytree(tuned_log[0], log)
    good = len(record_lines(log))
    with open(log / RECORDS, "a") as f:
        f.write('[0, [["not a trace"]')  # what kill -9 leaves behind mid-write
    with open(log / WORKLOADS, "a") as f:
        f.write("garbage\n")
    with pytest.warns(TuningLogWarning, match="corrupt and was skipped"):
        database = open_database(log)
    assert len(database.get_all_tuning_records()) == good
    compile_and_compare(two_conv_model(), tmp_path, tuning_log=log)


def test_missing_log_is_a_clear_error(tmp_path) -> None:
    import sqnxt_compiler

    with pytest.raises(SqnxtError, match="not a directory"):
        sqnxt_compiler.compile(two_conv_model(), "host", output=tmp_path / "m.so", tuning_log=tmp_path / "nope")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sqnxt_compiler.cli.tune", *args]


def test_kill_mid_run_then_resume(tmp_path) -> None:
    model_path = tmp_path / "two_convs.onnx"
    onnx.save(two_conv_model(), model_path)
    log = tmp_path / "log"
    command = _cli(str(model_path), "--trials", "24", "--log", str(log), "--json")
    first = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    for line in first.stdout:  # kill -9 as soon as the first batch of measurements is in the log
        if json.loads(line)["event"] == "progress":
            os.killpg(first.pid, signal.SIGKILL)
            break
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL
    saved = len(record_lines(log))
    assert 0 < saved < 24
    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["event"] == "summary" and summary["trials_before"] == saved
    assert saved + summary["trials_run"] >= 24
    assert len(record_lines(log)) == saved + summary["trials_run"]


def test_cli_rejects_bad_arguments(tmp_path) -> None:
    for args, message in ((["--model", "resnet-tiny", "--rpc-tracker", "nohost"], "expected HOST:PORT"),
                          (["--model", "resnet-tiny", "--rpc-tracker", "h:1"], "needs --rpc-key"),
                          (["--model", "resnet-tiny", "--trials", "0", "--log", str(tmp_path)], "must be positive"),
                          (["--model", "no-such-model"], "no-such-model"),
                          (["--model", "resnet-tiny", "--target", "accel-16x16", "--cold-caches"], "no --cold-caches")):
        done = subprocess.run(_cli(*args), capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rpc_tracker_with_server():
    """A TVM RPC tracker and one server registered with it (key "sqnxt-test"), both on 127.0.0.1."""
    port = _free_port()
    tracker = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1",
                                "--port", str(port), "--port-end", str(port + 1)], start_new_session=True)
    server = None
    try:
        _wait_for_port(port)
        server_port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1",
                                   "--port", str(server_port), "--port-end", str(server_port + 1),
                                   "--tracker", f"127.0.0.1:{port}",
                                   "--key", "sqnxt-test"], start_new_session=True)
        _wait_for_key(port, "sqnxt-test")
        yield f"127.0.0.1:{port}"
    finally:
        for process in (server, tracker):
            if process is not None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def _wait_for_key(port: int, key: str, timeout: float = 60.0) -> None:
    from tvm import rpc

    deadline = time.time() + timeout
    while time.time() < deadline:
        summary = rpc.connect_tracker("127.0.0.1", port).summary()
        if any(key in str(server) for server in summary.get("server_info", [])):
            return
        time.sleep(0.5)
    raise TimeoutError(f"no RPC server registered with key {key}")


def test_tune_through_rpc_tracker(rpc_tracker_with_server, tmp_path) -> None:
    from sqnxt_compiler.tuning.measure import RpcOptions

    log = tmp_path / "rpc"
    with warnings.catch_warnings():
        warnings.simplefilter("error", TuningLogWarning)
        report = tune(two_conv_model(), load_target("host"), log, trials=8,
                      rpc=RpcOptions.parse(rpc_tracker_with_server, "sqnxt-test"))
    assert report.trials_run >= 8 and report.failed_trials < report.trials_run
    assert all(t.best_s is not None for t in report.tasks)
    compile_and_compare(two_conv_model(), tmp_path, tuning_log=log)


SHIPPED_LOGS = Path(__file__).resolve().parent.parent / "tuning_logs"


# (model, CPU class, batch): SqueezeNext's logs hold batch 1 and 8 for both x86 classes; the ordinary CNNs'
# hold batch 1 for both
SHIPPED = ([(model, cpu_class, batch) for model in ("1.0-SqNxt-23", "1.0-SqNxt-23v5")
            for cpu_class in ("x86-avx2", "x86-avx512") for batch in (1, 8)]
           + [(model, cpu_class, 1) for model in ("mobilenet-v2", "resnet-18", "squeezenet1.1")
              for cpu_class in ("x86-avx2", "x86-avx512")])


@pytest.mark.parametrize("model_name, cpu_class, batch", SHIPPED)
def test_shipped_logs_match_the_current_pipeline(model_name, cpu_class, batch, tmp_path) -> None:
    """The shipped logs of each CPU class must still schedule the kernels our pipeline produces for that
    class at each batch size they hold (`SHIPPED`; else: regenerate them), and the build must still match ONNX
    Runtime."""
    import sqnxt_compiler

    log = SHIPPED_LOGS / model_name / cpu_class
    if not (log / WORKLOADS).is_file():
        pytest.skip(f"no shipped {cpu_class} log for {model_name}")
    if not runs_here(cpu_class):
        pytest.skip(f"this machine cannot run {cpu_class} code")
    model = build_model(model_name, batch=batch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sqnxt_compiler.compile(model, cpu_class, output=tmp_path / "m.so", tuning_log=log.parent)
    # no record ignored (of another class, or for kernels this pipeline no longer makes); records of the
    # class measured on one CPU model of it (the shipped x86-avx512 log: Zen 4) are applied with a note
    problems = [str(w.message) for w in caught if issubclass(w.category, TuningLogWarning)
                and "applied, but re-tune" not in str(w.message)]
    assert not problems, problems
    scheduled = next(n for n in result.notes["schedule"] if "distinct kernels scheduled" in n)
    assert str(log) in scheduled and int(scheduled.split()[0]) > 0
    # every kernel but the elementwise ones (which the tuner leaves) comes from the log
    untuned = [n for n in result.notes["schedule"] if re.match(r"\S+: ", n) and "pooling-elementwise" not in n]
    assert not untuned, untuned
    compare_with_reference(model, result)


def test_a_build_takes_the_log_of_its_own_class(tmp_path) -> None:
    """`--tuning-log tuning_logs/<model>` picks the build's class; a class without a log builds untuned,
    with one warning that names the classes the folder has."""
    import sqnxt_compiler

    model = build_model("1.0-SqNxt-23")
    logs = SHIPPED_LOGS / "1.0-SqNxt-23"
    have = sorted(p.name for p in logs.iterdir() if (p / WORKLOADS).is_file())
    assert have, "no shipped CPU logs for 1.0-SqNxt-23"
    for cpu_class in ("x86-avx2", "x86-avx512"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = sqnxt_compiler.compile(model, cpu_class, output=tmp_path / f"{cpu_class}.so", tuning_log=logs)
        notes = " ".join(result.notes["schedule"])
        messages = [str(w.message) for w in caught if issubclass(w.category, TuningLogWarning)]
        if cpu_class in have:
            assert f"{logs / cpu_class}" in notes
            assert all("applied, but re-tune" in m for m in messages), messages
        else:
            assert len(messages) == 1 and f"'{cpu_class}'" in messages[0] and have[0] in messages[0]
    # the arm build never takes an x86 record: one warning per group of records skipped
    with pytest.warns(TuningLogWarning, match="measured for CPU class 'x86-avx"):
        result = sqnxt_compiler.compile(model, "arm", output=tmp_path / "arm.so", tuning_log=logs / have[0])
    assert any("no usable records" in n for n in result.notes["schedule"])
