"""Re-estimate a model's BatchNorm statistics on sample inputs, so a random-weight network behaves like a trained one.

The zoo's networks have random weights and random BatchNorm statistics: their activations drift layer by
layer until the logits hardly depend on the input (on 1.0-SqNxt-23 the input-dependent part is ~1.5% of the
logits' spread and every synthetic input gets the same top-1 class), which makes top-1 agreement of an int8
model meaningless. Setting each BatchNorm's mean and variance to what its input really has on the samples -
what training does - keeps activations normalized, so the logits depend on the input and int8-vs-float
comparisons measure something. Weights, BN scales and shifts stay as built.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def normalize_batchnorm(model: onnx.ModelProto, samples: list[np.ndarray]) -> onnx.ModelProto:
    """A copy of `model` whose BatchNormalization means/variances are the per-channel statistics of their
    inputs over `samples` (float32 inputs of the model's input shape), set in graph order."""
    import onnxruntime as ort

    bns = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    stats = [(n.input[3], n.input[4]) for n in bns]
    stat_names = {name for pair in stats for name in pair}
    # One session: statistics become graph inputs (fed each run), BN inputs become graph outputs; run i
    # asks only for BN i's input, which ORT computes from the already re-estimated BNs before it.
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    values = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in probe.graph.initializer
              if t.name in stat_names}
    kept = [t for t in probe.graph.initializer if t.name not in stat_names]
    del probe.graph.initializer[:]
    probe.graph.initializer.extend(kept)
    for name, value in values.items():
        probe.graph.input.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, value.shape))
    for node in bns:
        probe.graph.output.append(helper.make_empty_tensor_value_info(node.input[0]))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    input_name = model.graph.input[0].name
    for node, (mean_name, var_name) in zip(bns, stats):
        # one sample per run: the zoo's graphs have a fixed batch size
        x = np.concatenate([session.run([node.input[0]], {input_name: np.asarray(s, np.float32), **values})[0]
                            for s in samples]).astype(np.float64)
        axes = (0,) + tuple(range(2, x.ndim))
        values[mean_name] = x.mean(axis=axes).astype(np.float32)
        values[var_name] = np.maximum(x.var(axis=axes), 1e-6).astype(np.float32)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for tensor in out.graph.initializer:
        if tensor.name in values:
            tensor.CopyFrom(numpy_helper.from_array(values[tensor.name].astype(
                numpy_helper.to_array(tensor).dtype), tensor.name))
    return out
