"""Binarized MNIST: the shared copy, .amat parsing, the search path and its errors."""
from pathlib import Path

import numpy as np
import pytest

from dgmdsl.data import DataError, default_cache_dir, load_binarized_mnist, read_amat

SHARED_DIR = Path("/work/shared/data")
SHARED_NPZ = SHARED_DIR / "binarized_mnist_train_valid.npz"


@pytest.fixture(autouse=True)
def isolated_search_path(tmp_path, monkeypatch):
    """Keep the real cache directory and $DGM_DATA_DIR out of every test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("DGM_DATA_DIR", raising=False)


def random_images(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 784)) < 0.3).astype(np.uint8)


def write_amat(path: Path, images: np.ndarray) -> Path:
    path.write_text("".join(" ".join(map(str, row)) + "\n" for row in images))
    return path


@pytest.mark.skipif(not SHARED_NPZ.is_file(), reason="shared binarized MNIST copy not present")
def test_shared_copy_loads():
    train = load_binarized_mnist("train", SHARED_DIR)
    valid = load_binarized_mnist("valid", SHARED_DIR)
    assert train.shape == (50_000, 784) and valid.shape == (10_000, 784)
    assert train.dtype == np.uint8 and set(np.unique(train)) == {0, 1}
    assert 0.125 < train.mean() < 0.135 and 0.125 < valid.mean() < 0.135
    assert not np.array_equal(train[:10], valid[:10])


def test_amat_round_trip(tmp_path):
    images = random_images(6, 0)
    write_amat(tmp_path / "binarized_mnist_test.amat", images)
    assert np.array_equal(read_amat(tmp_path / "binarized_mnist_test.amat"), images)
    loaded = load_binarized_mnist("test", tmp_path)
    assert loaded.dtype == np.uint8 and np.array_equal(loaded, images)


def test_amat_with_decimal_values_and_blank_lines(tmp_path):
    images = random_images(3, 1)
    text = "\n".join(" ".join(f"{v}.0" for v in row) for row in images) + "\n\n"
    (tmp_path / "decimal.amat").write_text(text)
    assert np.array_equal(read_amat(tmp_path / "decimal.amat"), images)
    (tmp_path / "blank.amat").write_text("\n" + "\n\n".join(" ".join(map(str, r)) for r in images) + "\n")
    assert np.array_equal(read_amat(tmp_path / "blank.amat"), images)


def test_bad_amat_value_names_row_and_value(tmp_path):
    images = random_images(5, 2)
    images[3, 17] = 2
    path = write_amat(tmp_path / "binarized_mnist_train.amat", images)
    with pytest.raises(DataError) as err:
        load_binarized_mnist("train", tmp_path)
    assert (err.value.row, err.value.value, err.value.source) == (3, 2, str(path))
    assert str(err.value) == f"{path}: row 3: error: value 2 at pixel 17 is outside binary {{0, 1}}"


def test_short_amat_row_is_an_error(tmp_path):
    images = random_images(4, 3).astype(str).tolist()
    images[2] = images[2][:-1]
    (tmp_path / "short.amat").write_text("".join(" ".join(row) + "\n" for row in images))
    with pytest.raises(DataError, match="783 values; expected 784") as err:
        read_amat(tmp_path / "short.amat")
    assert err.value.row == 2


def test_missing_files_list_every_place_looked(tmp_path, monkeypatch):
    given, env = tmp_path / "given", tmp_path / "env"
    monkeypatch.setenv("DGM_DATA_DIR", str(env))
    with pytest.raises(DataError) as err:
        load_binarized_mnist("valid", given)
    text = str(err.value)
    for directory in (given, env, default_cache_dir()):
        assert str(directory / "binarized_mnist_valid.amat") in text
        assert str(directory / "binarized_mnist_train_valid.npz") in text
    assert err.value.hint == "run 'dgm data fetch binarized_mnist' or pass --data-dir"
    assert default_cache_dir() == tmp_path / "xdg" / "dgmdsl"


def test_env_dir_and_cache_dir_are_searched_in_order(tmp_path, monkeypatch):
    env_images, cache_images, given_images = random_images(4, 4), random_images(4, 5), random_images(4, 6)
    env = tmp_path / "env"
    env.mkdir()
    np.savez(env / "binarized_mnist.npz", test=np.packbits(env_images, axis=1))
    monkeypatch.setenv("DGM_DATA_DIR", str(env))
    cache = default_cache_dir()
    cache.mkdir(parents=True)
    np.savez(cache / "binarized_mnist_train_valid.npz", train=cache_images)  # unpacked also accepted
    assert np.array_equal(load_binarized_mnist("test"), env_images)
    assert np.array_equal(load_binarized_mnist("train"), cache_images)
    write_amat(env / "binarized_mnist_train.amat", given_images)
    assert np.array_equal(load_binarized_mnist("train"), given_images)  # env dir before cache


def test_bad_npz_arrays_are_errors(tmp_path):
    np.savez(tmp_path / "binarized_mnist.npz", train=np.full((2, 784), 3, np.uint8), valid=np.zeros((2, 100)))
    with pytest.raises(DataError, match="value 3 at pixel 0") as err:
        load_binarized_mnist("train", tmp_path)
    assert err.value.row == 0
    with pytest.raises(DataError, match=r"shape \(2, 100\)"):
        load_binarized_mnist("valid", tmp_path)


def test_unknown_split_suggests_a_name():
    with pytest.raises(DataError) as err:
        load_binarized_mnist("tset")
    assert err.value.hint == "did you mean 'test'?"
