"""The accelerator itself: configuration and workload, ISA and per-layer compiler, the compute (dataflow)
and memory models, timing, functional execution, traffic/energy and the per-layer report.

It imports neither `int8` nor `study`; the public API is re-exported by `sqnxt_compiler.accel`.
"""
