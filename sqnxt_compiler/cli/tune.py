"""`sqnxt-tune`: autotune a model for a target: its kernels on a CPU (this machine, or boards behind a TVM RPC
tracker), or its layers' dataflow and tiles on an accelerator (simulated cycles)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import SqnxtError
from ..outputs import check_output_dir
from .common import EXIT_INTERRUPTED, ArgumentParser, add_model_arguments, entry_point, model_from_arguments

DEFAULT_LOG_ROOT = Path("tuning_logs")


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="sqnxt-tune", description=__doc__,
        epilog="The log is TVM's JSON database (CPU) or one JSON line per simulated tiling (accelerator); "
               "interrupt at any time and re-run the same command to continue.")
    add_model_arguments(p)
    p.add_argument("--trials", type=int, default=2000,
                   help="measured trials the log should hold in total for this model (default: 2000)")
    p.add_argument("--log", metavar="DIR", help="tuning log folder (default: tuning_logs/<model>/<CPU class>, or <target> for an accelerator)")
    p.add_argument("--rpc-tracker", metavar="HOST:PORT", help="measure on boards registered with this TVM RPC tracker")
    p.add_argument("--rpc-key", help="the key the boards registered with (with --rpc-tracker)")
    p.add_argument("--space", choices=("ours", "generic"), default="ours",
                   help="design spaces: our WS/OS schedule families (default) or meta_schedule's generic one")
    p.add_argument("--top-tasks", type=int, metavar="N", help="tune only the N heaviest kernels (occurrences x MACs)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the search")
    p.add_argument("--cold-caches", action="store_true",
                   help="time each candidate with its weights and output flushed from the CPU caches, as in a "
                        "network (default: repeated with its data in cache)")
    p.add_argument("--json", action="store_true", help="machine-readable output: one JSON object per line")
    return p


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from ..frontend import parse_input_shapes
    from ..target import load_target
    from ..tuning import tune
    from ..tuning.measure import RpcOptions

    if args.trials <= 0:
        raise SqnxtError(f"--trials must be positive (got {args.trials})")
    if args.top_tasks is not None and args.top_tasks <= 0:
        raise SqnxtError(f"--top-tasks must be positive (got {args.top_tasks})")
    spec = load_target(args.target)
    if spec.kind == "accel" and (args.rpc_tracker or args.space != "ours" or args.cold_caches):
        raise SqnxtError(f"'{spec.name}' is an accelerator target: it is measured on the simulator (no "
                         "--rpc-tracker, no --cold-caches) over its own dataflow/tile space (no --space)")
    model, model_name = model_from_arguments(args)
    log_dir = check_output_dir(Path(args.log) if args.log
                               else DEFAULT_LOG_ROOT / model_name / (spec.cpu_class or spec.name), "tuning log")
    display = (_JsonLines() if args.json else _LiveTable(args.trials) if sys.stdout.isatty()
               else _PlainProgress(args.trials, log_dir))
    options = dict(input_shapes=parse_input_shapes(args.input_shape), seed=args.seed, top_tasks=args.top_tasks,
                   model_name=model_name, on_progress=display.update)
    try:
        with display:
            if spec.kind == "accel":
                from ..tuning.accel_tuner import tune_accel

                report = tune_accel(model, spec, log_dir, args.trials, **options)
            else:
                rpc = RpcOptions.parse(args.rpc_tracker, args.rpc_key or "") if args.rpc_tracker else None
                report = tune(model, spec, log_dir, args.trials, rpc=rpc, space=args.space,
                              cold_caches=args.cold_caches, **options)
    except KeyboardInterrupt:
        print(f"interrupted: the measured trials are saved in {log_dir}; re-run the same command to continue",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    display.summary(report)
    return 0


class _JsonLines:
    def __enter__(self) -> "_JsonLines":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, event: dict) -> None:
        print(json.dumps(event), flush=True)

    def summary(self, report) -> None:
        print(json.dumps({"event": "summary", **report.to_json()}, default=str), flush=True)


class _LiveTable:
    """A rich live view: overall progress, then the heaviest tasks with their best latency so far."""

    def __init__(self, trials: int) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.trials = trials
        self.live = None
        self.latest: dict = {}

    def __enter__(self) -> "_LiveTable":
        from rich.live import Live

        self.live = Live(console=self.console, refresh_per_second=2, transient=True)
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)

    def update(self, event: dict) -> None:
        from rich.text import Text

        self.latest = event
        self.live.update(Text(_progress_text(event)))

    def summary(self, report) -> None:
        from rich.table import Table

        from ..tuning.accel_tuner import AccelTuneReport

        if isinstance(report, AccelTuneReport):
            self._accel_summary(report)
            return
        table = Table(title=f"sqnxt-tune {report.target}: {report.log_dir}")
        for column in ("task", "x", "MMACs", "trials", "best", "GFLOP/s", "space"):
            table.add_column(column, justify="left" if column in ("task", "space") else "right")
        for task in report.tasks:
            gflops = task.best_gflops
            table.add_row(task.name, str(task.occurrences), f"{task.macs / 1e6:.2f}", str(task.trials),
                          _ms(task.best_s * 1e3 if task.best_s else None),
                          "-" if gflops is None else f"{gflops:.1f}", task.space or "-")
        self.console.print(table)
        estimate = report.estimated_latency_ms
        self.console.print(
            f"trials: {report.trials_before} from the log + {report.trials_run} now in {report.wall_s:.0f} s "
            f"({report.failed_trials} failed to build or run); "
            f"estimated latency (sum of tuned kernels) {'-' if estimate is None else f'{estimate:.3f} ms'}; "
            f"cost model ranked {report.model_predictions} candidates "
            f"({report.random_predictions} scored at random during warm-up)")
        self._footer(report)

    def _footer(self, report) -> None:
        for note in report.notes:
            self.console.print(f"note: {note}")
        self.console.print(f"apply with: sqnxt-compile ... --target {report.target} --tuning-log {report.log_dir}")

    def _accel_summary(self, report) -> None:
        """Per layer: best cycles vs its default WS tiling; then the network under each strategy."""
        from rich.table import Table

        table = Table(title=f"sqnxt-tune {report.target}: {report.log_dir}")
        for column in ("layer", "shape", "x", "trials", "space", "WS default", "best", "best tiling"):
            table.add_column(column, justify="left" if column in ("layer", "shape", "best tiling") else "right")
        for task in report.tasks:
            tiling = task.best_tiling
            table.add_row(task.name, task.describe, str(task.occurrences), str(task.trials), str(task.candidates),
                          f"{task.ws_cycles:,}", "-" if task.best_cycles is None else f"{task.best_cycles:,}",
                          "-" if tiling is None else "{dataflow} {tile_oh}x{tile_ow} co{tile_cout} ci{tile_cin}".format(
                              **tiling))
        self.console.print(table)
        totals = report.totals()
        tuned = totals["tuned"]
        self.console.print(
            f"trials: {report.trials_before} from the log + {report.trials_run} now in {report.wall_s:.1f} s "
            f"({report.default_trials} default tilings, {report.random_trials} random, {report.model_trials} "
            f"picked by the cost model, which ranked {report.model_predictions} candidates)")
        self.console.print(
            f"network cycles: tuned {tuned:,} ({report.estimated_latency_ms:.3f} ms simulated); default (WS-only) "
            f"{totals['ws_only']:,} (tuned is {totals['ws_only'] / tuned:.3f}x faster); OS-only {totals['os_only']:,}; "
            f"best of WS-only/OS-only {totals['best_single_dataflow']:,} "
            f"(tuned is {totals['best_single_dataflow'] / tuned:.3f}x faster)")
        self._footer(report)


PLAIN_PROGRESS_PERIOD_S = 30.0   # a test makes it 0


class _PlainProgress(_LiveTable):
    """Without a terminal (`sqnxt-tune ... > tune.log`): a plain progress line on stdout every
    PLAIN_PROGRESS_PERIOD_S seconds or every tenth of the trials, whichever comes first; the summary there too."""

    def __init__(self, trials: int, log_dir: Path, period_s: float | None = None) -> None:
        from rich.console import Console

        self.console = Console(file=sys.stdout, width=160)
        self.trials, self.log_dir, self.latest = trials, log_dir, {}
        self.period_s = PLAIN_PROGRESS_PERIOD_S if period_s is None else period_s
        self.printed_at: float | None = None
        self.next_share = 0

    def __enter__(self) -> "_PlainProgress":
        print(f"sqnxt-tune: tuning until {self.log_dir} holds {self.trials} trials; progress every "
              f"{self.period_s:g} s or {max(1, self.trials // 10)} trials", flush=True)
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, event: dict) -> None:
        import time

        self.latest = event
        now = time.monotonic()
        share = event["trials_done"] * 10 // max(1, event["trials_budget"])
        if self.printed_at is None or now - self.printed_at >= self.period_s or share > self.next_share:
            print(f"{time.strftime('%H:%M:%S')} {_progress_text(event)}", flush=True)
            self.printed_at, self.next_share = now, share


def _progress_text(event: dict) -> str:
    """Trials, kernels timed, estimated latency, the last kernel's best, time left: one line."""
    estimate = event["estimated_latency_ms"]
    eta = event["eta_s"]
    return (f"trials {event['trials_done']}/{event['trials_budget']} ({event['failed']} failed)  "
            f"tasks timed {event['tasks_timed']}/{event['tasks_total']}  "
            f"est. latency {'-' if estimate is None else f'{estimate:.3f} ms'}  "
            f"last: {event['task']} best {_ms(event['task_best_ms'])}  "
            f"time left {'-' if eta is None else f'{eta / 60:.1f} min'}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f} ms"


if __name__ == "__main__":
    sys.exit(main())
