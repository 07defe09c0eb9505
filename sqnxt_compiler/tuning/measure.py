"""Builders and runners for tuning: this machine, or boards behind a TVM RPC tracker."""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from typing import Callable

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

from ..runtime import use_all_cores
from ..target import TargetSpec
from ..toolchain import library_compiler

# A trial's kernel is built in a fresh worker process; allow for the first import of TVM there.
BUILD_TIMEOUT_S = 120.0


def lean_build(mod, target, _params):
    """meta_schedule's default build without `import tvm.s_tir.tensor_intrin`, which parses CUDA
    intrinsics for 20-45 s in every fresh builder worker and makes builds time out silently."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm_build(mod, target=target)


def export_shared_library(rt_mod, target_file: str) -> str:
    """Export a trial kernel as a shared library linked for the target (cross-linked for boards)."""
    from ..target import load_target

    fcompile = library_compiler(load_target(target_file))
    path = os.path.join(tempfile.mkdtemp(prefix="sqnxt-trial-"), "kernel.so")
    rt_mod.export_library(path, fcompile=fcompile)
    return path


@dataclass(frozen=True)
class RpcOptions:
    tracker_host: str
    tracker_port: int
    key: str
    session_timeout_s: float = 120.0

    @classmethod
    def parse(cls, tracker: str, key: str) -> "RpcOptions":
        from ..errors import SqnxtError

        host, _, port = tracker.rpartition(":")
        if not host or not port.isdigit():
            raise SqnxtError(f"bad --rpc-tracker '{tracker}'; expected HOST:PORT, e.g. 10.0.0.5:9190")
        if not key:
            raise SqnxtError("--rpc-tracker needs --rpc-key (the key your boards registered with)")
        return cls(host, int(port), key)


class BoardGone(Exception):
    """Every board of a tuning run left the tracker (or the tracker went away) mid-run; the message says which."""


def board_check(rpc: RpcOptions):
    """A check that raises BoardGone unless the tracker answers and a board with the key is registered."""
    from ..errors import SqnxtError
    from ..remote import check_board

    def check() -> None:
        try:
            check_board(rpc.tracker_host, rpc.tracker_port, rpc.key)
        except SqnxtError as err:
            raise BoardGone(str(err)) from None

    return check


def create_session_if_registered(rpc_config):
    """The RPC runner's `f_create_session` (it runs in the runner's worker): ask the tracker first whether a board
    with the key is registered at all. Without this a trial waits the whole session timeout for a board that has
    gone, and tuning through a vanished board takes trials x 120 s to fail."""
    from ..remote import check_board

    check_board(rpc_config.tracker_host, rpc_config.tracker_port, rpc_config.tracker_key)
    return rpc_config.connect_server()


def all_failed(runner_results) -> bool:
    return bool(runner_results) and all(r.error_msg is not None or not r.run_secs for r in runner_results)


@derived_object
class BoardWatch(PyMeasureCallback):
    """A measure callback to run first: when a whole batch failed to run, `check` the board is still registered;
    if it is not, stop the run (raise) before the batch reaches the log - its failures are the board's absence,
    not the schedules', and logged they would count as trials and keep the candidates from being re-measured."""

    def __init__(self, check: Callable[[], None]) -> None:
        super().__init__()
        self.check = check
        self.gone: str | None = None

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        if not all_failed(runner_results):
            return
        try:
            self.check()
        except BoardGone as err:
            self.gone = str(err)
            raise


def make_builder(spec: TargetSpec, remote: bool):
    from tvm.s_tir import meta_schedule as ms

    # Remote boards load a shared library linked for them; locally meta_schedule's tar export is fine.
    f_export = functools.partial(export_shared_library, target_file=str(spec.path)) if remote else None
    return ms.builder.LocalBuilder(f_build=lean_build, f_export=f_export, timeout_sec=BUILD_TIMEOUT_S,
                                   max_workers=os.cpu_count())


def run_evaluator_after_warmup(rt_mod, device, evaluator_config, repeated_args) -> list[float]:
    """meta_schedule's evaluator with one more repeat whose time is dropped: the first repeat of a
    parallel kernel in a fresh runner process also wakes and settles the thread pool, which biases the mean
    against parallel schedules. This is the local runner's `f_run_evaluator`; it runs in the runner's worker process."""
    flush = bool(evaluator_config.enable_cpu_cache_flush)
    evaluator = rt_mod.time_evaluator(func_name=rt_mod.entry_name, dev=device, number=evaluator_config.number,
                                      repeat=evaluator_config.repeat + 1,
                                      min_repeat_ms=evaluator_config.min_repeat_ms,
                                      f_preproc="cache_flush_cpu_non_first_arg" if flush else "")
    costs: list[float] = []
    for args in repeated_args:
        device.sync()
        costs.extend(float(cost) for cost in evaluator(*args).results[1:])
    return costs


def rpc_run_evaluator_after_warmup(_session, rt_mod, device, evaluator_config, repeated_args) -> list[float]:
    """`run_evaluator_after_warmup` with the RPC runner's signature (it also passes the session)."""
    return run_evaluator_after_warmup(rt_mod, device, evaluator_config, repeated_args)


def _evaluator(repeat: int = 3, cold_caches: bool = False):
    from tvm.s_tir import meta_schedule as ms

    if cold_caches:  # one run per repeat, each after its weights and output are flushed from the caches
        return ms.runner.EvaluatorConfig(number=1, repeat=3 * repeat + 4, min_repeat_ms=0, enable_cpu_cache_flush=True)
    return ms.runner.EvaluatorConfig(number=3, repeat=repeat, min_repeat_ms=20, enable_cpu_cache_flush=False)


def make_runner(spec: TargetSpec, rpc: RpcOptions | None, cold_caches: bool = False):
    """meta_schedule's runner, local or through the RPC tracker; with `cold_caches`, each run after every
    argument but the input is flushed from the CPU caches (as in a network, where the weights and the output
    buffer come from memory), instead of repeated hot."""
    from tvm.s_tir import meta_schedule as ms

    if rpc is None:
        # The runner's workers inherit the environment: measure kernels the way a deployment runs them.
        use_all_cores(spec.cpu.get("cores"))
        return ms.runner.LocalRunner(timeout_sec=60, evaluator_config=_evaluator(cold_caches=cold_caches),
                                     f_run_evaluator=run_evaluator_after_warmup)
    config = ms.runner.RPCConfig(tracker_host=rpc.tracker_host, tracker_port=rpc.tracker_port,
                                 tracker_key=rpc.key, session_timeout_sec=rpc.session_timeout_s)
    return ms.runner.RPCRunner(rpc_config=config, evaluator_config=_evaluator(cold_caches=cold_caches),
                               f_create_session=create_session_if_registered,
                               f_run_evaluator=rpc_run_evaluator_after_warmup)
