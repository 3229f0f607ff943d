"""A user's own data files and the checks on declared variables."""
import numpy as np
import pytest

from dgmdsl.data import DataError, VarSpec, load_user_file, validate_arrays

X = VarSpec("x", "real", shape=(2,))
Y = VarSpec("y", "cat", K=3)
Z = VarSpec("z", "binary")


def example_arrays(n: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((n, 2)), "y": rng.integers(3, size=n), "z": rng.integers(2, size=n)}


def assert_matches(loaded, arrays):
    assert loaded["x"].dtype == np.float32 and np.allclose(loaded["x"], arrays["x"], atol=1e-6)
    for name in ("y", "z"):
        assert loaded[name].dtype == np.int64 and np.array_equal(loaded[name], arrays[name])


def write_csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
    return path


def test_npz_round_trip_ignores_extra_arrays_and_skips_absent_variables(tmp_path):
    arrays = example_arrays()
    np.savez(tmp_path / "d.npz", **arrays, unused=np.zeros(3))
    assert_matches(load_user_file(tmp_path / "d.npz", [X, Y, Z]), arrays)
    np.savez(tmp_path / "only_x.npz", x=arrays["x"])
    assert set(load_user_file(tmp_path / "only_x.npz", [X, Y])) == {"x"}


def test_npz_without_any_variable_suggests_a_name(tmp_path):
    np.savez(tmp_path / "d.npz", xs=np.zeros((3, 2)))
    with pytest.raises(DataError, match="none of the data variables") as err:
        load_user_file(tmp_path / "d.npz", [X])
    assert err.value.hint == "did you mean 'xs'?"


def test_npy_round_trip_and_needs_exactly_one_variable(tmp_path):
    arrays = example_arrays()
    np.save(tmp_path / "x.npy", arrays["x"])
    assert np.allclose(load_user_file(tmp_path / "x.npy", [X])["x"], arrays["x"])
    with pytest.raises(DataError, match="holds one array, but the model has 2 data variables"):
        load_user_file(tmp_path / "x.npy", [X, Y])


@pytest.mark.parametrize("style", ["x[{}]", "x_{}"])
def test_csv_round_trip(tmp_path, style):
    arrays = example_arrays()
    header = [style.format(0), style.format(1), "y", "z", "comment"]
    rows = [[*a, b, c, 7] for a, b, c in zip(arrays["x"].tolist(), arrays["y"], arrays["z"])]
    assert_matches(load_user_file(write_csv(tmp_path / "d.csv", header, rows), [X, Y, Z]), arrays)


def test_csv_problems_are_reported(tmp_path):
    with pytest.raises(DataError, match="column 'x\\[1\\]' is missing"):
        load_user_file(write_csv(tmp_path / "a.csv", ["x[0]", "y"], [[0.5, 1]]), [X, Y])
    with pytest.raises(DataError, match="first row must be a header"):
        load_user_file(write_csv(tmp_path / "b.csv", ["0.5", "1"], [[0.5, 1]]), [Y])
    with pytest.raises(DataError, match="cannot read 'abc' in column 'y'") as err:
        load_user_file(write_csv(tmp_path / "c.csv", ["y"], [[1], [2], ["abc"]]), [Y])
    assert err.value.row == 2
    with pytest.raises(DataError, match="2 cells but the header has 1"):
        load_user_file(write_csv(tmp_path / "d.csv", ["y"], [[1], [2, 3]]), [Y])


def test_csv_empty_cells_are_missing(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["y", "z"], [[0, 1], ["", 0], ["NA", 1], ["nan", 0]])
    loaded = load_user_file(path, [VarSpec("y", "cat", K=3, missing_ok=True), Z])
    assert loaded["y"].tolist() == [0, -1, -1, -1]
    with pytest.raises(DataError, match="cannot be summed out") as err:
        load_user_file(path, [Y])
    assert (err.value.variable, err.value.row) == ("y", 1)


def test_bad_binary_value_names_variable_row_and_value(tmp_path):
    path = write_csv(tmp_path / "data.csv", ["z"], [[0], [1], [2], [0]])
    with pytest.raises(DataError) as err:
        load_user_file(path, [Z])
    assert (err.value.variable, err.value.row, err.value.value) == ("z", 2, 2)
    assert str(err.value) == f"{path}: variable 'z', row 2: error: value 2 is outside binary {{0, 1}}"


def test_nan_without_missing_ok_is_an_error():
    x = np.zeros((4, 2))
    x[2, 1] = np.nan
    with pytest.raises(DataError, match=r"missing value NaN at element \[1\] cannot be summed out") as err:
        validate_arrays({"x": x}, [X])
    assert (err.value.variable, err.value.row) == ("x", 2)
    assert err.value.hint


def test_missing_values_encoded_when_allowed():
    checked = validate_arrays(
        {"y": np.array([2.0, np.nan, -1, 0]), "x": np.array([[0.0, np.nan]] * 4)},
        [VarSpec("y", "ordinal", K=3, missing_ok=True), VarSpec("x", "real", shape=(2,), missing_ok=True)],
    )
    assert checked["y"].dtype == np.int64 and checked["y"].tolist() == [2, -1, -1, 0]
    assert checked["x"].dtype == np.float32 and np.isnan(checked["x"][:, 1]).all()


def test_flat_rows_are_reshaped_in_c_order():
    images = np.random.default_rng(0).integers(2, size=(3, 784))
    checked = validate_arrays({"x": images}, [VarSpec("x", "binary", shape=(1, 28, 28))])["x"]
    assert checked.shape == (3, 1, 28, 28) and np.array_equal(checked[1, 0, 2, 5], images[1, 2 * 28 + 5])
    scalar = validate_arrays({"z": np.ones((4, 1))}, [Z])["z"]
    assert scalar.shape == (4,)


def test_wrong_shape_names_both_shapes():
    with pytest.raises(DataError) as err:
        validate_arrays({"x": np.zeros((3, 783))}, [VarSpec("x", "binary", shape=(1, 28, 28))], "d.npz")
    assert err.value.variable == "x" and "[1, 28, 28]" in err.value.message and "[783]" in err.value.message


def test_row_counts_must_agree():
    with pytest.raises(DataError, match="'y' has 4 rows but 'x' has 5"):
        validate_arrays({"x": np.zeros((5, 2)), "y": np.zeros(4)}, [X, Y])


@pytest.mark.parametrize(
    ("spec", "values", "row", "shown"),
    [
        (VarSpec("c", "cat", K=3), [0, 1.5, 2], 1, "value 1.5 is outside cat(3) {0, 1, 2}"),
        (VarSpec("c", "ordinal", K=256), [255, 256], 1, "value 256 is outside ordinal(256) {0, 1, ..., 255}"),
        (VarSpec("c", "positive"), [1.0, 0.0], 1, "value 0 is outside positive"),
        (VarSpec("c", "unit"), [0.5, 0.2, 1.0], 2, "value 1 is outside unit (0, 1)"),
        (VarSpec("c", "real"), [0.0, -np.inf], 1, "value -inf is outside real"),
        (VarSpec("c", "binary"), [0, -1], 1, "missing value -1 cannot be summed out"),
    ],
)
def test_support_checks(spec, values, row, shown):
    with pytest.raises(DataError) as err:
        validate_arrays({"c": np.array(values)}, [spec])
    assert err.value.row == row and shown in err.value.message


def test_valid_values_pass_unchanged():
    values = np.array([0.25, 0.5, 0.75])
    assert np.array_equal(validate_arrays({"u": values}, [VarSpec("u", "unit")])["u"], values.astype(np.float32))
    ordinal = np.array([0, 255, 17], dtype=np.uint8)
    assert validate_arrays({"o": ordinal}, [VarSpec("o", "ordinal", K=256)])["o"].tolist() == [0, 255, 17]


def test_file_type_and_existence_errors(tmp_path):
    with pytest.raises(DataError, match="cannot read data files of type '.txt'") as err:
        load_user_file(tmp_path / "d.txt", [X])
    assert ".npz" in err.value.hint
    with pytest.raises(DataError, match="not found"):
        load_user_file(tmp_path / "absent.npz", [X])


def test_error_rendering_leaves_out_absent_parts():
    assert str(DataError("boom")) == "error: boom"
    assert str(DataError("boom", variable="x", hint="try")) == "variable 'x': error: boom\n  hint: try"
    assert str(DataError("boom", row=0, source="f.csv")) == "f.csv: row 0: error: boom"


def test_varspec_rejects_inconsistent_declarations():
    with pytest.raises(ValueError):
        VarSpec("c", "cat")
    with pytest.raises(ValueError):
        VarSpec("x", "complex")
    assert VarSpec("x", "binary", shape=[1, 28, 28]).shape == (1, 28, 28)
