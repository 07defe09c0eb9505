"""Target description files (TOML), one per board or accelerator. Loaded by `sqnxt_compiler.target`."""
