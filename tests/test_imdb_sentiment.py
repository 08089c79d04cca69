"""Tests for imdb_sentiment: text to ids, inputs, padding, models, errors, real runs.

Synthetic tests build a tiny aclImdb folder (and tarball) in tmp_path. Real-data
tests take `data_dir` (set $RNN_TUTORIALS_DATA) and train briefly through the CLI.
"""

import dataclasses
import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import keras

from common import training
from common.cli import UserInputError
from imdb_sentiment import data
from imdb_sentiment import model as model_lib
from imdb_sentiment import predict
from imdb_sentiment import train
from tests.conftest import (ROOT, assert_one_line_error, killed_and_rerun_like_uninterrupted,
                            module_command, read_metrics, run_module, tensorboard_summaries,
                            timing_free)


# Three reviews per class and split; "zebra" only in test, "mango" only in train.
TINY = {
    "train/pos": ["Great film<br /><br />Great acting!", "A great, great story.", "great mango"],
    "train/neg": ["Awful. Just awful.", "Boring film, awful plot", "awful mango mango"],
    "test/pos": ["Great zebra", "great", "GREAT!!!"],
    "test/neg": ["awful zebra", "Awful...", "boring"],
}


@pytest.fixture
def tiny_acl_imdb(tmp_path):
    """tmp_path/aclImdb with TINY as <number>_<rating>.txt files."""
    root = tmp_path / "aclImdb"
    for folder, reviews in TINY.items():
        (root / folder).mkdir(parents=True)
        for number, text in enumerate(reviews):
            (root / folder / f"{number}_{9 if 'pos' in folder else 2}.txt").write_text(text)
    return root


def settings(**changes):
    """The default Config with some fields changed."""
    return dataclasses.replace(train.DEFAULTS, **changes)


# --- text to ids -------------------------------------------------------------


def test_standardize_lowercases_and_strips_markup_and_punctuation():
    text = tf.constant(['Great<br /><br />Movie!! It\'s "FINE"...<br/>10/10'])
    assert data.standardize(text).numpy()[0].decode() == "great  movie its fine 1010"


def test_vocabulary_comes_from_training_reviews_only(tiny_acl_imdb):
    reviews = data.load_data(settings(vocab_size=20, sequence_length=4, validation_fraction=0.34),
                             tiny_acl_imdb)
    assert reviews.vocabulary[:2] == ["", "[UNK]"]
    assert "zebra" not in reviews.vocabulary  # test-only word
    # 6 training reviews, 2 held out for validation: words seen only there are unknown too.
    assert "great" in reviews.vocabulary and "awful" in reviews.vocabulary
    ids = {word: i for i, word in enumerate(reviews.vocabulary)}
    # Test review "Great zebra" -> [pad, pad, great, UNK]; "GREAT!!!" -> [..., great].
    test_rows = {tuple(row) for row in reviews.x_test.tolist()}
    assert (0, 0, ids["great"], 1) in test_rows
    assert (0, 0, 0, ids["great"]) in test_rows


def test_tarball_and_folder_give_the_same_data(tiny_acl_imdb, tmp_path):
    tarball = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tiny_acl_imdb, arcname="aclImdb")
    config = settings(vocab_size=20, sequence_length=6, validation_fraction=0.34, seed=3)
    from_folder = data.load_data(config, tiny_acl_imdb)
    for source in (tarball, tmp_path):  # the tarball, and a folder holding aclImdb
        other = data.load_data(config, source)
        assert other.vocabulary == from_folder.vocabulary
        for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
            np.testing.assert_array_equal(getattr(other, field), getattr(from_folder, field))
    assert from_folder.x_train.shape == (4, 6) and from_folder.x_test.shape == (6, 6)
    assert sorted(from_folder.y_test.tolist()) == [0, 0, 0, 1, 1, 1]


def test_max_examples_takes_the_first_reviews_of_each_class(tiny_acl_imdb):
    raw = data.read_raw_reviews(tiny_acl_imdb)
    assert raw["test"][0][0] == "awful zebra"  # neg first, in numeric file order
    reviews = data.load_data(settings(vocab_size=20, sequence_length=4, max_examples=4,
                                      validation_fraction=0.25), tiny_acl_imdb)
    assert sorted(reviews.y_test.tolist()) == [0, 0, 1, 1]
    assert len(reviews.y_train) + len(reviews.y_val) == 4
    assert sorted(reviews.y_train.tolist() + reviews.y_val.tolist()) == [0, 0, 1, 1]


def _fake_keras_imdb(num_words, start_char, oov_char, index_from):
    """Like keras.datasets.imdb.load_data for the words below (no download)."""
    assert start_char is None and oov_char == 2 and index_from == 3
    ranks = {"the": 1, "movie": 2, "great": 3}  # get_word_index() below

    def ids(text):  # rank + index_from, or oov_char once outside num_words
        return [r + index_from if r + index_from < num_words else oov_char
                for r in (ranks[w] for w in text.split())]

    reviews = ["the great movie", "the movie", "great", "movie the the"]
    x = np.empty(4, dtype=object)
    x[:] = [ids(text) for text in reviews]
    y = np.array([1, 0, 1, 0])
    return (x, y), (x.copy(), y.copy())


def test_keras_source_is_renumbered_to_the_text_vectorization_layout(monkeypatch):
    monkeypatch.setattr(data.keras.datasets.imdb, "load_data", _fake_keras_imdb)
    monkeypatch.setattr(data.keras.datasets.imdb, "get_word_index",
                        lambda: {"the": 1, "movie": 2, "great": 3})
    # vocab_size 6: Keras keeps ids 4 ("the") and 5 ("movie"); "great" is out.
    reviews = data.load_data(settings(vocab_size=6, sequence_length=3, validation_fraction=0.5))
    assert reviews.vocabulary == ["", "[UNK]", "the", "movie"]
    words = lambda row: " ".join(reviews.vocabulary[i] for i in row if i)  # noqa: E731
    assert sorted(words(row) for row in reviews.x_test) == [
        "[UNK]", "movie the the", "the [UNK] movie", "the movie"]


def test_keras_source_failure_is_a_clear_error(monkeypatch):
    def offline(**kwargs):
        raise OSError("no network")

    monkeypatch.setattr(data.keras.datasets.imdb, "load_data", offline)
    with pytest.raises(UserInputError, match="keras.datasets.imdb: could not load.*--data_path"):
        data.load_data(train.DEFAULTS)


# --- padding direction -------------------------------------------------------


def test_pre_padding_puts_real_words_last_and_keeps_the_end_of_long_reviews():
    short, long = [5, 6, 7], [1, 2, 3, 4, 5, 6, 7]
    np.testing.assert_array_equal(data.pad([short, long], 5, "pre"), [[0, 0, 5, 6, 7], [3, 4, 5, 6, 7]])
    np.testing.assert_array_equal(data.pad([short, long], 5, "post"), [[5, 6, 7, 0, 0], [1, 2, 3, 4, 5]])


def test_loaded_reviews_end_with_a_word_under_pre_padding(tiny_acl_imdb):
    pre = data.load_data(settings(vocab_size=20, sequence_length=8, padding="pre"), tiny_acl_imdb)
    post = data.load_data(settings(vocab_size=20, sequence_length=8, padding="post"), tiny_acl_imdb)
    assert (pre.x_test[:, -1] != 0).all() and (pre.x_test[:, 0] == 0).all()
    assert (post.x_test[:, 0] != 0).all() and (post.x_test[:, -1] == 0).all()


# --- models ------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("rnn", ["simple_rnn", "lstm", "gru"])
def test_model_shapes_and_parameter_counts(rnn, bidirectional):
    config = dataclasses.replace(train.DEFAULTS, rnn=rnn, bidirectional=bidirectional)
    model = model_lib.build_model(config)
    vocab, embed, units = 10_000, 100, 128
    gates = {"simple_rnn": 1, "lstm": 4, "gru": 3}[rnn]
    biases = 2 if rnn == "gru" else 1  # GRU with reset_after keeps two bias vectors
    directions = 2 if bidirectional else 1  # and Dense reads both final states
    expected = (vocab * embed + directions * gates * units * (embed + units + biases)
                + directions * units + 1)
    assert expected == {"simple_rnn": 1_029_441, "lstm": 1_117_377, "gru": 1_088_449}[rnn] + (
        {"simple_rnn": 29_440, "lstm": 117_376, "gru": 88_448}[rnn] if bidirectional else 0)
    assert model.count_params() == expected
    assert model.input_shape == (None, 256)
    assert model.output_shape == (None, 1)
    probabilities = model.predict(np.zeros((2, 256), dtype="int32"), verbose=0)
    assert probabilities.shape == (2, 1) and ((probabilities > 0) & (probabilities < 1)).all()


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_lstm_and_gru_keep_cudnn_eligible_arguments(rnn):
    layer = model_lib.build_model(dataclasses.replace(train.DEFAULTS, rnn=rnn)).get_layer(rnn)
    assert layer.activation.__name__ == "tanh"
    assert layer.recurrent_activation.__name__ == "sigmoid"
    assert layer.recurrent_dropout == 0 and not layer.unroll and layer.use_bias
    assert layer.use_cudnn == "auto"
    if rnn == "gru":
        assert layer.reset_after


class RecordTrainedWeights(keras.callbacks.Callback):
    """Listed before EpochWeightAverage: sees the weights that training goes on from."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def fit_small_model(callbacks_for):
    """A seeded dense model, 3 epochs on fixed random data with the trainers' loop;
    returns (model, history, validation batches). callbacks_for(model) gives the callbacks."""
    keras.utils.set_random_seed(7)
    x = np.random.default_rng(0).normal(size=(64, 5)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("int32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="tanh"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(0.05))
    history = keras.callbacks.History()
    validation = tf.data.Dataset.from_tensor_slices((x[48:], y[48:])).batch(8)
    training.fit(model, tf.distribute.get_strategy(),
                 tf.data.Dataset.from_tensor_slices((x[:48], y[:48])).batch(8).repeat(3),
                 validation, loss=model_lib.loss, metrics=model_lib.METRICS, epochs=3,
                 steps_per_epoch=6, callbacks=[*callbacks_for(model), history], verbose=0)
    return model, history, validation


def test_epoch_weight_average_validates_and_keeps_the_average_but_trains_on():
    plain = RecordTrainedWeights()
    fit_small_model(lambda model: [plain])
    recorder = RecordTrainedWeights()
    model, history, validation = fit_small_model(
        lambda model: [recorder, train.EpochWeightAverage(model, 0.5)])
    # Training itself is untouched: the same weights at every epoch's end.
    for trained, reference in zip(recorder.weights, plain.weights):
        for a, b in zip(trained, reference):
            np.testing.assert_array_equal(a, b)
    w1, w2, w3 = recorder.weights
    def mix(*terms):
        return [sum(share * w[i] for share, w in terms) for i in range(len(w1))]
    # The model ends with the average: a half of epoch 3, a quarter each of 1 and 2.
    for got, want in zip(model.get_weights(), mix((0.25, w1), (0.25, w2), (0.5, w3))):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # Epoch 2 was validated with the average of epochs 1 and 2.
    model.set_weights(mix((0.5, w1), (0.5, w2)))
    val_loss = training.evaluate(model, tf.distribute.get_strategy(), validation,
                                 loss=model_lib.loss, metrics=model_lib.METRICS)["loss"]
    assert history.history["val_loss"][1] == pytest.approx(val_loss, rel=1e-5)


def test_imdb_model_and_weight_average_on_two_mirrored_cpus():
    """Two logical CPU devices: no XLA (it cannot reach the other device's variables),
    and every replica ends with the averaged weights."""
    code = """
import common, dataclasses, json, numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from common import training
from imdb_sentiment import model as model_lib, train
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
config = dataclasses.replace(train.DEFAULTS, vocab_size=30, embedding_dim=4, units=8,
                             sequence_length=12, batch_size=16)
keras.utils.set_random_seed(0)
with strategy.scope():
    model = model_lib.build_model(config)
    model_lib.compile_model(model, config)
trained = []
record = keras.callbacks.LambdaCallback(
    on_epoch_end=lambda epoch, logs: trained.append(model.get_weights()))
x = np.random.default_rng(0).integers(0, 30, size=(64, 12)).astype("int32")
y = (x[:, -1] % 2).astype("int32")
batches = lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
training.fit(model, strategy, batches(x[:48], y[:48]).repeat(2), batches(x[48:], y[48:]),
             loss=model_lib.loss, metrics=model_lib.METRICS, epochs=2, steps_per_epoch=3,
             callbacks=[record, train.EpochWeightAverage(model, 0.5)], verbose=0,
             jit_compile=True)
want = [0.5 * a + 0.5 * b for a, b in zip(*trained)]
ok = all(np.allclose(local.numpy(), w, atol=1e-7)
         for variable, w in zip(model.weights, want)
         for local in strategy.experimental_local_results(variable))
print(json.dumps([strategy.num_replicas_in_sync, training.is_one_cpu_replica(strategy), ok]))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1]) == [2, False, True]


# --- training, saving, resuming ------------------------------------------------

TINY_MODEL = settings(rnn="gru", units=4, embedding_dim=3, vocab_size=20, sequence_length=6,
                      batch_size=4, validation_fraction=0.34)


def test_train_and_evaluate_saves_a_run_folder_and_reuses_it(tiny_acl_imdb, tmp_path):
    config = dataclasses.replace(TINY_MODEL, epochs=2)
    strategy = tf.distribute.get_strategy()
    save = tmp_path / "run"
    metrics = train.train_and_evaluate(config, strategy, tiny_acl_imdb, save, verbose=0)
    assert metrics["parameters"] == 20 * 3 + 3 * 4 * (3 + 4 + 2) + 4 + 1
    assert metrics["epochs_run"] == 2 and len(metrics["history"]) == 2
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["seconds_per_epoch"] > 0
    assert sorted(path.name for path in save.iterdir()) == [
        ".lock", "checkpoint", "history.csv", "metrics.json", "model.keras", "settings.json",
        "tensorboard", "vocabulary.json"]
    summaries = tensorboard_summaries(save / "tensorboard")
    assert [value for _, value in summaries["validation/epoch_accuracy"]] == pytest.approx(
        [epoch["val_accuracy"] for epoch in metrics["history"]])
    learning_rates = [value for _, value in summaries["train/epoch_learning_rate"]]
    assert learning_rates == pytest.approx([config.learning_rate * config.lr_decay**epoch
                                            for epoch in range(2)])
    assert [step for step, _ in summaries["train/epoch_examples_per_second"]] == [0, 1]
    assert json.loads((save / "vocabulary.json").read_text())[:2] == ["", "[UNK]"]
    assert read_metrics(save)["settings"]["padding"] == "pre"
    # Same config again: nothing left to train; the same test numbers.
    again = train.train_and_evaluate(config, strategy, tiny_acl_imdb, save, verbose=0)
    assert again == metrics


def write_reviews(root, per_class, seed=0):
    """An aclImdb folder of short random reviews; the last word gives the label away."""
    rng = np.random.default_rng(seed)
    words = "film plot story acting scene cast music ending script actor".split()
    for split in ("train", "test"):
        for name, rating, cue in (("pos", 9, "great"), ("neg", 2, "awful")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for number in range(per_class):
                text = " ".join(rng.choice(words, 10)) + f" {cue}"
                (folder / f"{number}_{rating}.txt").write_text(text)
    return root


def test_crashed_run_resumes_to_the_numbers_of_an_uninterrupted_one(tmp_path, monkeypatch):
    """Dropout, word dropout and the weight average on: all must continue exactly."""
    reviews_root = write_reviews(tmp_path / "aclImdb", per_class=20)
    config = dataclasses.replace(TINY_MODEL, epochs=4, batch_size=8)
    strategy = tf.distribute.get_strategy()
    uninterrupted = train.train_and_evaluate(config, strategy, reviews_root, verbose=0)

    original = train.EpochWeightAverage.on_epoch_end
    def crash_in_second_epoch_end(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt
    monkeypatch.setattr(train.EpochWeightAverage, "on_epoch_end", crash_in_second_epoch_end)
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(config, strategy, reviews_root, tmp_path / "run", verbose=0)
    assert len(read_metrics(tmp_path / "run")["history"]) == 1
    monkeypatch.undo()

    resumed = train.train_and_evaluate(config, strategy, reviews_root, tmp_path / "run",
                                       verbose=0)
    assert timing_free(resumed["history"]) == timing_free(uninterrupted["history"])
    assert (resumed["test_loss"], resumed["best_epoch"]) == (
        uninterrupted["test_loss"], uninterrupted["best_epoch"])


def test_killed_and_rerun_cli_ends_like_an_uninterrupted_run(tmp_path):
    reviews_root = write_reviews(tmp_path / "aclImdb", per_class=40)

    # Epochs after the first take 0.65 s here: 5 of them leave the kill 3 s to land.
    def command(save_path):
        return module_command("imdb_sentiment.train", "--rnn=gru", f"--data_path={reviews_root}",
                              "--epochs=6", "--patience=6", "--batch_size=8",
                              f"--save_path={save_path}")
    whole, killed = killed_and_rerun_like_uninterrupted(command, tmp_path, epochs=6)
    assert killed["test_loss"] == whole["test_loss"]


def test_a_bidirectional_model_trains_saves_and_predicts(tmp_path, forked):
    reviews_root = write_reviews(tmp_path / "aclImdb", per_class=20)
    save = tmp_path / "run"
    result = run_module("imdb_sentiment.train", "--rnn=gru", "--bidirectional", "--epochs=1",
                        "--batch_size=8", f"--data_path={reviews_root}", f"--save_path={save}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| bidirectional_gru  | params" in result.stdout
    assert read_metrics(save)["settings"]["bidirectional"] is True
    # A process of its own (conftest.ForkedRuns); a fresh predict runs on a real run below.
    result = forked.run("imdb_sentiment.predict", f"--save_path={save}", "A fine film.")
    assert result.returncode == 0 and result.stdout.count("\t") == 1, result.stderr[-2000:]


# --- bad input ---------------------------------------------------------------


def test_bad_paths_raise_clear_errors(tmp_path):
    with pytest.raises(UserInputError, match="--save_path=.*none: no model.keras there"):
        predict.load_classifier(tmp_path / "none")
    with pytest.raises(UserInputError, match="no such file or folder"):
        data.load_data(train.DEFAULTS, tmp_path / "missing")
    (tmp_path / "train" / "pos").mkdir(parents=True)
    with pytest.raises(UserInputError, match=r"no reviews in train/neg/"):
        data.load_data(train.DEFAULTS, tmp_path)
    corrupt = tmp_path / "aclImdb_v1.tar.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    with pytest.raises(UserInputError, match="not a readable tar archive"):
        data.load_data(train.DEFAULTS, corrupt)


# --- real data ---------------------------------------------------------------

# The least data and epochs that reliably learned something in trials on 2 CPU cores
# (fewer reviews stayed near chance). SimpleRNN needs small batches (more updates)
# and more reviews: with 4,000 it reached only 59.5% once the shuffling changed
# per (seed, epoch); with 8,000, 78.4% and 79.1% on seeds 0 and 1, both from epoch 2
# of 3 (so 2 epochs give the same model). No
# regularisation, decay or weight averaging: too little data and too few epochs
# for them to help (with them, 4,000 reviews gave 53%).
NO_REGULARISATION = ["--dropout=0", "--word_dropout=0", "--lr_decay=1", "--weight_averaging=0"]
REAL_RUNS = {
    "lstm": ["--max_examples=1500", "--epochs=4", "--batch_size=128", *NO_REGULARISATION],
    "gru": ["--max_examples=1500", "--epochs=3", "--batch_size=128", *NO_REGULARISATION],
    "simple_rnn": ["--max_examples=8000", "--epochs=2", "--batch_size=32", *NO_REGULARISATION],
}


@pytest.fixture(scope="module")
def real_runs(data_dir, tmp_path_factory):
    """{rnn: (run folder, exit status, stdout, stderr)}: one short CLI run per model.

    The three start together so that their start-up (imports, reading the tarball,
    compiling) overlaps; output goes to files, which never block like full pipes.
    """
    started = {}
    for rnn, args in REAL_RUNS.items():
        logs = tmp_path_factory.mktemp(rnn)
        save = logs / "run"
        command = module_command("imdb_sentiment.train", f"--rnn={rnn}",
                                 f"--data_path={data_dir / 'imdb'}", f"--save_path={save}", *args)
        with open(logs / "stdout", "w") as stdout, open(logs / "stderr", "w") as stderr:
            started[rnn] = save, subprocess.Popen(command, cwd=ROOT, stdout=stdout, stderr=stderr)
    runs = {}
    for rnn, (save, process) in started.items():
        status = process.wait(timeout=600)
        runs[rnn] = (save, status, (save.parent / "stdout").read_text(),
                     (save.parent / "stderr").read_text())
    return runs


@pytest.mark.parametrize("rnn", list(REAL_RUNS))
def test_short_real_run_beats_chance(real_runs, rnn):
    save, status, stdout, stderr = real_runs[rnn]
    assert status == 0, stderr[-2000:]
    metrics = read_metrics(save)
    assert f"test acc {metrics['test_accuracy']:.4f}" in stdout
    assert "\r" not in stdout  # one line per epoch into a file, no progress bar
    # 1,500+ balanced test reviews: 0.6 is more than 7 standard errors above chance.
    assert metrics["test_accuracy"] > 0.6, metrics


def test_predict_scores_real_reviews_with_a_saved_model(real_runs, data_dir, forked):
    save = real_runs["lstm"][0]
    _, score = predict.load_classifier(save)
    # predict's own text pipeline on the raw test reviews that the run evaluated
    # (--max_examples=1500: the first 750 of each class) agrees with that evaluation.
    texts, labels = data.read_raw_reviews(data_dir / "imdb")["test"]
    pick = np.r_[0:750, 12_500:13_250]
    assert set(labels[:750]) == {0} and set(labels[12_500:13_250]) == {1}
    accuracy = np.mean((score(list(texts[pick])) >= 0.5) == labels[pick])
    metrics = read_metrics(save)
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1 / 1500), accuracy
    assert accuracy > 0.6

    review = "One of the best films I have seen: moving, funny and beautifully acted."
    result = run_module("imdb_sentiment.predict", f"--save_path={save}", review)
    assert result.returncode == 0, result.stderr[-2000:]
    probability, label = result.stdout.strip().split("\t")
    assert abs(float(probability) - score([review])[0]) < 1e-4
    assert label == ("positive" if float(probability) >= 0.5 else "negative")
    assert_one_line_error(
        forked.run("imdb_sentiment.predict", f"--save_path={save}", stdin="\n  \n"),
        "stdin: empty")


def test_compare_end_to_end_on_a_tiny_real_subset(data_dir, tmp_path, forked):
    save = tmp_path / "compare"
    result = run_module("imdb_sentiment.compare", f"--data_path={data_dir / 'imdb'}",
                        "--max_examples=200", "--epochs=2", "--batch_size=32",
                        f"--save_path={save}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_metrics(save)
    assert metrics["tutorial"] == "imdb_sentiment.compare"
    assert [row["rnn"] for row in metrics["results"]] == ["simple_rnn", "lstm", "gru"]
    table = (save / "results.md").read_text()
    for row in metrics["results"]:
        assert len(row["history"]) == 2 and 0 <= row["test_accuracy"] <= 1
        assert f"| {row['rnn']} | {row['parameters']:,} | {row['test_accuracy']:.2%} |" in table
        assert read_metrics(save / row["rnn"])["test_accuracy"] == row["test_accuracy"]
    assert (save / "curves.png").stat().st_size > 10_000
    assert (save / "results.csv").read_text().count("\n") == 4
    # Each model's folder is a run folder that predict reads.
    result = forked.run("imdb_sentiment.predict", f"--save_path={save / 'gru'}", "A fine film.")
    assert result.returncode == 0 and result.stdout.count("\t") == 1, result.stderr[-2000:]
    assert_one_line_error(forked.run("imdb_sentiment.predict", f"--save_path={save}", "Fine."),
                          "no model.keras there; for a compare run, name one model's folder")
