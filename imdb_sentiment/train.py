"""Trains one IMDB sentiment classifier: Embedding -> SimpleRNN | LSTM | GRU -> Dense.

Reproduces the classic Keras/TensorFlow IMDB tutorial (binary sentiment of movie
reviews, 25,000 train / 25,000 test) on the raw Large Movie Review Dataset or on
`keras.datasets.imdb`.

Measured with `python -m imdb_sentiment.compare --data_dir ../shared/data/imdb` (the
defaults below; 22,500 train / 2,500 validation / 25,000 test reviews) on the
project's 2-core CPU VM, no GPU, 2026-11-22, 20.8 min wall for all three
(docs/RESULTS.md):

    model       parameters  test acc  test loss  best epoch (of run)  s/epoch
    SimpleRNN    1,029,441    86.12%     0.3212                8 (8)       25
    LSTM         1,117,377    88.32%     0.2896                5 (8)       65
    GRU          1,088,449    88.74%     0.2890                7 (8)       46

The issue's targets are LSTM and GRU >= 88%, SimpleRNN >= 80%. Without the weight
averaging (--weight_averaging=0) the same run gave 86.06 / 87.77 / 88.62%: early
stopping then kept the LSTM's epoch 3, whose validation accuracy was highest by
noise. With padding="post" a SimpleRNN stays at chance (50.4% against 83.5% with
"pre"; see data.py).

Glossary: vocab_size = num_words, sequence_length = maxlen, units = hidden size.

Run:
    python -m imdb_sentiment.train --rnn lstm --data_dir ../shared/data/imdb
    python -m imdb_sentiment.train --rnn gru                  # keras.datasets (downloads)
    python -m imdb_sentiment.train --rnn simple_rnn --data_dir ../shared/data/imdb \\
        --max_examples 2000 --epochs 2                        # a quick look
    python -m imdb_sentiment.train ... --save_path runs/imdb  # keep (and resume) it
"""

import csv
import dataclasses
import json
import pathlib
import statistics
import time

import common  # first: quiets TensorFlow's start-up logs
import common.cli
import common.strategy
from common.cli import UserInputError

from absl import flags
import numpy as np
import tensorflow as tf
import keras

from imdb_sentiment import data
from imdb_sentiment import model as model_lib


@dataclasses.dataclass(frozen=True)
class Config:
    rnn: str = "lstm"  # simple_rnn | lstm | gru: the only difference between models
    vocab_size: int = 10_000  # most frequent training words kept (num_words)
    sequence_length: int = 256  # reviews cut or padded to this many tokens (maxlen)
    padding: str = "pre"  # zeros in front, so the RNN reads real words last
    embedding_dim: int = 100  # size of each word vector
    units: int = 128  # recurrent state size
    word_dropout: float = 0.2  # whole words dropped from each review while training
    dropout: float = 0.5  # on the RNN's inputs (same mask every step; cuDNN-safe)
    batch_size: int = 64  # global; as fast per review as 128 on 2 CPU cores
    learning_rate: float = 1e-3  # Adam's default, for the first epoch
    lr_decay: float = 0.6  # learning rate *= lr_decay after every epoch
    weight_averaging: float = 0.5  # old average's share, each epoch (EpochWeightAverage); 0 = off
    clip_norm: float = 1.0  # global gradient-norm clip (tames SimpleRNN)
    epochs: int = 8  # upper bound; early stopping often ends sooner
    patience: int = 5  # epochs without a better val_accuracy before stopping
    validation_fraction: float = 0.1  # of the training reviews, held out
    max_examples: int | None = None  # first N train and N test reviews (quick runs)
    seed: int = 0  # weights, shuffling and the validation split


DEFAULTS = Config()

FLAGS = flags.FLAGS


def define_flags():
    """The command-line flags of train (compare uses them too); call once, from main."""
    flags.DEFINE_string("rnn", DEFAULTS.rnn, "Recurrent layer: simple_rnn, lstm or gru.")
    flags.DEFINE_string(
        "data_dir", None, "aclImdb folder or aclImdb_v1.tar.gz; unset: keras.datasets.imdb."
    )
    flags.DEFINE_integer("max_examples", None, "Use only the first N train and N test reviews.")
    flags.DEFINE_integer("epochs", DEFAULTS.epochs, "Most epochs to train.")
    flags.DEFINE_integer("batch_size", DEFAULTS.batch_size, "Global batch size.")
    flags.DEFINE_float("learning_rate", DEFAULTS.learning_rate, "Adam learning rate.")
    flags.DEFINE_float("dropout", DEFAULTS.dropout, "Dropout on the recurrent layer's inputs.")
    flags.DEFINE_float("word_dropout", DEFAULTS.word_dropout,
                       "Fraction of words dropped while training.")
    flags.DEFINE_float("lr_decay", DEFAULTS.lr_decay,
                       "Learning-rate factor applied after every epoch.")
    flags.DEFINE_float("weight_averaging", DEFAULTS.weight_averaging,
                       "Share of the running weight average kept after each epoch; 0: off.")
    flags.DEFINE_integer("patience", DEFAULTS.patience, "Early-stopping patience in epochs.")
    flags.DEFINE_string("padding", DEFAULTS.padding, "pre (real words last) or post.")
    flags.DEFINE_integer("seed", DEFAULTS.seed, "Random seed.")
    flags.DEFINE_string("save_path", None, "Folder for the trained model(s); also resumes.")
    flags.DEFINE_integer("num_gpus", None, "GPUs to use; unset: all, 0: CPU.")


# The Config fields that have a flag of the same name.
_FLAGGED_FIELDS = ("rnn", "padding", "epochs", "batch_size", "learning_rate", "dropout",
                   "word_dropout", "lr_decay", "weight_averaging", "patience", "max_examples",
                   "seed")


def config_from_flags(**overrides):
    """Config from the command-line flags, checked; overrides win."""
    for name in ("epochs", "batch_size", "patience", "max_examples"):
        value = FLAGS[name].value
        if value is not None and value < (0 if name == "patience" else 1):
            raise UserInputError(f"--{name}={value}: must be a positive number")
    if FLAGS.learning_rate <= 0:
        raise UserInputError(f"--learning_rate={FLAGS.learning_rate}: must be positive")
    for name in ("dropout", "word_dropout", "weight_averaging"):
        if not 0 <= FLAGS[name].value < 1:
            raise UserInputError(f"--{name}={FLAGS[name].value}: must be in [0, 1)")
    if not 0 < FLAGS.lr_decay <= 1:
        raise UserInputError(f"--lr_decay={FLAGS.lr_decay}: must be in (0, 1]")
    values = {name: FLAGS[name].value for name in _FLAGGED_FIELDS}
    values.update(overrides)
    config = dataclasses.replace(DEFAULTS, **values)
    if config.rnn not in model_lib.RNN_LAYERS:
        raise UserInputError(f"--rnn={config.rnn}: choose one of {', '.join(model_lib.RNN_LAYERS)}")
    if config.padding not in data.PADDING_CHOICES:
        raise UserInputError(f"--padding={config.padding}: choose one of pre, post")
    return config


def load_data(config, data_dir=None):
    """`data.Reviews` for this config (see data.py)."""
    return data.load_data(
        data_dir,
        vocab_size=config.vocab_size,
        sequence_length=config.sequence_length,
        padding=config.padding,
        max_examples=config.max_examples,
        validation_fraction=config.validation_fraction,
        seed=config.seed,
    )


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` (training + validation wall time) to each epoch's logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self.start


class EpochWeightAverage(keras.callbacks.Callback):
    """Validation, early stopping and the saved model see a running average of the
    weights at the end of each epoch; training goes on from the weights themselves.

        average = share * average + (1 - share) * weights at the end of this epoch

    With share 0.5 the newest epoch counts a half, the one before a quarter, and so
    on. An epoch's last weights carry the noise of its last minibatches; the average
    sits nearer the middle of where they wander, and its validation accuracy moves
    more smoothly from epoch to epoch, so early stopping picks by noise less often.
    (Keras' optimizer EMA, `use_ema=True`, averages after every step instead; the
    epoch-end average is the one measured in docs/RESULTS.md.)

    Keras validates before `on_epoch_end`, so the average is swapped in for the
    validation and again from `on_epoch_end` to the next epoch's start. Callbacks
    listed after this one (EarlyStopping) see the average; BackupAndRestore, listed
    before it, backs up the weights that training goes on from.
    state_path: an .npz file that keeps the average between epochs, for resuming.
    """

    def __init__(self, share, state_path=None):
        super().__init__()
        self.share = share
        self.state_path = pathlib.Path(state_path) if state_path else None

    def on_train_begin(self, logs=None):
        self.average, self.epochs_averaged, self.trained_weights = None, 0, None
        if self.state_path and self.state_path.is_file():
            with np.load(self.state_path) as state:
                self.epochs_averaged = int(state["epochs_averaged"])
                self.average = [state[f"w{i}"] for i in range(len(state.files) - 1)]

    def on_epoch_begin(self, epoch, logs=None):
        if self.trained_weights is not None:
            self.model.set_weights(self.trained_weights)
            self.trained_weights = None
        elif self.epochs_averaged < epoch:
            # Resumed after a stop between BackupAndRestore's save and ours: the
            # restored weights are the end of the epoch the average lacks.
            self._add(self.model.get_weights())

    def on_test_begin(self, logs=None):  # the validation inside fit
        self._swap_in_average()

    def on_test_end(self, logs=None):
        self.model.set_weights(self.trained_weights)

    def on_epoch_end(self, epoch, logs=None):
        self._swap_in_average()
        if self.state_path:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.state_path.with_suffix(".partial.npz")
            np.savez(partial, epochs_averaged=self.epochs_averaged,
                     **{f"w{i}": w for i, w in enumerate(self.average)})
            partial.replace(self.state_path)  # atomic: a stop never leaves half a file

    def _swap_in_average(self):
        """Folds this epoch's trained weights in (once), then loads the average."""
        if self.trained_weights is None:
            self.trained_weights = self.model.get_weights()
            self._add(self.trained_weights)
        self.model.set_weights(self.average)

    def _add(self, weights):
        if self.average is None:
            self.average = weights
        else:
            self.average = [self.share * a + (1 - self.share) * w
                            for a, w in zip(self.average, weights)]
        self.epochs_averaged += 1


def train_and_evaluate(config, strategy, data_dir=None, save_path=None, reviews=None, verbose=1):
    """Trains config.rnn, evaluates once on the test set, returns a dict of metrics.

    reviews: already loaded `data.Reviews` (compare.py loads them once for three
    models); otherwise they are loaded from data_dir.
    save_path: folder for `<rnn>.keras` and `<rnn>.json` (config, metrics, vocabulary
    for predict.py). A finished run found there is reused; an interrupted one resumes
    from its last finished epoch (`<rnn>_backup/`). Early stopping starts afresh on
    resume, so its best weights come from the epochs after the restart.
    """
    save_path = pathlib.Path(save_path) if save_path else None
    if save_path:
        finished = _finished_run(save_path, config)
        if finished:
            print(f"{config.rnn}: reusing the finished run in {save_path} (delete it to retrain)")
            return finished["metrics"]
    keras.utils.set_random_seed(config.seed)
    if reviews is None:
        reviews = load_data(config, data_dir)
    print(
        f"{config.rnn}: {len(reviews.y_train)} train / {len(reviews.y_val)} validation / "
        f"{len(reviews.y_test)} test reviews; replicas in sync: {strategy.num_replicas_in_sync}"
    )
    train_ds = _dataset(reviews.x_train, reviews.y_train, config.batch_size, shuffle_seed=config.seed)
    val_ds = _dataset(reviews.x_val, reviews.y_val, config.batch_size)
    test_ds = _dataset(reviews.x_test, reviews.y_test, config.batch_size)

    with strategy.scope():
        model = model_lib.build_model(config)
    callbacks = [
        EpochTimer(),
        # Large steps first, then ever smaller ones: the models overfit IMDB within
        # two or three epochs at a constant rate (see docs/RESULTS.md).
        keras.callbacks.LearningRateScheduler(
            lambda epoch: config.learning_rate * config.lr_decay**epoch
        ),
    ]
    backup_dir = save_path / f"{config.rnn}_backup" if save_path else None
    if save_path:
        history_csv = save_path / f"{config.rnn}_history.csv"
        resuming = backup_dir.is_dir()
        if resuming:
            print(f"{config.rnn}: resuming from {backup_dir}")
        callbacks += [
            keras.callbacks.BackupAndRestore(str(backup_dir)),
            keras.callbacks.CSVLogger(str(history_csv), append=resuming),
        ]
    if config.weight_averaging:
        state_path = backup_dir / "weight_average.npz" if backup_dir else None
        callbacks.append(EpochWeightAverage(config.weight_averaging, state_path))
    # Last, so that it sees (and restores) the averaged weights.
    callbacks.append(
        keras.callbacks.EarlyStopping(
            monitor="val_accuracy", patience=config.patience, restore_best_weights=True
        )
    )
    start = time.perf_counter()
    fit = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        callbacks=callbacks,
        shuffle=False,  # train_ds reshuffles itself every epoch
        verbose=verbose,
    )
    train_seconds = time.perf_counter() - start
    history = _read_history_csv(history_csv) if save_path else fit.history
    test = model.evaluate(test_ds, return_dict=True, verbose=verbose)

    best = max(range(len(history["val_accuracy"])), key=history["val_accuracy"].__getitem__)
    metrics = {
        "rnn": config.rnn,
        "parameters": model.count_params(),
        "test_accuracy": float(test["accuracy"]),
        "test_loss": float(test["loss"]),
        "best_epoch": best + 1,
        "epochs_run": len(history["val_accuracy"]),
        # The first epoch also compiles (XLA); the median of the rest is the steady cost.
        "seconds_per_epoch": statistics.median(history["epoch_seconds"][1:] or history["epoch_seconds"]),
        "train_seconds": train_seconds,
        "history": {key: [float(v) for v in values] for key, values in history.items()},
    }
    if save_path:
        model.save(save_path / f"{config.rnn}.keras")
        info = {"config": dataclasses.asdict(config), "metrics": metrics, "vocabulary": reviews.vocabulary}
        (save_path / f"{config.rnn}.json").write_text(json.dumps(info))
    return metrics


def _dataset(x, y, batch_size, shuffle_seed=None):
    """Batches from in-memory arrays, prefetched so the input never waits on Python."""
    dataset = tf.data.Dataset.from_tensor_slices((x, y.astype("float32")))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(y), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _finished_run(save_path, config):
    """The saved info of a finished run with exactly this config, else None."""
    info_path = save_path / f"{config.rnn}.json"
    if not (info_path.is_file() and (save_path / f"{config.rnn}.keras").is_file()):
        return None
    try:
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError:
        return None
    return info if info.get("config") == dataclasses.asdict(config) else None


def _read_history_csv(path):
    """CSVLogger's file (all epochs, also across a resume) -> {metric: [values]}."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    return {key: [float(row[key]) for row in rows] for key in rows[0] if key != "epoch"}


def format_metrics(metrics):
    """One fixed-width summary line."""
    return (
        f"| {metrics['rnn']:<10} | params {metrics['parameters']:>9,} | "
        f"test acc {metrics['test_accuracy']:.4f} | test loss {metrics['test_loss']:.4f} | "
        f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']} | "
        f"s/epoch {metrics['seconds_per_epoch']:.0f} |"
    )


def get_strategy(num_gpus):
    """The shared strategy helper, its ValueError (too many GPUs) as a clean error."""
    try:
        return common.strategy.get_strategy(num_gpus=num_gpus)
    except ValueError as error:
        raise UserInputError(str(error))


def main(argv):
    if len(argv) > 1:
        raise UserInputError(f"unexpected arguments {argv[1:]}; see --help")
    config = config_from_flags()
    if FLAGS.save_path:
        pathlib.Path(FLAGS.save_path).mkdir(parents=True, exist_ok=True)
    strategy = get_strategy(FLAGS.num_gpus)
    metrics = train_and_evaluate(config, strategy, data_dir=FLAGS.data_dir, save_path=FLAGS.save_path)
    print(format_metrics(metrics))


if __name__ == "__main__":
    define_flags()
    common.cli.run(main)
