"""The accelerator's runtime functions: the program stream a compiled library embeds."""

from __future__ import annotations

import pickle

from sqnxt_compiler.accel import AccelConfig, LayerSpec, Requant, compile_layer
from sqnxt_compiler.accel.runtime_functions import _FORMAT, decode_program, encode_program


def _program():
    layer = LayerSpec.conv2d(cin=16, cout=32, hw=8, kernel=3, residual=True)
    return compile_layer(layer, AccelConfig.load("accel-16x16"), requant=Requant.from_scale(0.01, relu=True))


def test_program_stream_round_trips():
    program = _program()
    decoded = decode_program(encode_program(program).tobytes())
    assert decoded.listing() == program.listing() and decoded.requant == program.requant


def test_libraries_from_before_the_machine_subpackage_still_decode():
    program = _program()
    # protocol 2 writes module names as plain text, so the old layout's names can be put back in place
    old = pickle.dumps(program, protocol=2).replace(b"sqnxt_compiler.accel.machine.", b"sqnxt_compiler.accel.")
    assert b"accel.machine" not in old and b"sqnxt_compiler.accel.isa" in old
    assert decode_program(_FORMAT + old).listing() == program.listing()
