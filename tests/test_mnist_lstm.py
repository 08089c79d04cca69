"""Tests for mnist_lstm: parsing, bad input, the model, training, saving, resuming.

Synthetic tests write tiny IDX / npz files into tmp_path. Real-data tests take
the `data_dir` fixture ($RNN_TUTORIALS_DATA).
"""

import dataclasses
import gzip
import json

import keras
import numpy as np
import pytest

from common.cli import UserInputError
from common.strategy import get_strategy
from mnist_lstm import data
from mnist_lstm import train
from tests.conftest import (killed_and_rerun_like_uninterrupted, module_command, read_metrics,
                            run_module, tensorboard_summaries, timing_free)

TINY = train.Config(units=8, batch_size=16, epochs=1)


def write_idx(path, array, type_code=0x08):
    """Writes an IDX file: magic (0, 0, type, ndim), big-endian dims, raw bytes."""
    array = np.asarray(array, dtype=np.uint8)
    raw = bytes([0, 0, type_code, array.ndim])
    raw += np.asarray(array.shape, dtype=">i4").tobytes() + array.tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as file:
        file.write(raw)


def random_split(count, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), rng.integers(0, 10, count)


def write_mnist_folder(folder, num_train=64, num_test=32, suffix=".gz"):
    """A folder laid out like the canonical download, with random images."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", num_train), ("test", num_test)):
        images, labels = random_split(count, seed=count)
        images_name, labels_name = data.IDX_FILES[split]
        write_idx(folder / (images_name + suffix), images)
        write_idx(folder / (labels_name + suffix), labels)
    return folder


def run_cli(*args):
    return run_module("mnist_lstm.train", *args)


# --- parsing ---------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_folder_gives_scaled_float_images_and_int_labels(tmp_path, suffix):
    folder = write_mnist_folder(tmp_path, num_train=5, num_test=3, suffix=suffix)
    images, labels = data.load_split("mnist", "train", folder)
    raw_images, raw_labels = random_split(5, seed=5)
    assert images.shape == (5, 28, 28) and images.dtype == np.float32
    assert labels.shape == (5,) and labels.dtype == np.int32
    np.testing.assert_allclose(images, raw_images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(labels, raw_labels)
    assert data.load_split("mnist", "test", folder)[0].shape == (3, 28, 28)


def test_idx_header_is_read_big_endian(tmp_path):
    path = tmp_path / "t.idx"
    path.write_bytes(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6)))
    np.testing.assert_array_equal(data.read_idx(path), [[0, 1, 2], [3, 4, 5]])


def test_pixel_extremes_scale_to_zero_and_one(tmp_path):
    images = np.zeros((2, 28, 28), np.uint8)
    images[1] = 255
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", [0, 9])
    scaled, _ = data.load_split("fashion_mnist", "test", tmp_path)
    assert scaled.min() == 0.0 and scaled[1].min() == 1.0


def test_keras_npz_is_read(tmp_path):
    train_images, train_labels = random_split(6, seed=1)
    test_images, test_labels = random_split(4, seed=2)
    np.savez(tmp_path / "mnist.npz", x_train=train_images, y_train=train_labels,
             x_test=test_images, y_test=test_labels)
    images, labels = data.load_split("mnist", "test", tmp_path)
    assert images.shape == (4, 28, 28) and images.dtype == np.float32
    np.testing.assert_allclose(images, test_images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(labels, test_labels)


def test_validation_split_is_the_tail_of_training_data(tmp_path):
    folder = write_mnist_folder(tmp_path, num_train=50, num_test=20)
    splits = data.load_data(dataclasses.replace(TINY, max_examples=40), folder)
    assert len(splits["train"][0]) == 36 and len(splits["validation"][0]) == 4
    assert len(splits["test"][0]) == 20
    all_train, _ = data.load_split("mnist", "train", folder)
    np.testing.assert_array_equal(splits["validation"][0], all_train[36:40])


def test_split_test_file_trains_on_head_and_tests_on_tail(tmp_path):
    folder = tmp_path / "only-test"
    folder.mkdir()
    images, labels = random_split(30, seed=3)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    splits = data.load_data(dataclasses.replace(TINY, split_test_file=20), folder)
    assert [len(splits[name][1]) for name in ("train", "validation", "test")] == [18, 2, 10]
    np.testing.assert_array_equal(splits["test"][1], labels[20:])


# --- bad input -------------------------------------------------------------------

def _truncate(path):
    path.write_bytes(path.read_bytes()[:-100])


def _truncate_payload(path):  # a valid gzip stream whose IDX data is short
    with gzip.open(path) as file:
        raw = file.read()
    with gzip.open(path, "wb") as file:
        file.write(raw[:-28])


BAD_FILES = {
    "missing file": ("train-labels-idx1-ubyte.gz", lambda p: p.unlink(), "file not found"),
    "truncated gzip": ("train-images-idx3-ubyte.gz", _truncate, "truncated"),
    "truncated data": ("train-images-idx3-ubyte.gz", _truncate_payload, "truncated"),
    "not idx": ("train-images-idx3-ubyte.gz",
                lambda p: p.write_bytes(gzip.compress(b"<html>")), "not an IDX file"),
    "wrong image shape": ("train-images-idx3-ubyte.gz",
                          lambda p: write_idx(p, np.zeros((64, 27, 28))), "expected [N, 28, 28]"),
    "label out of range": ("train-labels-idx1-ubyte.gz",
                           lambda p: write_idx(p, np.full(64, 10)), "expected 0..9"),
    "label count": ("train-labels-idx1-ubyte.gz",
                    lambda p: write_idx(p, np.zeros(63)), "do not belong together"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_raise_one_clear_error_naming_the_file(tmp_path, case):
    name, damage, expected = BAD_FILES[case]
    folder = write_mnist_folder(tmp_path)
    damage(folder / name)
    with pytest.raises(UserInputError) as error:
        data.load_split("mnist", "train", folder)
    message = str(error.value)
    assert name in message and expected in message and "\n" not in message


@pytest.mark.parametrize("args, expected", [
    (["--dataset=digits"], "--dataset=digits: unknown dataset; use one of mnist, fashion_mnist"),
    (["--data_path={bad}"], "train-images-idx3-ubyte.gz: cannot read"),
    (["--data_path={bad}", "--split_test_file=40"], "--split_test_file=40: must be between 1 and 31"),
    (["--evaluate", "--data_path={bad}", "--save_path={tmp}/none"],
     "none: no model.keras there"),
    (["--evaluate", "--units=8", "--save_path={tmp}/none"],
     "--units: --evaluate uses the settings of the run in --save_path"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, expected, forked):
    folder = write_mnist_folder(tmp_path / "bad")
    _truncate(folder / "train-images-idx3-ubyte.gz")
    args = [arg.format(bad=folder, tmp=tmp_path) for arg in args]
    # A process of its own (conftest.ForkedRuns); a later flag wins.
    result = forked.run("mnist_lstm.train", f"--save_path={tmp_path}/run", *args)
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert len(error_lines) == 1 and expected in error_lines[0], result.stderr[-2000:]


# --- model -----------------------------------------------------------------------

@pytest.mark.parametrize("units", [64, 16])
def test_model_shape_and_parameter_count(units):
    model = train.build_model(dataclasses.replace(train.Config(), units=units, dropout=0.1))
    assert model.input_shape == (None, 28, 28)
    assert model.output_shape == (None, 10)
    # LSTM: 4 gates, each with input (28) and recurrent (units) weights and a bias.
    lstm = 4 * (units * (28 + units) + units)
    dense = units * 10 + 10
    assert model.count_params() == lstm + dense  # 24,458 for 64 units
    outputs = model(np.zeros((3, 28, 28), np.float32))
    np.testing.assert_allclose(np.sum(outputs, axis=1), 1.0, rtol=1e-5)


def test_lstm_stays_cudnn_eligible():
    lstm = train.build_model(dataclasses.replace(train.Config(), dropout=0.2)).get_layer("lstm")
    assert lstm.cell.activation is keras.activations.tanh
    assert lstm.cell.recurrent_activation is keras.activations.sigmoid
    assert lstm.cell.recurrent_dropout == 0 and lstm.cell.use_bias
    assert not lstm.unroll and not lstm.return_sequences


# --- training, saving, resuming ----------------------------------------------------

def test_saved_model_round_trip_gives_the_same_report(tmp_path):
    folder = write_mnist_folder(tmp_path / "data", num_train=80, num_test=40)
    save_path = tmp_path / "run"
    strategy = get_strategy()
    metrics = train.train_and_evaluate(TINY, strategy, folder, save_path, verbose=0)
    assert metrics["test_examples"] == 40 and metrics["epochs_run"] == 1
    assert sorted(path.name for path in save_path.iterdir()) == [
        ".lock", "checkpoint", "curves.png", "history.csv", "metrics.json", "model.keras",
        "predictions.png", "settings.json", "tensorboard"]
    summaries = tensorboard_summaries(save_path / "tensorboard")
    for tag in ("train/epoch_loss", "train/epoch_accuracy", "train/epoch_learning_rate",
                "train/epoch_examples_per_second", "validation/epoch_accuracy"):
        assert [step for step, _ in summaries[tag]] == [0], tag
    assert summaries["train/epoch_accuracy"][0][1] == pytest.approx(
        metrics["history"][0]["accuracy"])
    assert summaries["test/test_accuracy"] == [(0, pytest.approx(metrics["test_accuracy"]))]
    assert '| units | 8 |' in summaries["train/settings"][0][1]
    saved = read_metrics(save_path)
    assert saved["test_accuracy"] == metrics["test_accuracy"]
    assert saved["tutorial"] == "mnist_lstm" and saved["settings"]["units"] == 8

    reloaded = train.evaluate_run(save_path, strategy, data_path=folder)
    assert reloaded["test_accuracy"] == metrics["test_accuracy"]
    assert reloaded["test_loss"] == pytest.approx(metrics["test_loss"], rel=1e-6)
    assert reloaded["confusion_matrix"] == metrics["confusion_matrix"]
    assert (save_path / "evaluation.json").is_file() and (save_path / "evaluation.png").is_file()


class CrashAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated crash")


def test_crashed_run_resumes_to_the_numbers_of_an_uninterrupted_one(tmp_path):
    """Dropout and shifts on: the random streams must continue, not restart."""
    folder = write_mnist_folder(tmp_path / "data", num_train=120, num_test=16)
    config = dataclasses.replace(TINY, epochs=4, dropout=0.3, max_shift=1)
    uninterrupted = train.train_and_evaluate(config, get_strategy(), folder, verbose=0)

    save_path = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.train_and_evaluate(config, get_strategy(), folder, save_path,
                                 extra_callbacks=[CrashAfterEpoch(epoch=1)], verbose=0)
    # Other settings must not silently resume this run.
    with pytest.raises(UserInputError, match="units 8 -> 9"):
        train.train_and_evaluate(dataclasses.replace(config, units=9), get_strategy(),
                                 folder, save_path, verbose=0)

    resumed = train.train_and_evaluate(config, get_strategy(), folder, save_path, verbose=0)
    assert [epoch["epoch"] for epoch in resumed["history"]] == [1, 2, 3, 4]
    assert timing_free(resumed["history"]) == timing_free(uninterrupted["history"])
    assert resumed["test_loss"] == uninterrupted["test_loss"]


def test_killed_and_rerun_cli_ends_like_an_uninterrupted_run(tmp_path):
    folder = write_mnist_folder(tmp_path / "data", num_train=400, num_test=40)

    def command(save_path):
        return module_command("mnist_lstm.train", f"--data_path={folder}", "--units=8",
                              "--batch_size=16", "--epochs=25", f"--save_path={save_path}")
    whole, killed = killed_and_rerun_like_uninterrupted(command, tmp_path, epochs=25)
    assert (killed["test_loss"], killed["confusion_matrix"]) == (
        whole["test_loss"], whole["confusion_matrix"])


# --- real data -----------------------------------------------------------------------

def test_cli_short_real_training_beats_chance_and_evaluate_agrees(data_dir, tmp_path):
    save_path = tmp_path / "run"
    result = run_cli("--dataset=fashion_mnist", f"--data_path={data_dir / 'fashion-mnist'}",
                     "--max_examples=5000", f"--save_path={save_path}", "--epochs=3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test accuracy" in result.stdout and "confusion matrix" in result.stdout
    assert "\r" not in result.stdout  # no progress bar when the output is not a terminal
    assert result.stdout.count("Epoch ") == 3  # one line per epoch instead
    metrics = read_metrics(save_path)
    assert metrics["test_examples"] == 5000
    assert metrics["test_accuracy"] > 0.6, metrics["test_accuracy"]  # chance is 0.10

    result = run_cli("--evaluate", f"--data_path={data_dir / 'fashion-mnist'}",
                     f"--save_path={save_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads((save_path / "evaluation.json").read_text())
    assert evaluated["test_accuracy"] == metrics["test_accuracy"]
    assert (save_path / "evaluation.png").stat().st_size > 10_000


def test_real_digit_file_splits_8000_2000(data_dir):
    config = dataclasses.replace(train.Config(), split_test_file=8000)
    splits = data.load_data(config, data_dir / "mnist-test")
    assert [len(splits[name][1]) for name in ("train", "validation", "test")] == [
        7200, 800, 2000]
    _, all_labels = data.load_split("mnist", "test", data_dir / "mnist-test")
    np.testing.assert_array_equal(splits["test"][1], all_labels[8000:])
    assert splits["train"][0].dtype == np.float32 and splits["train"][0].max() == 1.0


def test_random_shift_moves_each_image_within_bounds():
    images = np.zeros((64, 28, 28), np.float32)
    images[:, 10:18, 10:18] = 1.0  # an 8x8 square at (10, 10)
    shifted = data.random_shift(images, max_shift=2, seed=[0, 1]).numpy()
    assert shifted.shape == images.shape
    corners = np.array([np.argwhere(image == 1.0).min(axis=0) for image in shifted]) - 10
    assert corners.min() == -2 and corners.max() == 2  # 64 draws cover both ends
    assert (shifted.sum(axis=(1, 2)) == 64).all()  # the square is never cut off


def test_report_metrics_by_hand():
    from mnist_lstm import report

    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    labels = np.array([0, 1, 1, 2])  # the third one is predicted 0: one mistake
    metrics = report.metrics_from_predictions(probabilities, labels, ["a", "b", "c"])
    assert metrics["test_accuracy"] == 0.75
    assert metrics["test_loss"] == pytest.approx(-np.log([0.7, 0.8, 0.3, 0.6]).mean())
    assert metrics["per_class_accuracy"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert metrics["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert "75.00%" in report.format_report(metrics, ["a", "b", "c"])
