"""A VTA-style int8 accelerator: configuration, ISA, per-layer compiler and cycle/energy simulator."""
