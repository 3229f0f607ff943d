"""Resolving and loading a model's data (runtime/datasets.py)."""
import numpy as np
import pytest

from dgmdsl.data import VarSpec
from dgmdsl.runtime.datasets import DataSource, load_split
from tests.conftest import SHARED_DATA

MNIST = DataSource("binarized_mnist")
needs_mnist = pytest.mark.skipif(not (SHARED_DATA / "binarized_mnist_train_valid.npz").is_file(),
                                 reason="shared binarized MNIST copy not present")


@needs_mnist
def test_binarized_mnist_is_held_one_byte_a_pixel():
    x = load_split(MNIST, "train", [VarSpec("x", "binary", shape=(784,))], data_dir=SHARED_DATA)["x"]
    assert x.dtype == np.uint8 and x.shape == (50_000, 784)
    assert x.nbytes == 50_000 * 784  # not int64's 314 MB
    image = load_split(MNIST, "heldout", [VarSpec("x", "binary", shape=(1, 28, 28))], data_dir=SHARED_DATA)["x"]
    assert image.dtype == np.uint8 and image.shape == (10_000, 1, 28, 28)


@needs_mnist
def test_binarized_mnist_for_real_variables_is_float():
    source = DataSource("binarized_mnist", (("n", 10), ("scale", (-1, 1))))
    x = load_split(source, "train", [VarSpec("x", "real", shape=(784,))], data_dir=SHARED_DATA)["x"]
    assert x.dtype == np.float32 and x.shape == (10, 784) and set(np.unique(x)) == {-1.0, 1.0}
