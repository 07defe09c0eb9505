"""Tuning records as compile time reads them: the JSON database on disk, the records valid for a target, the
accelerator's tilings log. The search that writes them lives above the pipeline, in `sqnxt_compiler.tuning`."""
