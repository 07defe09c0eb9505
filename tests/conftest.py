"""Fixtures shared by test modules: the emulated aarch64 environment."""

from __future__ import annotations

import pytest

from sqnxt_compiler import emulation


@pytest.fixture(scope="session")
def aarch64_env() -> emulation.Aarch64Environment:
    """The emulated aarch64 userland; locally a missing emulator skips with the fix, in CI it fails."""
    reason = emulation.unavailable_reason()
    if reason:
        if emulation.emulation_required():
            pytest.fail(f"CI requires ARM emulation: {reason}")
        pytest.skip(reason)
    return emulation.ensure_environment()
