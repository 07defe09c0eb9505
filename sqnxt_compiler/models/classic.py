"""Ordinary CNNs for comparison and coverage: SqueezeNet 1.0 and 1.1 (Concat), AlexNet, ResNet-18 and
MobileNetV2 with torchvision's structure, a small ResNet."""

from __future__ import annotations

import onnx

from .graph_builder import GraphBuilder, Tensor


def _fire(g: GraphBuilder, x: Tensor, squeeze: int, expand: int, name: str) -> Tensor:
    s = g.relu(g.conv(x, squeeze, (1, 1), bias=True, name=f"{name}_squeeze"))
    e1 = g.relu(g.conv(s, expand, (1, 1), bias=True, name=f"{name}_expand1x1"))
    e3 = g.relu(g.conv(s, expand, (3, 3), pad=(1, 1), bias=True, name=f"{name}_expand3x3"))
    return g.concat([e1, e3])


def build_squeezenet10(batch: int = 1, resolution: int = 227, seed: int = 0) -> onnx.ModelProto:
    """SqueezeNet 1.0 (Iandola et al. 2016): 1,248,424 parameters, conv classifier, global average pool."""
    g = GraphBuilder(seed=seed)
    data = Tensor("data", (batch, 3, resolution, resolution))
    x = g.relu(g.conv(data, 96, (7, 7), stride=2, bias=True, name="conv1"))
    x = g.pool("MaxPool", x, 3, 2, ceil=True)
    for i, (squeeze, expand) in enumerate(((16, 64), (16, 64), (32, 128)), start=2):
        x = _fire(g, x, squeeze, expand, f"fire{i}")
    x = g.pool("MaxPool", x, 3, 2, ceil=True)
    for i, (squeeze, expand) in enumerate(((32, 128), (48, 192), (48, 192), (64, 256)), start=5):
        x = _fire(g, x, squeeze, expand, f"fire{i}")
    x = g.pool("MaxPool", x, 3, 2, ceil=True)
    x = _fire(g, x, 64, 256, "fire9")
    x = g.unary("Dropout", x)
    x = g.relu(g.conv(x, 1000, (1, 1), bias=True, name="conv10"))
    logits = g.flatten(g.global_avg_pool(x))
    return g.finish("squeezenet1.0", data, logits, doc="SqueezeNet 1.0, random weights")


def build_squeezenet11(batch: int = 1, resolution: int = 224, seed: int = 0) -> onnx.ModelProto:
    """SqueezeNet 1.1 as in torchvision: 1,235,496 parameters, 3x3/2 stem, pools after fire 3 and 5."""
    g = GraphBuilder(seed=seed)
    data = Tensor("data", (batch, 3, resolution, resolution))
    x = g.relu(g.conv(data, 64, (3, 3), stride=2, bias=True, name="conv1"))
    fires = ((16, 64), (16, 64), None, (32, 128), (32, 128), None, (48, 192), (48, 192), (64, 256), (64, 256))
    x = g.pool("MaxPool", x, 3, 2, ceil=True)
    for i, fire in enumerate(fires, start=2):
        x = g.pool("MaxPool", x, 3, 2, ceil=True) if fire is None else _fire(g, x, *fire, f"fire{i}")
    x = g.unary("Dropout", x)
    x = g.relu(g.conv(x, 1000, (1, 1), bias=True, name="conv10"))
    logits = g.flatten(g.global_avg_pool(x))
    return g.finish("squeezenet1.1", data, logits, doc="SqueezeNet 1.1, random weights")


def build_resnet18(batch: int = 1, resolution: int = 224, seed: int = 0) -> onnx.ModelProto:
    """ResNet-18 as in torchvision (basic blocks, 1x1/2 projection shortcuts): 11,679,912 conv and FC
    parameters (torchvision's 11,689,512 less its 9,600 BatchNorm scales and shifts)."""
    g = GraphBuilder(seed=seed)
    data = Tensor("data", (batch, 3, resolution, resolution))
    x = g.conv_bn_relu(data, 64, (7, 7), 2, pad=(3, 3), name="conv1")
    x = g.pool("MaxPool", x, 3, 2, pad=1)
    for stage, channels in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            name = f"layer{stage}.{block}"
            y = g.conv_bn_relu(x, channels, (3, 3), stride, pad=(1, 1), name=f"{name}.conv1")
            y = g.conv_bn_relu(y, channels, (3, 3), pad=(1, 1), relu=False, name=f"{name}.conv2")
            shortcut = x if stride == 1 and x.channels == channels else g.conv_bn_relu(
                x, channels, (1, 1), stride, relu=False, name=f"{name}.downsample")
            x = g.relu(g.add(y, shortcut))
    logits = g.gemm(g.flatten(g.global_avg_pool(x)), 1000, bias=True)
    return g.finish("resnet-18", data, logits, doc="ResNet-18, random weights")


# (expansion t, output channels c, blocks n, first stride s) of MobileNetV2 1.0 (Sandler et al. 2018, Table 2)
MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                         (6, 160, 3, 2), (6, 320, 1, 1))


def build_mobilenet_v2(batch: int = 1, resolution: int = 224, seed: int = 0) -> onnx.ModelProto:
    """MobileNetV2 1.0 as in torchvision (inverted residual blocks, ReLU6 as Clip): 3,470,760 conv and FC
    parameters (torchvision's 3,504,872 less its 34,112 BatchNorm scales and shifts)."""
    g = GraphBuilder(seed=seed)
    data = Tensor("data", (batch, 3, resolution, resolution))
    x = g.conv_bn_relu(data, 32, (3, 3), 2, pad=(1, 1), activation="relu6", name="features.0")
    index = 1
    for expansion, channels, blocks, first_stride in MOBILENET_V2_SETTINGS:
        for block in range(blocks):
            stride, name = first_stride if block == 0 else 1, f"features.{index}"
            hidden = x.channels * expansion
            y = x if expansion == 1 else g.conv_bn_relu(x, hidden, (1, 1), activation="relu6", name=f"{name}.expand")
            y = g.conv_bn_relu(y, hidden, (3, 3), stride, pad=(1, 1), groups=hidden, activation="relu6",
                               name=f"{name}.depthwise")
            y = g.conv_bn_relu(y, channels, (1, 1), relu=False, name=f"{name}.project")
            x = g.add(y, x) if stride == 1 and x.channels == channels else y
            index += 1
    x = g.conv_bn_relu(x, 1280, (1, 1), activation="relu6", name=f"features.{index}")
    x = g.unary("Dropout", g.flatten(g.global_avg_pool(x)))
    logits = g.gemm(x, 1000, bias=True, name="classifier")
    return g.finish("mobilenet-v2", data, logits, doc="MobileNetV2 1.0, random weights")


def build_alexnet(batch: int = 1, resolution: int = 227, seed: int = 0) -> onnx.ModelProto:
    """AlexNet as in torchvision (single tower, 61.1M parameters)."""
    g = GraphBuilder(seed=seed)
    data = Tensor("data", (batch, 3, resolution, resolution))
    x = g.relu(g.conv(data, 64, (11, 11), stride=4, pad=(2, 2), bias=True, name="conv1"))
    x = g.pool("MaxPool", x, 3, 2)
    x = g.relu(g.conv(x, 192, (5, 5), pad=(2, 2), bias=True, name="conv2"))
    x = g.pool("MaxPool", x, 3, 2)
    x = g.relu(g.conv(x, 384, (3, 3), pad=(1, 1), bias=True, name="conv3"))
    x = g.relu(g.conv(x, 256, (3, 3), pad=(1, 1), bias=True, name="conv4"))
    x = g.relu(g.conv(x, 256, (3, 3), pad=(1, 1), bias=True, name="conv5"))
    x = g.pool("MaxPool", x, 3, 2)
    x = g.flatten(x)
    x = g.relu(g.gemm(x, 4096, bias=True, name="fc6"))
    x = g.relu(g.gemm(x, 4096, bias=True, name="fc7"))
    logits = g.gemm(x, 1000, bias=True, name="fc8")
    return g.finish("alexnet", data, logits, doc="AlexNet, random weights")


def build_resnet_tiny(batch: int = 1, resolution: int = 64, seed: int = 0) -> onnx.ModelProto:
    """A small ResNet-style graph (3x3 basic blocks, BN, projection shortcuts, softmax head)."""
    g = GraphBuilder(seed=seed)
    data = Tensor("data", (batch, 3, resolution, resolution))
    x = g.conv_bn_relu(data, 16, (3, 3), pad=(1, 1), name="stem")
    for stage, channels in enumerate((16, 32, 64)):
        stride = 1 if stage == 0 else 2
        y = g.conv_bn_relu(x, channels, (3, 3), stride, pad=(1, 1), name=f"s{stage}_a")
        y = g.conv_bn_relu(y, channels, (3, 3), pad=(1, 1), relu=False, name=f"s{stage}_b")
        shortcut = x if stride == 1 and x.channels == channels else g.conv_bn_relu(
            x, channels, (1, 1), stride, relu=False, name=f"s{stage}_proj")
        x = g.relu(g.add(y, shortcut))
    x = g.flatten(g.global_avg_pool(x))
    logits = g.unary("Softmax", g.gemm(x, 10, bias=True), axis=1)
    return g.finish("resnet-tiny", data, logits, doc="small ResNet-style CNN, random weights")
