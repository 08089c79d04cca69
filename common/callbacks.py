"""The Keras callbacks every trainer shares: record each epoch, time it, keep the best
model, stop early (resumably), and write TensorBoard's event files into the run folder.
"""

import contextlib
import math
import pathlib
import sys
import time

import keras
import numpy as np
import tensorflow as tf



class EpochCheckpoint(keras.callbacks.Callback):
    """Records each epoch in the run folder (run.end_epoch: the history, then the
    training state).

    List it last, so that it records what the other callbacks did at the epoch's
    end. `training_weights`: see RunFolder.end_epoch.
    """

    def __init__(self, run, history, training_weights=contextlib.nullcontext):
        super().__init__()
        self.run, self.history, self.training_weights = run, history, training_weights

    def on_epoch_end(self, epoch, logs=None):
        self.history.append(dict(epoch=epoch + 1, **{k: float(v) for k, v in logs.items()}))
        self.run.end_epoch(self.history, self.training_weights)


class EpochTimer(keras.callbacks.Callback):
    """Adds to its logs `seconds` (wall time of the epoch, validation included)
    and, given `examples_per_epoch`, `examples_per_second` (of training alone)."""

    def __init__(self, examples_per_epoch=None):
        super().__init__()
        self.examples_per_epoch = examples_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.start = self.training_end = time.perf_counter()

    def on_test_begin(self, logs=None):
        self.training_end = time.perf_counter()  # validation starts

    def on_epoch_end(self, epoch, logs=None):
        logs["seconds"] = time.perf_counter() - self.start
        if self.examples_per_epoch:
            logs["examples_per_second"] = self.examples_per_epoch / (self.training_end - self.start)


def tensorboard(log_dir, settings):
    """Keras' TensorBoard callback, writing into `log_dir` (a run folder's
    tensorboard/), after the run's settings as text.

    It writes each epoch's logs (train/ and validation/ curves), the learning
    rate and the model's summary, as the original tutorial's Supervisor did:
        tensorboard --logdir runs/
    """
    log_dir = pathlib.Path(log_dir)
    rows = "\n".join(f"| {name} | {value} |" for name, value in settings.items())
    _write_summaries(log_dir / "train", lambda: tf.summary.text(
        "settings", f"| setting | value |\n|---|---|\n{rows}", step=0))
    return _TensorBoard(log_dir=str(log_dir))


class _TensorBoard(keras.callbacks.TensorBoard):
    """Keras' callback, with values beyond float32's range (a diverging run's
    perplexity) written as infinities instead of failing the run."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, {name: _in_float32_range(value)
                                     for name, value in (logs or {}).items()})


def _in_float32_range(value):
    """TensorBoard stores float32: a larger number becomes an infinity."""
    if isinstance(value, float) and abs(value) > float(np.finfo(np.float32).max):
        return math.copysign(math.inf, value)
    return value


def log_test_metrics(log_dir, epochs, metrics):
    """The test results as scalars in `log_dir`/test/, at the last epoch's step
    (Keras' callback counts epochs from 0)."""
    _write_summaries(pathlib.Path(log_dir) / "test", lambda: [
        tf.summary.scalar(name, _in_float32_range(value), step=epochs - 1)
        for name, value in metrics.items()])


def _write_summaries(log_dir, write):
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        write()
    writer.close()


class BestModel(keras.callbacks.Callback):
    """Keeps the weights of the epoch where `monitor` was best (higher is better),
    in `weights` and as the run folder's `name` (model.keras).

    `history`: the epochs before this fit call (a resumed run), so that the best
    so far is remembered across a restart (its weights are then in the folder).
    """

    def __init__(self, run, name, monitor, history=()):
        super().__init__()
        self.run, self.name, self.monitor, self.weights = run, name, monitor, None
        self.best = max((epoch[monitor] for epoch in history), default=float("-inf"))

    def on_epoch_end(self, epoch, logs=None):
        if logs[self.monitor] > self.best:
            self.best = logs[self.monitor]
            self.weights = self.model.get_weights()
            self.run.save_model(self.model, self.name)

    def best_weights_into(self, model):
        """The best epoch's weights into `model`: kept here, or saved by the run
        before a restart."""
        if self.weights is not None:
            model.set_weights(self.weights)
        else:
            self.run.load_weights(model, self.name)


class EarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' EarlyStopping (higher `monitor` is better), resumable: it takes up
    its count of epochs without improvement from the epochs run before a restart."""

    def __init__(self, monitor, patience, history=()):
        super().__init__(monitor=monitor, mode="max", patience=patience)
        previous = [epoch[monitor] for epoch in history]
        self.previous_best_index = (max(range(len(previous)), key=previous.__getitem__)
                                    if previous else None)
        self.previous = previous

    def stopped_before(self):
        """True when the epochs run before a restart had already ended training:
        as Keras decides, after a second or later epoch that did not improve."""
        if len(self.previous) < 2:
            return False
        epochs_since_best = len(self.previous) - 1 - self.previous_best_index
        return epochs_since_best > 0 and epochs_since_best >= self.patience

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.previous:
            self.best_epoch = self.previous_best_index
            self.best = self.previous[self.best_epoch]
            self.wait = len(self.previous) - 1 - self.best_epoch


def progress_verbosity():
    """Keras' progress bar on a terminal; one line per epoch in a log file or pipe."""
    return 1 if sys.stdout.isatty() else 2
