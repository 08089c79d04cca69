"""Trains one IMDB sentiment classifier: Embedding -> SimpleRNN | LSTM | GRU -> Dense.

Reproduces the classic Keras/TensorFlow IMDB tutorial (binary sentiment of movie
reviews, 25,000 train / 25,000 test) on the raw Large Movie Review Dataset or on
`keras.datasets.imdb`.

`python -m imdb_sentiment.compare` trains the three with the defaults below
(22,500 train / 2,500 validation / 25,000 test reviews); their accuracies, with
the commands: docs/results.md.

Design, one line each (the measurements: docs/results.md, docs/engineering-log.md):
  - padding="pre": the RNN reads real words last (with "post" a SimpleRNN stays at chance).
  - word dropout and input dropout: the models overfit IMDB within two or three epochs.
  - the learning rate falls by lr_decay after every epoch, for the same reason.
  - validation and early stopping see a running average of the end-of-epoch weights
    (EpochWeightAverage): each epoch's own weights let validation noise pick the epoch;
    Keras' per-step EMA matched its accuracy at more time per epoch.

Glossary: vocab_size = num_words, sequence_length = maxlen, units = hidden size.

Run:
    python -m imdb_sentiment.train --rnn lstm --data_path DIR  # aclImdb/ or aclImdb_v1.tar.gz
    python -m imdb_sentiment.train --rnn gru                  # keras.datasets (downloads)
    python -m imdb_sentiment.train --rnn simple_rnn --data_path DIR \\
        --max_examples 2000 --epochs 2 --save_path runs/quick  # a quick look

Everything of a run is in its folder, --save_path (default
runs/imdb_sentiment/[bidirectional_]<rnn>):
`model.keras` (the best epoch's), `vocabulary.json`, `metrics.json`, `history.csv`,
`settings.json` and the `checkpoint/` that the same command resumes from.
"""

import contextlib
import dataclasses
import statistics

import common  # noqa: F401  (first: quiets TensorFlow's start-up logs)
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from common import callbacks
from common import cli
from common import data as common_data
from common import run_folder
from common import strategy as strategy_lib
from common import training
from imdb_sentiment import data
from imdb_sentiment import model as model_lib


@dataclasses.dataclass(frozen=True)
class Config:
    rnn: str = "lstm"  # simple_rnn | lstm | gru: the only difference between models
    bidirectional: bool = False  # also read each review backwards (model.py)
    vocab_size: int = 10_000  # most frequent training words kept (num_words)
    sequence_length: int = 256  # reviews cut or padded to this many tokens (maxlen)
    padding: str = "pre"  # zeros in front, so the RNN reads real words last
    embedding_dim: int = 100  # size of each word vector
    units: int = 128  # recurrent state size
    word_dropout: float = 0.2  # whole words dropped from each review while training
    dropout: float = 0.5  # on the RNN's inputs (same mask every step; cuDNN-safe)
    batch_size: int = 64  # global batch (all replicas together)
    learning_rate: float = 1e-3  # Adam's default, for the first epoch
    lr_decay: float = 0.6  # learning rate *= lr_decay after every epoch
    weight_averaging: float = 0.5  # old average's share, each epoch (EpochWeightAverage); 0 = off
    clip_norm: float = 1.0  # global gradient-norm clip (tames SimpleRNN)
    epochs: int = 8  # upper bound; early stopping often ends sooner
    patience: int = 5  # epochs without a better val_accuracy before stopping
    validation_fraction: float = 0.1  # of the training reviews, held out
    max_examples: int | None = None  # first N train and N test reviews (quick runs)
    seed: int = 0  # weights, shuffling, dropout and the validation split


DEFAULTS = Config()


class EpochWeightAverage(keras.callbacks.Callback):
    """Validation, early stopping and the saved model see a running average of the
    weights at the end of each epoch; training goes on from the weights themselves.

        average = share * average + (1 - share) * weights at the end of this epoch

    With share 0.5 the newest epoch counts a half, the one before a quarter, and so
    on. An epoch's last weights carry the noise of its last minibatches; the average
    sits nearer the middle of where they wander, so early stopping picks by noise
    less often. Keras' optimizer EMA (`use_ema=True`, momentum 0.997, the same
    span) gave the same test accuracy, but updates a copy of every weight after
    every step, which made LSTM and GRU epochs slower (docs/engineering-log.md),
    and its swap state is not in a checkpoint.

    Keras validates before `on_epoch_end`, so the average is swapped in for the
    validation and again from `on_epoch_end` to the next epoch's start. Callbacks
    listed after this one see the average. The average lives in `variables`, so
    that a checkpoint holding them resumes it exactly; `training_weights()` puts
    the weights training goes on from back while such a checkpoint is written.
    """

    def __init__(self, model, share):
        super().__init__()
        self.share = share
        self.average = [tf.Variable(w, trainable=False) for w in model.get_weights()]
        self.epochs_averaged = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.variables = dict(average=self.average, epochs_averaged=self.epochs_averaged)
        self.trained_weights = None  # while the average is in the model

    def on_epoch_begin(self, epoch, logs=None):
        if self.trained_weights is not None:
            self.model.set_weights(self.trained_weights)
            self.trained_weights = None

    def on_test_begin(self, logs=None):  # the validation inside fit
        self._swap_in_average()

    def on_test_end(self, logs=None):
        self.model.set_weights(self.trained_weights)

    def on_epoch_end(self, epoch, logs=None):
        self._swap_in_average()

    @contextlib.contextmanager
    def training_weights(self):
        """The weights training goes on from, in the model while the block runs."""
        if self.trained_weights is None:
            yield
            return
        self.model.set_weights(self.trained_weights)
        try:
            yield
        finally:
            self.model.set_weights([v.numpy() for v in self.average])

    def _swap_in_average(self):
        """Folds this epoch's trained weights in (once), then loads the average."""
        if self.trained_weights is None:
            self.trained_weights = self.model.get_weights()
            first = int(self.epochs_averaged) == 0
            for average, weights in zip(self.average, self.trained_weights):
                average.assign(weights if first else
                               self.share * average + (1 - self.share) * weights)
            self.epochs_averaged.assign_add(1)
        self.model.set_weights([v.numpy() for v in self.average])


# In the run folder beside model.keras: the words in id order, for predict.py.
VOCABULARY = "vocabulary.json"


def train_and_evaluate(config, strategy, data_path=None, save_path=None, reviews=None,
                       restart=False, verbose=None):
    """Trains config.rnn, evaluates once on the test set, returns a dict of metrics.

    reviews: already loaded `data.Reviews` (compare.py loads them once for three
    models, from data_path); otherwise they are loaded from data_path.
    save_path: the run folder (common/run_folder.py); the same call again resumes after
    the last completed epoch, or only evaluates when training is over.
    """
    training.check_global_batch(config.batch_size, strategy)
    settings = dict(dataclasses.asdict(config), data_path=data_path)
    run = run_folder.open_run(save_path, "imdb_sentiment", settings, restart, strategy,
                              own_files=[VOCABULARY])
    if reviews is None:
        reviews = data.load_data(config, data_path)
    keras.utils.set_random_seed(config.seed)  # initial weights and dropout
    print(f"{model_lib.model_name(config)}: {len(reviews.y_train)} train / "
          f"{len(reviews.y_val)} validation / {len(reviews.y_test)} test reviews; "
          f"replicas in sync: {strategy.num_replicas_in_sync}")
    steps_per_epoch = common_data.batches_per_epoch(len(reviews.y_train), config.batch_size)

    with strategy.scope():
        model = model_lib.build_model(config)
        model_lib.compile_model(model, config)
        model.optimizer.build(model.trainable_variables)  # so that a checkpoint can fill it
    averaging = (EpochWeightAverage(model, config.weight_averaging)
                 if config.weight_averaging else None)
    first_epoch, history = run.resume(model, extra=averaging and averaging.variables)
    run.write_json(VOCABULARY, reviews.vocabulary)  # for predict.py

    best = callbacks.BestModel(run, run_folder.MODEL, "val_accuracy", history)
    stopping = callbacks.EarlyStopping("val_accuracy", config.patience, history)
    if first_epoch < config.epochs and not stopping.stopped_before():
        epoch_callbacks = [
            callbacks.EpochTimer(examples_per_epoch=len(reviews.y_train)),
            # Large steps first, then ever smaller ones: the models overfit IMDB within
            # two or three epochs at a constant rate (docs/engineering-log.md).
            keras.callbacks.LearningRateScheduler(
                lambda epoch: config.learning_rate * config.lr_decay**epoch),
            *([averaging] if averaging else []),
            best,  # after the averaging: keeps the averaged weights
            stopping,
            run.tensorboard(),
            callbacks.EpochCheckpoint(run, history, training_weights=(
                averaging.training_weights if averaging else contextlib.nullcontext)),
        ]
        training.fit(
            model, strategy,
            # Shuffled as a function of (seed, epoch), so a resumed run sees the same order.
            data.training_batches(reviews, config, first_epoch),
            data.evaluation_batches(reviews.x_val, reviews.y_val, config),
            loss=model_lib.loss, metrics=model_lib.METRICS,
            initial_epoch=first_epoch, epochs=config.epochs,
            steps_per_epoch=steps_per_epoch, callbacks=epoch_callbacks,
            verbose=callbacks.progress_verbosity() if verbose is None else verbose,
            # XLA fuses the recurrent layer's per-step loop (docs/performance.md);
            # training.py says where it applies.
            jit_compile=True)

    best.best_weights_into(model)  # the test set sees the best epoch's weights
    test = training.evaluate(
        model, strategy, data.evaluation_batches(reviews.x_test, reviews.y_test, config),
        loss=model_lib.loss, metrics=model_lib.METRICS, jit_compile=True)
    best_index = int(np.argmax([epoch["val_accuracy"] for epoch in history]))
    seconds = [epoch["seconds"] for epoch in history]
    metrics = dict(
        rnn=config.rnn,
        model=model_lib.model_name(config),
        parameters=model.count_params(),
        test_accuracy=float(test["accuracy"]),
        test_loss=float(test["loss"]),
        best_epoch=best_index + 1,
        epochs_run=len(history),
        # The first epoch also compiles (XLA); the median of the rest is the steady cost.
        seconds_per_epoch=statistics.median(seconds[1:] or seconds),
        training_seconds=sum(seconds),
    )
    run.finish(history, test_scalars=dict(test_accuracy=metrics["test_accuracy"],
                                          test_loss=metrics["test_loss"]), **metrics)
    return dict(metrics, history=history)


def format_metrics(metrics):
    """One fixed-width summary line."""
    return (
        f"| {metrics['model']:<18} | params {metrics['parameters']:>9,} | "
        f"test acc {metrics['test_accuracy']:.4f} | test loss {metrics['test_loss']:.4f} | "
        f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']} | "
        f"s/epoch {metrics['seconds_per_epoch']:.0f} |"
    )


# --- command line ---------------------------------------------------------------

FLAGS = flags.FLAGS


def define_flags(default_run_folder="runs/imdb_sentiment/[bidirectional_]<rnn>"):
    """The command-line flags of train (compare uses them too); call once, from main."""
    cli.define_run_flags(
        data_path_help="aclImdb folder or aclImdb_v1.tar.gz; unset: keras.datasets.imdb.",
        default_run_folder=default_run_folder, epochs_default=DEFAULTS.epochs,
        learning_rate_default=DEFAULTS.learning_rate, learning_rate_help="Adam learning rate.",
        epochs_help="Most epochs to train (early stopping may end sooner).", max_examples=True)
    flags.adopt_module_key_flags(cli)  # so that --help lists the shared flags too
    flags.DEFINE_string("rnn", DEFAULTS.rnn, "Recurrent layer: simple_rnn, lstm or gru.")
    flags.DEFINE_boolean("bidirectional", DEFAULTS.bidirectional,
                         "Wrap the recurrent layer in keras.layers.Bidirectional.")
    flags.DEFINE_integer("batch_size", DEFAULTS.batch_size, "Global batch size.", lower_bound=1)
    flags.DEFINE_float("dropout", DEFAULTS.dropout, "Dropout on the recurrent layer's inputs.")
    flags.DEFINE_float("word_dropout", DEFAULTS.word_dropout,
                       "Fraction of words dropped while training.")
    flags.DEFINE_float("lr_decay", DEFAULTS.lr_decay,
                       "Learning-rate factor applied after every epoch.")
    flags.DEFINE_float("weight_averaging", DEFAULTS.weight_averaging,
                       "Share of the running weight average kept after each epoch; 0: off.")
    flags.DEFINE_integer("patience", DEFAULTS.patience, "Early-stopping patience in epochs.",
                         lower_bound=0)
    flags.DEFINE_string("padding", DEFAULTS.padding, "pre (real words last) or post.")


# The Config fields that have a flag of the same name.
_FLAGGED_FIELDS = ("rnn", "bidirectional", "padding", "epochs", "batch_size", "learning_rate",
                   "dropout", "word_dropout", "lr_decay", "weight_averaging", "patience",
                   "max_examples", "seed")


def config_from_flags(**overrides):
    """Config from the command-line flags, checked; overrides win."""
    for name in ("dropout", "word_dropout", "weight_averaging"):
        if not 0 <= FLAGS[name].value < 1:
            raise cli.UserInputError(f"--{name}={FLAGS[name].value}: must be in [0, 1)")
    if not 0 < FLAGS.lr_decay <= 1:
        raise cli.UserInputError(f"--lr_decay={FLAGS.lr_decay}: must be in (0, 1]")
    values = {name: FLAGS[name].value for name in _FLAGGED_FIELDS}
    values.update(overrides)
    config = dataclasses.replace(DEFAULTS, **values)
    if config.rnn not in model_lib.RNN_LAYERS:
        raise cli.UserInputError(
            f"--rnn={config.rnn}: choose one of {', '.join(model_lib.RNN_LAYERS)}")
    if config.padding not in data.PADDING_CHOICES:
        raise cli.UserInputError(f"--padding={config.padding}: choose one of pre, post")
    return config


def main(argv):
    del argv  # cli.run refuses stray arguments
    config = config_from_flags()
    strategy = strategy_lib.get_strategy(num_gpus=FLAGS.num_gpus,
                                       worker_timeout=FLAGS.worker_timeout)
    training.use_mixed_precision(FLAGS.mixed_precision)
    save_path = cli.run_folder_path("imdb_sentiment", model_lib.model_name(config))
    metrics = train_and_evaluate(config, strategy, FLAGS.data_path, save_path,
                                 restart=FLAGS.restart)
    print(format_metrics(metrics))
    print(f"run folder {save_path}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
