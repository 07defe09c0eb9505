"""scikit-learn's handwritten digits, the zoo's real data set: fixed split, preprocessing, trained models."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import SqnxtError
from .squeezenext import build_squeezenext

DATA_DIR = Path(__file__).resolve().parent / "data"
SPLIT_FILE = DATA_DIR / "digits_split.json"
DATASET = "sklearn-digits"        # the value of a model's "dataset" metadata entry
CLASSES = 10
RESOLUTION = 32                   # the 8x8 digits upsampled 4x (nearest): big enough for the stem and 3 strides
SPLIT_SEED = 0
TEST_SIZE = 360                   # ~20% of the 1,797 images
CALIBRATION_IMAGES = 240          # training images that calibrate int8 (divisible by most batch sizes)
# load_digits' pixels are 0..16; standardized with the training images' mean and spread (rounded)
PIXEL_MEAN, PIXEL_STD = 0.3, 0.4
# zoo name -> the official variant it is trained from (one architecture definition: squeezenext.py)
TRAINED = {"1.0-SqNxt-23-digits": "1.0-SqNxt-23", "1.0-SqNxt-23v5-digits": "1.0-SqNxt-23v5"}


def make_split(seed: int = SPLIT_SEED, test_size: int = TEST_SIZE, total: int = 1797) -> dict:
    """A seeded random split of load_digits' order into sorted train and test indices."""
    order = np.random.default_rng(seed).permutation(total)
    return {"seed": seed, "total": total, "test": sorted(order[:test_size].tolist()),
            "train": sorted(order[test_size:].tolist())}


@functools.lru_cache(maxsize=1)
def load_split() -> dict:
    """The shipped split (indices into load_digits' order; shipped, so no numpy version can change it)."""
    return json.loads(SPLIT_FILE.read_text())


@functools.lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits   # ships the 1,797 images in the wheel: nothing is downloaded

    data = load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)


def preprocess(images: np.ndarray, resolution: int = RESOLUTION) -> np.ndarray:
    """(N, 8, 8) pixels 0..16 -> (N, 3, resolution, resolution) float32: nearest upsampling, standardized, grey
    replicated into the three input channels the official stem takes."""
    rows = np.arange(resolution) * images.shape[1] // resolution
    cols = np.arange(resolution) * images.shape[2] // resolution
    big = images[:, rows][:, :, cols] / 16.0
    big = (big - PIXEL_MEAN) / PIXEL_STD
    return np.ascontiguousarray(np.repeat(big[:, None], 3, axis=1), dtype=np.float32)


def digits(part: str, resolution: int = RESOLUTION) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, R, R) float32, labels (N,) int64) of the "train" or "test" part of the shipped split."""
    if part not in ("train", "test"):
        raise SqnxtError(f"the digits split has parts 'train' and 'test', not '{part}'")
    images, labels = _raw_digits()
    index = np.asarray(load_split()[part])
    return preprocess(images[index], resolution), labels[index]


def calibration_images(count: int = CALIBRATION_IMAGES, resolution: int = RESOLUTION, batch: int = 1) -> np.ndarray:
    """The first `count` training images, rounded down to a multiple of `batch` (at least one batch): int8
    calibration never sees the held-out split."""
    return digits("train", resolution)[0][:max(batch, count // batch * batch)]


def model_dataset(model: onnx.ModelProto) -> str | None:
    """The data set a model was trained on, from its metadata (None: random weights)."""
    return next((p.value for p in model.metadata_props if p.key == "dataset"), None)


def predict(run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch: int = 1) -> np.ndarray:
    """Logits (N, classes) of `run` (a fixed-batch model: one (batch, ...) input -> logits) over all `images`;
    the last batch is padded with copies of its first image and the padding's outputs dropped."""
    outputs = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        padded = np.concatenate([chunk, np.repeat(chunk[:1], batch - len(chunk), axis=0)])
        outputs.append(np.asarray(run(padded)).reshape(batch, -1)[:len(chunk)])
    return np.concatenate(outputs)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(1) == labels).mean())


def trained_file(name: str) -> Path:
    return DATA_DIR / f"{name}.onnx"


@functools.lru_cache(maxsize=None)
def trained_weights(name: str) -> dict[str, np.ndarray]:
    """The initializers of the shipped trained ONNX file of zoo model `name`."""
    path = trained_file(name)
    if not path.is_file():
        raise SqnxtError(f"the trained weights of '{name}' ({path}) are missing; retrain them with "
                         f"`python -m sqnxt_compiler.models.train_digits --variant {TRAINED[name]}`")
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def build_trained_squeezenext(name: str, batch: int = 1, resolution: int = RESOLUTION,
                              seed: int = 0) -> onnx.ModelProto:
    """Zoo model `name` (a key of TRAINED): its official variant with 10 classes and the shipped trained
    weights, at any batch and resolution (`seed` is unused: the weights are trained)."""
    variant = TRAINED[name]
    model = build_squeezenext(variant, batch, resolution, classes=CLASSES, weights=trained_weights(name))
    return label_trained(model, name, variant)


def label_trained(model: onnx.ModelProto, name: str, variant: str) -> onnx.ModelProto:
    """Name the graph and record the data set in the metadata (what `--run` and `sqnxt-sim` look for)."""
    model.graph.name = name
    model.doc_string = (f"{variant} (official SqueezeNext definition) trained on scikit-learn's digits, "
                        f"{RESOLUTION}x{RESOLUTION} inputs (see docs/digits.md)")
    entry = model.metadata_props.add()
    entry.key, entry.value = "dataset", DATASET
    return model
