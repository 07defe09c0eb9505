"""Train an official SqueezeNext on scikit-learn's digits (PyTorch, CPU, one thread) and write its ONNX file.

The network trained is the zoo's own ONNX graph (`build_squeezenext` with 10 classes), executed node by node
with torch ops and its initializers as the parameters, so the architecture has one definition; the trained
values go back into that graph's initializers, which `digits.build_trained_squeezenext` reads by name.
Needs the optional extra: `pip install -e ".[train]"`. Run: `python -m sqnxt_compiler.models.train_digits`.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

try:
    import torch
    import torch.nn.functional as F
except ImportError:   # the optional extra: a one-line error when run as a script
    if __name__ == "__main__":
        print("error: training needs PyTorch: pip install -e \".[train]\" (torch==2.13.0, the CPU wheel)",
              file=sys.stderr)
        raise SystemExit(2) from None
    raise

from .digits import CLASSES, RESOLUTION, TRAINED, digits, label_trained, trained_file
from .squeezenext import SQUEEZENEXT_SPECS, build_squeezenext

# The recipe (docs/digits.md): SGD + Nesterov momentum, one-cycle learning rate, random shifts of the digits.
EPOCHS, BATCH, LEARNING_RATE, WEIGHT_DECAY, MAX_SHIFT = 20, 64, 0.1, 5e-4, 4
SEED = 0


def _attributes(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class OnnxGraphModule(torch.nn.Module):
    """A zoo ONNX graph run by torch ops: initializers are parameters, BatchNorm statistics are buffers."""

    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        self.nodes = [(n.op_type, list(n.input), n.output[0], _attributes(n)) for n in model.graph.node]
        self.input, self.output = model.graph.input[0].name, model.graph.output[0].name
        statistics = {n.input[i] for n in model.graph.node if n.op_type == "BatchNormalization" for i in (3, 4)}
        self.weights = torch.nn.ParameterDict()
        self.statistics: dict[str, str] = {}     # initializer name -> buffer name
        for tensor in model.graph.initializer:
            value = torch.from_numpy(numpy_helper.to_array(tensor).astype(np.float32).copy())
            if tensor.name in statistics:
                self.statistics[tensor.name] = f"stat_{len(self.statistics)}"
                self.register_buffer(self.statistics[tensor.name], value)
            else:
                self.weights[tensor.name] = torch.nn.Parameter(value)

    def _value(self, name: str, env: dict[str, torch.Tensor]) -> torch.Tensor:
        if name in env:
            return env[name]
        if name in self.statistics:
            return getattr(self, self.statistics[name])
        return self.weights[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {self.input: x}
        for op, inputs, output, a in self.nodes:
            args = [self._value(name, env) for name in inputs]
            env[output] = self._apply(op, args, a)
        return env[self.output]

    def _apply(self, op: str, args: list[torch.Tensor], a: dict) -> torch.Tensor:
        if op == "Conv":
            pads = a.get("pads", [0, 0, 0, 0])
            return F.conv2d(args[0], args[1], args[2] if len(args) > 2 else None, stride=a.get("strides", [1, 1]),
                            padding=(pads[0], pads[1]), groups=a.get("group", 1))
        if op == "BatchNormalization":
            x, scale, shift, mean, var = args
            return F.batch_norm(x, mean, var, scale, shift, training=self.training, momentum=0.1,
                                eps=a.get("epsilon", 1e-5))
        if op == "Relu":
            return F.relu(args[0])
        if op == "Add":
            return args[0] + args[1]
        if op == "MaxPool":
            return F.max_pool2d(args[0], a["kernel_shape"], a["strides"], a.get("pads", [0] * 4)[0],
                                ceil_mode=bool(a.get("ceil_mode", 0)))
        if op == "GlobalAveragePool":
            return args[0].mean(dim=(2, 3), keepdim=True)
        if op == "Flatten":
            return torch.flatten(args[0], 1)
        if op == "Gemm":
            weight = args[1].t() if a.get("transB", 0) else args[1]
            return args[0] @ weight + (args[2] if len(args) > 2 else 0)
        raise NotImplementedError(f"operator {op} (the zoo's SqueezeNext graphs use none)")

    def export(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """A copy of `model` (the graph this module was made from) with the current values as initializers."""
        out = onnx.ModelProto()
        out.CopyFrom(model)
        for tensor in out.graph.initializer:
            value = self._value(tensor.name, {}).detach().numpy()
            tensor.CopyFrom(numpy_helper.from_array(value.astype(np.float32), tensor.name))
        return out


def _reset_batchnorm(model: onnx.ModelProto) -> None:
    """Identity BatchNorms to start from (the zoo draws random ones to exercise BN folding), except a zero scale
    on the last BN of each residual branch (the one an Add reads): every block starts as its shortcut, which
    trains a deep residual network much faster (Goyal et al. 2017)."""
    values = {t.name: t for t in model.graph.initializer}
    merged = {name for node in model.graph.node if node.op_type == "Add" for name in node.input}
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            scale = 0.0 if node.output[0] in merged else 1.0
            for name, fill in zip(node.input[1:], (scale, 0.0, 0.0, 1.0)):
                array = np.full(numpy_helper.to_array(values[name]).shape, fill, np.float32)
                values[name].CopyFrom(numpy_helper.from_array(array, name))


def _shifted(images: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Each image moved by a random (dy, dx) in [-max_shift, max_shift] pixels, background filled in."""
    if max_shift == 0:
        return images
    background = images.amin()
    size = images.shape[-1]
    padded = F.pad(images, [max_shift] * 4, value=float(background))
    offsets = torch.randint(0, 2 * max_shift + 1, (len(images), 2), generator=generator)
    return torch.stack([p[:, dy:dy + size, dx:dx + size] for p, (dy, dx) in zip(padded, offsets.tolist())])


@dataclass
class TrainingResult:
    model: onnx.ModelProto
    test_top1: list[float] = field(default_factory=list)    # after each epoch
    seconds: float = 0.0

    def weights_sha256(self) -> str:
        digest = hashlib.sha256()
        for tensor in self.model.graph.initializer:
            digest.update(tensor.name.encode() + tensor.raw_data)
        return digest.hexdigest()


def train(variant: str = "1.0-SqNxt-23", epochs: int = EPOCHS, seed: int = SEED, resolution: int = RESOLUTION,
          train_images: int | None = None, log: Callable[[str], None] = print) -> TrainingResult:
    """Train `variant` on the digits' training split from seeded initial weights; deterministic on the CPU
    (one thread, deterministic algorithms, seeded shuffles and shifts). `train_images` caps the training
    set (quick checks)."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    base = build_squeezenext(variant, batch=1, resolution=resolution, seed=seed, classes=CLASSES)
    _reset_batchnorm(base)
    net = OnnxGraphModule(base)
    x_np, y_np = digits("train", resolution)
    x_train, y_train = torch.from_numpy(x_np[:train_images]), torch.from_numpy(y_np[:train_images])
    x_test, y_test = (torch.from_numpy(a) for a in digits("test", resolution))
    steps = epochs * -(-len(x_train) // BATCH)
    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, momentum=0.9, nesterov=True,
                                weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=steps)
    result, started = TrainingResult(base), time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(x_train), BATCH):
            index = order[start:start + BATCH]
            loss = F.cross_entropy(net(_shifted(x_train[index], generator, MAX_SHIFT)), y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        net.eval()
        with torch.no_grad():
            result.test_top1.append(float((net(x_test).argmax(1) == y_test).float().mean()))
        log(f"epoch {epoch + 1:3d}/{epochs}: loss {float(loss.detach()):.4f}, "
            f"held-out top-1 {result.test_top1[-1]:.2%} "
            f"({time.perf_counter() - started:.0f} s)")
    result.model, result.seconds = net.export(base), time.perf_counter() - started
    return result


class _Parser(argparse.ArgumentParser):
    """Bad flags are one `error:` line and exit status 2, as in the package's commands."""

    def error(self, message: str):
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m sqnxt_compiler.models.train_digits", description=__doc__)
    parser.add_argument("--variant", default="1.0-SqNxt-23", choices=sorted(SQUEEZENEXT_SPECS))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("-o", "--output", help="ONNX file to write (default: the shipped file of the zoo entry)")
    args = parser.parse_args(argv)
    name = f"{args.variant}-digits"
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, not {args.epochs}")
    if not args.output and name not in TRAINED:
        parser.error(f"'{name}' is no zoo entry; give --output")
    output = Path(args.output) if args.output else trained_file(name)
    result = train(args.variant, args.epochs, args.seed)
    model = label_trained(result.model, name, args.variant)
    onnx.save(model, str(output))
    print(f"wrote {output}: held-out top-1 {result.test_top1[-1]:.2%} after {args.epochs} epochs in "
          f"{result.seconds:.0f} s; weights sha256 {result.weights_sha256()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
