"""sqnxt-tune for accelerator targets: per-layer tiling search in simulated cycles, its log, and applying it."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import sqnxt_compiler
from sqnxt_compiler.accel.machine.config import AccelConfig
from sqnxt_compiler.accel.int8.reference import Int8Executor
from sqnxt_compiler.accel.machine.layer import LayerSpec
from sqnxt_compiler.accel.int8.quantize import synthetic_inputs
from sqnxt_compiler.accel.machine.tiling import overflows
from sqnxt_compiler.models import build_model
from sqnxt_compiler.target import load_target
from sqnxt_compiler.records.accel_log import LOG_FILE, AccelLog, TunedTilings, layer_key
from sqnxt_compiler.tuning.accel_tuner import allocate, extract_accel_tasks, tune_accel
from sqnxt_compiler.records.database import TuningLogWarning

RESOLUTION = 64      # 1.0-SqNxt-23 at 64x64: every layer kind, 36 distinct shapes, fast to simulate
TRIALS = 100         # 72 default tilings (WS and OS per shape), then warm-up and model-guided trials
SMALL_TRIALS = 24    # resnet-tiny: 9 shapes


@pytest.fixture(scope="module")
def sqnxt23():
    return build_model("1.0-SqNxt-23", resolution=RESOLUTION)


@pytest.fixture(scope="module")
def tuned(sqnxt23, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("accel_log")
    events: list[dict] = []
    report = tune_accel(sqnxt23, load_target("accel-16x16"), log_dir, TRIALS, on_progress=events.append)
    return log_dir, report, events


@pytest.fixture()
def small_log(tmp_path):
    """resnet-tiny tuned with a tiny budget, in a fresh folder per test."""
    log_dir = tmp_path / "log"
    report = tune_accel(build_model("resnet-tiny"), load_target("accel-16x16"), log_dir, SMALL_TRIALS)
    return log_dir, report


def _lines(log_dir) -> list[str]:
    return (log_dir / LOG_FILE).read_text().splitlines()


def test_tuned_network_is_never_slower_and_the_cost_model_picks_trials(tuned):
    log_dir, report, events = tuned
    totals = report.totals()
    assert totals["tuned"] <= totals["best_single_dataflow"] == min(totals["ws_only"], totals["os_only"])
    assert totals["tuned"] < totals["ws_only"]
    assert report.trials_run == TRIALS == len(_lines(log_dir)) == len(events)
    assert report.default_trials == 2 * len(report.tasks) == 72
    # after warm-up the trained model chose most trials and ranked many candidates
    assert report.model_trials > report.random_trials and report.model_predictions > report.model_trials
    assert report.default_trials + report.model_trials + report.random_trials == TRIALS
    assert sum(t.occurrences for t in report.tasks) == 112
    assert events[-1]["trials_done"] == TRIALS and events[-1]["total_cycles"] == totals["tuned"]


def test_only_legal_tilings_are_measured(tuned, sqnxt23):
    log_dir, _, _ = tuned
    config = AccelConfig.load("accel-16x16")
    tasks = {t.key: t for t in extract_accel_tasks(sqnxt23, config)}
    records = AccelLog(log_dir).records
    assert {r.layer for r in records} == set(tasks)
    for record in records:
        assert not overflows(tasks[record.layer].layer, config, record.tiling)
        assert record.tiling in tasks[record.layer].candidates
    assert len({(r.layer, r.tiling) for r in records}) == len(records)   # nothing measured twice


def test_tuned_tilings_apply_bit_exactly_and_give_the_tuned_cycles(tuned, sqnxt23, tmp_path):
    log_dir, report, _ = tuned
    result = sqnxt_compiler.compile(sqnxt23, target="accel-16x16", output=tmp_path / "m.so", tuning_log=log_dir)
    assert result.accel["tuned_layers"] == result.accel["layers"] == 112
    assert "tuned tilings for 112 of 112 layers" in result.notes["lower_accel"][-1]
    loaded = sqnxt_compiler.load(result.library)
    reference = Int8Executor(result.quantized, backend="reference")
    x = synthetic_inputs(sqnxt23, 1, seed=7)[0]
    assert np.array_equal(loaded.run(x)[0], reference.run(x))
    assert sum(r.cycles for r in loaded.accel_reports) == report.totals()["tuned"]
    # the check means something: the tuned layers differ from the default WS tilings, in both dataflows
    assert {r.tiling["dataflow"] for r in loaded.accel_reports} == {"ws", "os"}


def test_rerun_resumes_and_a_full_budget_does_nothing(small_log):
    log_dir, first = small_log
    assert first.trials_run == SMALL_TRIALS
    again = tune_accel(build_model("resnet-tiny"), load_target("accel-16x16"), log_dir, SMALL_TRIALS)
    assert (again.trials_before, again.trials_run) == (SMALL_TRIALS, 0) and "nothing to do" in again.notes[-1]
    assert len(_lines(log_dir)) == SMALL_TRIALS and again.totals() == first.totals()
    more = tune_accel(build_model("resnet-tiny"), load_target("accel-16x16"), log_dir, SMALL_TRIALS + 10)
    assert (more.trials_before, more.trials_run, more.default_trials) == (SMALL_TRIALS, 10, 0)
    assert more.totals()["tuned"] <= first.totals()["tuned"]
    records = AccelLog(log_dir).records
    assert len(records) == SMALL_TRIALS + 10 == len({(r.layer, r.tiling) for r in records})


def test_truncated_last_line_is_dropped_with_a_warning(small_log):
    log_dir, _ = small_log
    path = log_dir / LOG_FILE
    text = path.read_text()
    path.write_text(text[:-25])   # killed in the middle of writing the last record
    with pytest.warns(TuningLogWarning, match=f"{LOG_FILE} line {SMALL_TRIALS} is corrupt and was skipped"):
        report = tune_accel(build_model("resnet-tiny"), load_target("accel-16x16"), log_dir, SMALL_TRIALS)
    assert (report.trials_before, report.trials_run) == (SMALL_TRIALS - 1, 1)
    lines = _lines(log_dir)
    assert len(lines) == SMALL_TRIALS and all(json.loads(line)["cycles"] > 0 for line in lines)


def test_records_of_another_accelerator_are_ignored_with_a_warning(small_log):
    log_dir, _ = small_log
    for config in (AccelConfig.load("accel-32x32"), AccelConfig.load("accel-16x16").replace(input_bytes=8192)):
        with pytest.warns(TuningLogWarning, match="measured on another accelerator"):
            tuned = TunedTilings(log_dir, config)
        assert tuned.best == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(TunedTilings(log_dir, AccelConfig.load("accel-16x16")).best) == 9


def test_accelerator_log_is_refused_for_a_cpu_target(small_log, tmp_path):
    from sqnxt_compiler.errors import SqnxtError

    with pytest.raises(SqnxtError, match="holds accelerator tilings"):
        sqnxt_compiler.compile(build_model("resnet-tiny"), "host", output=tmp_path / "m.so", tuning_log=small_log[0])
    assert sorted(p.name for p in small_log[0].iterdir()) == [LOG_FILE, "meta.json"]


def test_layer_key_ignores_the_name_and_allocation_follows_weights():
    a = LayerSpec.conv2d(32, 64, 28, kernel=3, name="a")
    assert layer_key(a) == layer_key(LayerSpec.conv2d(32, 64, 28, kernel=3, name="b")) != layer_key(
        LayerSpec.conv2d(32, 64, 28, kernel=3, stride=2))
    assert allocate([3.0, 1.0], 8) == [6, 2] and sum(allocate([1.0, 1.0, 1.0], 10)) == 10
    assert allocate([0.0], 5) == [0]


def _cli(command: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", f"import sys; from sqnxt_compiler.cli.{command} import main; "
                           "sys.exit(main(sys.argv[1:]))", *args], capture_output=True, text=True)


def test_cli_tunes_resumes_and_applies(tmp_path):
    log_dir = tmp_path / "log"
    args = ("--model", "resnet-tiny", "--target", "accel-16x16", "--trials", str(SMALL_TRIALS), "--log", str(log_dir))
    run = _cli("tune", *args, "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.splitlines()[-1])
    assert summary["event"] == "summary" and summary["trials_run"] == SMALL_TRIALS
    assert summary["totals"]["tuned"] <= summary["totals"]["best_single_dataflow"]
    table = _cli("tune", *args)
    # stdout is no terminal here: the summary table goes there (with the progress lines), not to the terminal
    assert table.returncode == 0 and "nothing to do" in table.stdout and "network cycles: tuned" in table.stdout
    compiled = _cli("compile", "--model", "resnet-tiny", "--target", "accel-16x16", "--tuning-log", str(log_dir),
                    "-o", str(tmp_path / "m.so"), "--explain")
    assert compiled.returncode == 0, compiled.stderr
    assert "tuned tilings for 10 of 10 layers" in compiled.stdout


@pytest.mark.parametrize("args, message", [
    (("--trials", "0"), "--trials must be positive"),
    (("--trials", "5", "--rpc-tracker", "127.0.0.1:9"), "is an accelerator target"),
    (("--trials", "5", "--space", "generic"), "is an accelerator target"),
    (("--trials", "5", "--top-tasks", "0"), "--top-tasks must be positive"),
])
def test_cli_bad_arguments_are_one_line(tmp_path, args, message):
    run = _cli("tune", "--model", "resnet-tiny", "--target", "accel-16x16", "--log", str(tmp_path / "log"), *args)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and message in lines[0], run.stderr
    assert not (tmp_path / "log").exists()


def test_missing_log_for_compile_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    run = _cli("compile", "--model", "resnet-tiny", "--target", "accel-16x16", "--tuning-log", str(tmp_path / "empty"),
               "-o", str(tmp_path / "m.so"))
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and "has no accel_records.jsonl" in lines[0]
