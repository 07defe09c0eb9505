"""Autotuning: tasks from our pipeline, our WS/OS design spaces, meta_schedule + XGBoost, TVM's JSON database;
for accelerator targets, per-layer dataflow and tiles in simulated cycles (accel_tuner.py)."""

from .accel_tuner import AccelTuneReport, tune_accel
from ..records.database import open_database
from .tasks import TuningTask, extract_tuning_tasks
from .tuner import TuneReport, tune

__all__ = ["AccelTuneReport", "TuneReport", "TuningTask", "extract_tuning_tasks", "open_database", "tune",
           "tune_accel"]
