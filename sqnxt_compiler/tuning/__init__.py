"""Autotuning: tasks from our pipeline, our WS/OS design spaces, meta_schedule + XGBoost, TVM's JSON database."""

from .database import open_database
from .tasks import TuningTask, extract_tuning_tasks
from .tuner import TuneReport, tune

__all__ = ["TuneReport", "TuningTask", "extract_tuning_tasks", "open_database", "tune"]
