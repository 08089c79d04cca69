"""Word-level LSTM language model on Penn Treebank (Zaremba et al. 2014).

A TensorFlow 2 / Keras 3 reproduction of the TensorFlow tutorial
(tensorflow/models, tutorials/rnn/ptb): the same presets, initialisation, loss,
optimiser, learning-rate schedule and evaluation, so its table is the bar.

| preset | epochs | tutorial train / valid / test | this code: train / valid / test |
|--------|--------|-------------------------------|---------------------------------|
| small  | 13     | 37.99 / 121.39 / 115.91       | 40.67 / 119.56 / 114.01         |
| medium | 39     | 48.45 /  86.16 /  82.07       | not run (CPU only here)         |
| large  | 55     | 37.87 /  82.62 /  78.29       | not run (CPU only here)         |

(this code: 2-core AMD EPYC VM with AVX-512, 2026-11-22, `--model small`, 31 minutes;
details in docs/RESULTS.md)

Glossary (tutorial name -> field of `Config` where it differs):
  init_scale     weights start uniform in [-init_scale, init_scale]
  learning_rate  initial SGD learning rate
  max_grad_norm  gradients are clipped to this global norm
  num_layers     number of stacked LSTM layers
  num_steps      words per window: how far back gradients flow (truncated BPTT)
  hidden_size    LSTM units, also the word-embedding width
  max_epoch      -> epochs_at_full_lr: epochs trained at the initial learning rate
  max_max_epoch  -> epochs: epochs in all (the --epochs flag overrides it)
  keep_prob      probability of keeping a unit in dropout (1.0: no dropout)
  lr_decay       learning-rate factor applied per epoch after epochs_at_full_lr
  batch_size     parallel streams of text (rows of each window)
  vocab_size     words in the vocabulary

Get the data and run (downloads the data when --data_path is left out):
  wget http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz
  tar xvf simple-examples.tgz
  python -m ptb.ptb_word_lm --data_path=simple-examples/data/ --model small
"""

import dataclasses
import math
import os
import time

import common  # noqa: F401  (quiets TensorFlow's start-up logs; import first)
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from common import cli
from common import run as run_lib
from common import strategy as strategy_lib
from ptb import reader
from ptb.window_lstm import WindowLSTM


@dataclasses.dataclass(frozen=True)
class Config:
    init_scale: float = 0.1  # weights start uniform in [-init_scale, init_scale]
    learning_rate: float = 1.0  # plain SGD
    max_grad_norm: float = 5.0  # clip all gradients together to this global norm
    num_layers: int = 2
    num_steps: int = 20  # words per window (truncated backpropagation through time)
    hidden_size: int = 200  # LSTM units = embedding width
    epochs_at_full_lr: int = 4  # tutorial: max_epoch
    epochs: int = 13  # tutorial: max_max_epoch
    keep_prob: float = 1.0  # dropout keeps each unit with this probability
    lr_decay: float = 0.5  # learning rate *= lr_decay every epoch after epochs_at_full_lr
    batch_size: int = 20
    vocab_size: int = 10000


# The tutorial's four configurations; each says only what differs from `small`.
PRESETS = {
    "small": Config(),
    # Wider, longer windows, regularised with dropout, decayed more slowly.
    "medium": Config(init_scale=0.05, num_steps=35, hidden_size=650, epochs_at_full_lr=6,
                     epochs=39, keep_prob=0.5, lr_decay=0.8),
    # Wider still, with more dropout; needs larger gradient norms.
    "large": Config(init_scale=0.04, max_grad_norm=10.0, num_steps=35, hidden_size=1500,
                    epochs_at_full_lr=14, epochs=55, keep_prob=0.35, lr_decay=1 / 1.15),
    # A tiny model for checking that everything runs end to end.
    "test": Config(max_grad_norm=1.0, num_layers=1, num_steps=2, hidden_size=2,
                   epochs_at_full_lr=1, epochs=1),
}

# Test perplexity is computed as in the tutorial (batch 1, one continuous
# stream). Windows of this many words with the state carried between them give
# exactly the same number as the tutorial's one word at a time, much faster.
EVAL_WINDOW = 200


def learning_rate_for_epoch(config, epoch):
    """The tutorial's schedule; `epoch` counts from 0."""
    return config.learning_rate * config.lr_decay ** max(epoch + 1 - config.epochs_at_full_lr, 0)


def perplexity(loss_per_word):
    """exp of the mean loss per word (over a whole epoch, not a mean of per-batch exps)."""
    return math.exp(min(loss_per_word, 700.0))


# ----------------------------------------------------------------------------
# Data


def load_data(data_path, config):
    """Word ids of the three splits as windowed datasets, plus the raw test ids."""
    train_ids, valid_ids, test_ids, vocab_size = reader.ptb_raw_data(data_path)
    if vocab_size != config.vocab_size:
        raise cli.UserInputError(
            f"--data_path={data_path}: the training file has {vocab_size} distinct "
            f"words but the preset expects {config.vocab_size}; use the PTB files."
        )
    windows = lambda ids, name: reader.ptb_producer(  # noqa: E731
        ids, config.batch_size, config.num_steps, name=name)
    # Checks that the test split is long enough for its own (batch 1) windows.
    reader.ptb_producer(test_ids, 1, 1, name="ptb.test.txt")
    return (windows(train_ids, "ptb.train.txt").prefetch(tf.data.AUTOTUNE),
            windows(valid_ids, "ptb.valid.txt").prefetch(tf.data.AUTOTUNE),
            test_ids)


# ----------------------------------------------------------------------------
# Model


def cpu_only():
    """True when no GPU is visible: then the CPU-specific speed-ups apply.

    On a GPU the LSTM layers must stay on the cuDNN kernel: keras.layers.LSTM
    with its default arguments, not unrolled and not compiled with XLA (cuDNN
    ops are not XLA-compatible), so there the model is the plain Keras one.
    On a CPU, a profile of the training step found 240 of its 243 matrix
    products in the LSTM's small per-step ones, and hundreds of small
    element-wise operations, so: (1) `WindowLSTM` does the window's products at
    once, and (2) XLA compiles the training step and the batch-1 evaluation,
    fusing the small operations. Measurements: docs/RESULTS.md and
    `python -m ptb.benchmark --profile --variants`.
    """
    return not tf.config.list_logical_devices("GPU")


def build_model(config, batch_size=None, num_steps=None, window_lstm=False, seed=0):
    """The tutorial's network as a stateful Keras model that outputs logits.

    embedding -> dropout -> [LSTM -> dropout] x num_layers -> dense over the vocabulary

    The LSTM state is kept between calls (stateful=True), so consecutive windows
    of each stream continue where the previous one stopped; reset it with
    `reset_lstm_states`. `num_steps=None` accepts windows of any length.
    `window_lstm=True` uses the CPU-only `WindowLSTM` (same weights, same
    function, faster on a CPU; needs `num_steps`) instead of keras.layers.LSTM.
    """
    init = keras.initializers.RandomUniform(-config.init_scale, config.init_scale, seed=seed)
    dropout_rate = 1.0 - config.keep_prob
    words = keras.Input(shape=(num_steps,), batch_size=batch_size or config.batch_size,
                        dtype="int32", name="words")
    x = keras.layers.Embedding(config.vocab_size, config.hidden_size,
                               embeddings_initializer=init, name="embedding")(words)
    # A Dropout layer on [batch, time, units] draws a fresh mask for every time
    # step, as the tutorial does (LSTM(dropout=...) would reuse one mask).
    x = keras.layers.Dropout(dropout_rate, seed=seed + 1)(x)
    lstm = WindowLSTM if window_lstm else keras.layers.LSTM
    for layer in range(config.num_layers):
        x = lstm(
            config.hidden_size, return_sequences=True, stateful=True,
            kernel_initializer=init, recurrent_initializer=init,
            # The tutorial's BasicLSTMCell: zero biases, forget_bias=0.0.
            bias_initializer="zeros", unit_forget_bias=False,
            name=f"lstm_{layer}")(x)
        x = keras.layers.Dropout(dropout_rate, seed=seed + 2 + layer)(x)
    logits = keras.layers.Dense(config.vocab_size, kernel_initializer=init,
                                bias_initializer=init, name="softmax")(x)
    return keras.Model(words, logits, name="ptb_lstm")


def reset_lstm_states(model):
    """Zero the carried LSTM state (keras.Model has no reset_states in Keras 3)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.LSTM):
            layer.reset_state()


@keras.saving.register_keras_serializable(package="ptb")
def sequence_loss(targets, logits):
    """Cross-entropy summed over the window's time steps, per stream.

    Keras then averages over the batch, which gives the tutorial's loss
    (sequence_loss with average_across_timesteps=False). A per-word mean at the
    same learning rate would make every step num_steps times smaller: training
    is then that much slower and ends far above the tutorial's perplexities.
    """
    per_word = keras.losses.sparse_categorical_crossentropy(
        targets, keras.ops.cast(logits, "float32"), from_logits=True)
    return keras.ops.sum(per_word, axis=-1)


def compile_for_training(model, config, steps_per_execution=1, jit_compile=False):
    model.compile(
        # global_clipnorm is tf.clip_by_global_norm (clipnorm would clip each
        # variable on its own).
        optimizer=keras.optimizers.SGD(config.learning_rate, global_clipnorm=config.max_grad_norm),
        loss=sequence_loss,
        # Several windows per call of the compiled step: Keras' Python work
        # between calls dominates tiny models (it took the `test` preset from
        # ~6,000 to ~10,000 words/s here); for `small` see docs/RESULTS.md.
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,  # see cpu_only()
    )


def build_training_model(config, steps_per_execution=1, seed=0, replicas=1):
    """The trainer's compiled model; with the CPU speed-ups where they apply.

    Those (see cpu_only) were measured on one device only, so several replicas
    get the plain Keras model.
    """
    cpu_speedups = cpu_only() and replicas == 1
    model = build_model(config, num_steps=config.num_steps, window_lstm=cpu_speedups, seed=seed)
    compile_for_training(model, config, steps_per_execution=steps_per_execution,
                         jit_compile=cpu_speedups)
    return model


# ----------------------------------------------------------------------------
# Evaluation


def _summed_loss(model, inputs, targets):
    """Total loss of one batch-1 window."""
    return tf.reduce_sum(sequence_loss(targets, model(inputs, training=False)))


# Traced once per model and window length; XLA-compiled where it pays (CPU).
_SUMMED_LOSS = {jit: tf.function(_summed_loss, jit_compile=jit, reduce_retracing=True)
                for jit in (False, True)}


def evaluate_stream(model, ids, window=EVAL_WINDOW):
    """Perplexity of a batch-1 `model` over `ids`, read as one continuous stream.

    Every word after the first is predicted from everything before it, exactly
    as the tutorial's batch_size=1, num_steps=1 evaluation; the state carried
    from window to window makes longer windows give the same number.
    """
    summed_loss = _SUMMED_LOSS[cpu_only()]
    reset_lstm_states(model)
    ids = np.asarray(ids, dtype=np.int32)
    total_loss = 0.0
    for start in range(0, len(ids) - 1, window):
        stop = min(start + window, len(ids) - 1)
        total_loss += float(summed_loss(model, ids[None, start:stop], ids[None, start + 1:stop + 1]))
    reset_lstm_states(model)
    return perplexity(total_loss / (len(ids) - 1))


class ProgressLogger(keras.callbacks.Callback):
    """Prints the tutorial's progress line after every compiled call of the step.

    The training script makes that about ten times an epoch (steps_per_execution).
    """

    def __init__(self, epoch, num_windows, config, learning_rate):
        super().__init__()
        self.epoch, self.num_windows, self.learning_rate = epoch, num_windows, learning_rate
        self.num_steps = config.num_steps
        self.words_per_window = config.batch_size * config.num_steps

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        done = min(batch + 1, self.num_windows)  # the last call may run short
        loss_per_word = float(logs["loss"]) / self.num_steps
        words_per_second = done * self.words_per_window / (time.perf_counter() - self.start)
        print(f"| epoch {self.epoch + 1:3d} | {done:5d}/{self.num_windows} windows "
              f"| lr {self.learning_rate:.3f} | ppl {perplexity(loss_per_word):9.2f} "
              f"| {words_per_second:6.0f} words/s |", flush=True)


# ----------------------------------------------------------------------------
# Training


def train_and_evaluate(config, data_path, strategy=None, save_path=None, seed=0,
                       steps_per_epoch=None, restart=False):
    """Trains `config` on PTB, printing per-epoch perplexities, and returns metrics.

    With `save_path` (the run folder, see common/run.py) the training state is
    saved after every epoch, and calling again with the same settings resumes
    after the last completed epoch; the final batch-1 model is `model.keras`.

    Returns a dict with `history` (one dict per epoch: epoch, learning_rate,
    train_perplexity, valid_perplexity, seconds, words_per_second) and
    `test_perplexity`.
    """
    strategy = strategy or tf.distribute.get_strategy()
    settings = dict(dataclasses.asdict(config), seed=seed, steps_per_epoch=steps_per_epoch,
                    data_path=run_lib.data_setting(data_path))
    run = run_lib.open_run(save_path, "ptb", settings, restart)
    keras.utils.set_random_seed(seed)
    train_data, valid_data, test_ids = load_data(data_path, config)
    num_windows = int(train_data.cardinality())
    if steps_per_epoch:
        num_windows = min(num_windows, steps_per_epoch)
        train_data = train_data.take(num_windows)
    words_per_window = config.batch_size * config.num_steps

    with strategy.scope():
        model = build_training_model(config, steps_per_execution=-(-num_windows // 10),
                                     seed=seed, replicas=strategy.num_replicas_in_sync)
        model.optimizer.build(model.trainable_variables)
    print(f"Model {model.count_params():,} parameters; "
          f"{strategy.num_replicas_in_sync} replica(s) in sync.")
    state = run_lib.TrainingState(run, model)
    epochs_done, history = run_lib.resume(run, state)

    for epoch in range(epochs_done, config.epochs):
        learning_rate = learning_rate_for_epoch(config, epoch)
        model.optimizer.learning_rate.assign(learning_rate)
        print(f"Epoch {epoch + 1}: learning rate {learning_rate:.3f}")

        reset_lstm_states(model)  # each epoch starts from a zero state
        start = time.perf_counter()
        fit = model.fit(train_data, epochs=1, verbose=0, shuffle=False, callbacks=[
            ProgressLogger(epoch, num_windows, config, learning_rate)])
        seconds = time.perf_counter() - start
        train_loss = fit.history["loss"][-1] / config.num_steps

        reset_lstm_states(model)  # validation starts from a zero state too
        valid_loss = model.evaluate(valid_data, verbose=0) / config.num_steps
        history.append(dict(
            epoch=epoch + 1, learning_rate=learning_rate,
            train_perplexity=perplexity(train_loss), valid_perplexity=perplexity(valid_loss),
            seconds=seconds, words_per_second=num_windows * words_per_window / seconds))
        print(f"Epoch {epoch + 1}: train perplexity {history[-1]['train_perplexity']:.2f}, "
              f"valid perplexity {history[-1]['valid_perplexity']:.2f}", flush=True)
        if run:
            # metrics.json first: after a crash between the two writes, resuming
            # keeps only the epochs that the latest complete checkpoint holds.
            run.write_metrics(history)
        state.save(epoch + 1)

    start = time.perf_counter()
    eval_model = build_eval_model(config, model)
    test_perplexity = evaluate_stream(eval_model, test_ids)
    test_seconds = time.perf_counter() - start
    print(f"Test perplexity: {test_perplexity:.2f} "
          f"({len(test_ids) - 1:,} words in {test_seconds:.1f} s)")
    metrics = dict(history=history, test_perplexity=test_perplexity)
    if run:
        run_lib.save_model(eval_model, run.file("model.keras"))
        run.write_metrics(history, test_perplexity=test_perplexity, test_seconds=test_seconds,
                          training_seconds=sum(epoch["seconds"] for epoch in history))
    return metrics


def build_eval_model(config, trained_model):
    """A batch-1 copy of `trained_model` that reads windows of any length."""
    model = build_model(config, batch_size=1, num_steps=None)
    model.set_weights(trained_model.get_weights())
    return model


def load_trained_model(save_path):
    """The batch-1 evaluation model that a finished run saved in its folder."""
    path = os.path.join(save_path, "model.keras")
    if not os.path.isfile(path):
        raise cli.UserInputError(f"--save_path={save_path}: no model.keras there; train "
                                 "with python -m ptb.ptb_word_lm --save_path first.")
    return keras.saving.load_model(path)


# ----------------------------------------------------------------------------
# Command line

FLAGS = flags.FLAGS


def define_flags():
    """Defined on demand, so that importing this module defines no flags."""
    cli.define_run_flags(
        data_path_help="Folder with ptb.{train,valid,test}.txt; downloaded into the Keras "
                       "cache when left out.",
        default_run_folder="runs/ptb/<model>", epochs_default=None,
        epochs_help="Epochs in all; overrides the preset's (the tutorial's max_max_epoch).")
    flags.adopt_module_key_flags(cli)  # so that --help lists the shared flags too
    flags.DEFINE_enum("model", "small", list(PRESETS), "Which preset to train.")
    flags.DEFINE_integer("steps_per_epoch", None, "Train only this many windows per epoch "
                         "(for quick looks; the perplexities are then not the tutorial's).")


def main(argv):
    del argv  # cli.run refuses stray arguments
    cli.check_at_least("epochs", 1)
    cli.check_at_least("steps_per_epoch", 1)
    config = PRESETS[FLAGS.model]
    if FLAGS.epochs is not None:
        config = dataclasses.replace(config, epochs=FLAGS.epochs)
    strategy = strategy_lib.get_strategy(num_gpus=FLAGS.num_gpus)
    save_path = FLAGS.save_path or os.path.join("runs", "ptb", FLAGS.model)
    train_and_evaluate(config, FLAGS.data_path, strategy, save_path=save_path,
                       seed=FLAGS.seed, steps_per_epoch=FLAGS.steps_per_epoch,
                       restart=FLAGS.restart)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
