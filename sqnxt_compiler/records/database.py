"""The tuning log: TVM's own JSON database, checked and repaired on open so an interrupted run resumes.

meta_schedule appends one JSON line per workload and per measured record. A run killed mid-write can leave
a truncated last line, which JSONDatabase would refuse to load; we drop such lines (with a warning),
renumber the records of any workload dropped with them, and rewrite the files atomically."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from ..errors import SqnxtError

WORKLOADS = "database_workload.json"
RECORDS = "database_tuning_record.json"
FAILED_RECORD_S = 1e10  # what meta_schedule stores as the time of a failed build or run
FAILED_RUN_S = 1e9  # any time above this is such a failure


class TuningLogWarning(UserWarning):
    """Something in a tuning log was skipped (a corrupt line, a record for another target)."""


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return path.read_text(errors="replace").splitlines()


def _parse(line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _valid_workload(entry) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)


def _valid_record(entry) -> bool:
    return (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int)
            and isinstance(entry[1], list) and len(entry[1]) == 4)


def _atomic_write_lines(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in lines))
    os.replace(tmp, path)


def _scan(path: Path, valid) -> tuple[list[tuple[int, object, str]], list[str]]:
    """(line index, parsed entry, raw line) of the lines that parse and pass `valid`, and one message per other
    non-blank line (a truncated last line after a kill, or damage)."""
    kept, problems = [], []
    for index, line in enumerate(_read_lines(path)):
        if not line.strip():
            continue
        entry = _parse(line)
        if entry is not None and valid(entry):
            kept.append((index, entry, line))
        else:
            problems.append(f"{path.name} line {index + 1} is corrupt and was skipped")
    return kept, problems


def _ends_unterminated(path: Path) -> bool:
    """Whether a run killed between a line and its newline left the file's last line unterminated: the next
    append would glue its line onto it."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb") as log:
        log.seek(-1, os.SEEK_END)  # the last byte only: a log is read whole once, by the scan
        return log.read(1) != b"\n"


def read_json_lines(path: Path, valid) -> tuple[list, list[str]]:
    """The valid entries of a JSON-lines log and one message per dropped line. A damaged file is rewritten
    (atomically) without its bad lines, and a last line missing its newline gets one, so appending after
    an interrupted run never glues a new line onto a partial one."""
    kept, problems = _scan(path, valid)
    if problems or _ends_unterminated(path):
        _atomic_write_lines(path, [line for _, _, line in kept])
    return [entry for _, entry, _ in kept], problems


def repair_log(log_dir: Path) -> list[str]:
    """Drop unreadable lines and end every line with its newline; return one message per problem found (empty
    when the log was clean)."""
    workloads, problems = _scan(log_dir / WORKLOADS, _valid_workload)
    new_index = {old: new for new, (old, _, _) in enumerate(workloads)}
    records, record_problems = _scan(log_dir / RECORDS, _valid_record)
    problems += record_problems
    kept_records = []
    for index, entry, _ in records:
        if entry[0] not in new_index:
            problems.append(f"{RECORDS} line {index + 1} refers to a missing workload and was skipped")
        else:
            entry[0] = new_index[entry[0]]
            kept_records.append(json.dumps(entry))
    if problems or _ends_unterminated(log_dir / WORKLOADS) or _ends_unterminated(log_dir / RECORDS):
        _atomic_write_lines(log_dir / WORKLOADS, [line for _, _, line in workloads])
        _atomic_write_lines(log_dir / RECORDS, kept_records)
    return problems


def open_database(log_dir: str | os.PathLike, create: bool = True):
    """A JSONDatabase on `log_dir`, repaired first; a log that still cannot be read is a clear error."""
    from tvm.s_tir import meta_schedule as ms

    path = Path(log_dir)
    if not path.is_dir():
        if not create:
            raise SqnxtError(f"tuning log '{path}' does not exist (write one with sqnxt-tune)")
        path.mkdir(parents=True)
    for problem in repair_log(path):
        warnings.warn(f"tuning log {path}: {problem}", TuningLogWarning, stacklevel=2)
    try:
        return ms.database.JSONDatabase(work_dir=str(path))
    except Exception as err:  # TVM raises its own error types for semantically broken entries
        detail = (str(err).strip().splitlines() or [""])[-1]
        raise SqnxtError(f"tuning log '{path}' cannot be read ({detail}); delete the damaged folder "
                         "or restore it, then tune again") from None


def record_counts(database) -> dict[int, int]:
    """Measured records per workload (keyed by structural hash): what a resumed run has already done."""
    from tvm_ffi import structural_hash

    counts: dict[int, int] = {}
    for record in database.get_all_tuning_records():
        key = structural_hash(record.workload.mod)
        counts[key] = counts.get(key, 0) + 1
    return counts
