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
again on an AVX2-only EPYC, 2026-11-23: 40.88 / 119.26 / 113.83 in 46 minutes;
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

--rnn_cell gru or simple_rnn trains the same recipe with another recurrent
layer (docs/RESULTS.md compares the three). A run folder (--save_path) is then
a tool: python -m ptb.score, ptb.generate and ptb.next_word read it.

On several GPUs or machines the same command splits each window's 20 streams
among the replicas, and each replica carries its own streams' LSTM state
(`make_steps`; README, Scaling up).
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
from common import data as common_data
from common import run as run_lib
from common import strategy as strategy_lib
from common import training
from common.layers import ReplicaDropout
from ptb import reader
from ptb import report
from ptb.bias_row_dense import BiasRowDense
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
    rnn_cell: str = "lstm"  # the recurrent layer: lstm (the tutorial's), gru or simple_rnn


# The recurrent layers --rnn_cell chooses from, and the state each carries per layer.
RNN_CELLS = {
    "lstm": ("h", "c"),
    "gru": ("h",),
    "simple_rnn": ("h",),
}


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

# In the run folder beside model.keras: the words in id order.
VOCABULARY = "vocabulary.json"


def learning_rate_for_epoch(config, epoch):
    """The tutorial's schedule; `epoch` counts from 0."""
    return config.learning_rate * config.lr_decay ** max(epoch + 1 - config.epochs_at_full_lr, 0)


def perplexity(loss_per_word):
    """exp of the mean loss per word (over a whole epoch, not a mean of per-batch exps)."""
    return math.exp(min(loss_per_word, 700.0))


# ----------------------------------------------------------------------------
# Data


def load_data(data_path, config):
    """Word ids of the three splits as windowed datasets, the raw test ids, and the
    vocabulary (the words in id order)."""
    if data_path is None:
        data_path = reader.download_ptb()
    train_ids, valid_ids, test_ids, vocab_size = reader.ptb_raw_data(data_path)
    if vocab_size != config.vocab_size:
        raise cli.UserInputError(
            f"--data_path={data_path}: the training file has {vocab_size} distinct "
            f"words but the preset expects {config.vocab_size}; use the PTB files."
        )
    # Checks that the test split is long enough for its own (batch 1) windows.
    reader.ptb_producer(test_ids, 1, 1, name="ptb.test.txt")
    _, words = reader.ptb_vocabulary(data_path)
    return (window_dataset(train_ids, config, "ptb.train.txt"),
            window_dataset(valid_ids, config, "ptb.valid.txt"),
            test_ids, words)


def window_dataset(ids, config, name="data"):
    """The preset's windows of `ids` (reader.ptb_producer), one epoch, the next
    window prepared while a step runs."""
    windows = reader.ptb_producer(ids, config.batch_size, config.num_steps, name=name)
    return common_data.without_autotune(windows.prefetch(tf.data.AUTOTUNE))


# ----------------------------------------------------------------------------
# Model


def cpu_only():
    """True when no GPU is visible: then the CPU-specific speed-ups apply.

    On a GPU the LSTM layers must stay on the cuDNN kernel: keras.layers.LSTM
    with its default arguments, not unrolled and not compiled with XLA (cuDNN
    ops are not XLA-compatible), so there the model is the plain Keras one.
    On a CPU, a profile of the training step found 240 of its 243 matrix
    products in the LSTM's small per-step ones, and hundreds of small
    element-wise operations, so: (1) `WindowLSTM` writes the recurrence out
    for XLA, with the weights' gradients in one product per window and two
    layers' steps side by side on two cores, (2) XLA compiles the training
    step and the batch-1 evaluation, fusing the small operations, (3)
    `BiasRowDense`, the output layer, spares XLA's code two passes over the
    logits, and (4) `sgd_update` rewrites only the embedding rows of the
    window's words, with the clipping norm's sums of squares in one fused pass
    each. Measurements:
    docs/RESULTS.md and `python -m ptb.benchmark --profile --variants`.
    """
    return not tf.config.list_logical_devices("GPU")


def build_model(config, num_steps=None, cpu_layers=False, seed=0):
    """The tutorial's network as a Keras model that takes the LSTM state in and gives it back.

        [words, state] -> embedding -> dropout -> [LSTM -> dropout] x num_layers
                       -> dense over the vocabulary -> [logits, final state]

    `state` is a list of tensors [batch, hidden_size], each layer's in turn:
    h and c for an LSTM, h for a GRU or a simple RNN (`config.rnn_cell`;
    `zero_state` makes a fresh one). The training loop
    carries the final state of one window into the next, as the tutorial fed
    `final_state` back through its `feed_dict`; nothing is kept inside the
    model, so one model serves any batch size and any number of replicas.
    `num_steps=None` accepts windows of any length. `cpu_layers=True` uses the
    CPU-only layers (same weights, same function, faster on a CPU):
    `WindowLSTM` for keras.layers.LSTM (LSTMs only; needs `num_steps`) and
    `BiasRowDense` for the output layer's keras.layers.Dense.

    Every cell keeps Keras' defaults where they select cuDNN on a GPU (LSTM
    and GRU; Keras has no cuDNN path for SimpleRNN).
    """
    if config.rnn_cell not in RNN_CELLS:
        raise ValueError(f"rnn_cell={config.rnn_cell!r}: choose one of {', '.join(RNN_CELLS)}.")
    init = keras.initializers.RandomUniform(-config.init_scale, config.init_scale, seed=seed)
    dropout_rate = 1.0 - config.keep_prob
    state_parts = RNN_CELLS[config.rnn_cell]
    words = keras.Input(shape=(num_steps,), dtype="int32", name="words")
    state = [keras.Input(shape=(config.hidden_size,), name=f"{config.rnn_cell}_{layer}_{part}")
             for layer in range(config.num_layers) for part in state_parts]
    x = keras.layers.Embedding(config.vocab_size, config.hidden_size,
                               embeddings_initializer=init, name="embedding")(words)
    # A Dropout layer on [batch, time, units] draws a fresh mask for every time
    # step, as the tutorial does (LSTM(dropout=...) would reuse one mask); the
    # replicas draw masks of their own (common/layers.py).
    x = ReplicaDropout(dropout_rate, seed=seed + 1)(x)
    final_state = []
    for layer in range(config.num_layers):
        layer_state = state[len(state_parts) * layer:len(state_parts) * (layer + 1)]
        x, *layer_state = recurrent_layer(config, layer, init, cpu_layers)(
            x, initial_state=layer_state)
        final_state += layer_state
        x = ReplicaDropout(dropout_rate, seed=seed + 2 + layer)(x)
    # float32 even under --mixed_precision: the softmax over 10,000 words needs its range.
    output_layer = BiasRowDense if cpu_layers else keras.layers.Dense
    logits = output_layer(config.vocab_size, kernel_initializer=init, bias_initializer=init,
                          dtype="float32", name="softmax")(x)
    return keras.Model([words, *state], [logits, *final_state], name=f"ptb_{config.rnn_cell}")


def recurrent_layer(config, layer, init, cpu_layers=False):
    """Layer `layer` of the stack, of the kind `config.rnn_cell` names."""
    common_args = dict(units=config.hidden_size, return_sequences=True, return_state=True,
                       kernel_initializer=init, recurrent_initializer=init,
                       # The tutorial's BasicLSTMCell starts its biases at zero.
                       bias_initializer="zeros", name=f"{config.rnn_cell}_{layer}")
    if config.rnn_cell == "lstm":
        lstm = WindowLSTM if cpu_layers else keras.layers.LSTM
        return lstm(unit_forget_bias=False, **common_args)  # the tutorial: forget_bias=0.0
    if config.rnn_cell == "gru":
        return keras.layers.GRU(**common_args)
    return keras.layers.SimpleRNN(**common_args)


def zero_state(config, batch_size):
    """The state every epoch (and the test stream) starts from."""
    state_size = len(RNN_CELLS[config.rnn_cell]) * config.num_layers
    return [tf.zeros([batch_size, config.hidden_size]) for _ in range(state_size)]


@keras.saving.register_keras_serializable(package="ptb")
def sequence_loss(targets, logits):
    """Cross-entropy summed over the window's time steps, per stream.

    The mean of this over the batch is the tutorial's loss (sequence_loss with
    average_across_timesteps=False). A per-word mean at the same learning rate
    would make every step num_steps times smaller: training is then that much
    slower and ends far above the tutorial's perplexities.
    """
    return keras.ops.sum(word_losses(targets, logits), axis=-1)


def word_losses(targets, logits):
    """-log softmax(logits)[target] of every word: sparse softmax cross-entropy."""
    # float32 even under --mixed_precision: the softmax over 10,000 words needs its range.
    return _word_losses(tf.cast(targets, tf.int32), tf.cast(logits, tf.float32))


@tf.custom_gradient
def _word_losses(targets, logits):
    # The gradient, softmax - one_hot(target), written out so that it takes one
    # pass over the [words x vocabulary] logits, in the backward pass.
    # TensorFlow's kernel writes it out in the forward pass and the backward
    # pass then scales it: two more passes over 16 MB for `small`. The output
    # layer and loss, forward and backward under XLA: 43.7 ms with that kernel,
    # 39.0 ms with this (AMD EPYC Zen 3, 2026-11-23; docs/RESULTS.md).
    log_normaliser = tf.reduce_logsumexp(logits, axis=-1)
    target_logits = tf.gather(logits, targets, axis=-1, batch_dims=targets.shape.rank)

    def gradient(upstream):
        softmax = tf.exp(logits - log_normaliser[..., None])
        one_hot = tf.one_hot(targets, tf.shape(logits)[-1], dtype=logits.dtype)
        return None, (softmax - one_hot) * upstream[..., None]

    return log_normaliser - target_logits, gradient


def uses_cpu_speedups(strategy, config):
    """The CPU layers and step (see cpu_only) on one CPU replica, for the LSTM only.

    With several replicas the step reads variables mirrored on other devices,
    which XLA cannot reach. Keras' GRU and SimpleRNN run their time steps as a
    while loop, which XLA made slower here (docs/RESULTS.md), and WindowLSTM
    is an LSTM. Everywhere else the model is the plain Keras one.
    """
    return cpu_only() and strategy.num_replicas_in_sync == 1 and config.rnn_cell == "lstm"


def build_training_model(config, strategy, seed=0):
    """The trainer's model with its optimizer; call inside `strategy.scope()`.

    Plain SGD with the tutorial's clipping of the whole batch's gradient to one
    global norm (training.apply_gradients explains the division).
    """
    model = build_model(config, num_steps=config.num_steps,
                        cpu_layers=uses_cpu_speedups(strategy, config), seed=seed)
    compile_for_training(model, config)
    return model


def compile_for_training(model, config):
    """Plain SGD, clipping the whole batch's gradient; call inside `strategy.scope()`."""
    model.compile(optimizer=keras.optimizers.SGD(
        config.learning_rate, global_clipnorm=training.global_clipnorm(config.max_grad_norm)))


# ----------------------------------------------------------------------------
# Training and evaluation steps


def make_steps(model, config, strategy, cpu_step=None):
    """The compiled training and validation steps for one window.

        loss, state = train_step(inputs, targets, state)

    `inputs` and `targets` are the whole window [batch_size, num_steps];
    `state` is what the previous call returned (`initial_state` at an epoch's
    start); `loss` is the window's loss summed over time steps and averaged
    over the batch, as the tutorial's `cost`.

    With several replicas each one trains on its own block of the window's rows
    (streams), always the same block: replica r takes rows r*n .. r*n + n - 1
    of every window (n = batch_size / replicas), so the state it returns, and
    gets back with the next window, belongs to the streams it reads. The state
    lives on the replicas (a PerReplica value); each replica's gradient joins
    the others' before the update (training.apply_gradients).

    cpu_step: compile the step with XLA and update the embedding sparsely
    (`sgd_update`), or not; None decides by `uses_cpu_speedups`.
    """
    if cpu_step is None:
        cpu_step = uses_cpu_speedups(strategy, config)
    rows_per_replica = config.batch_size // strategy.num_replicas_in_sync

    def replica_rows(window):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return window[replica * rows_per_replica:(replica + 1) * rows_per_replica]

    def replica_loss(inputs, targets, state, training):
        logits, *state = model([replica_rows(inputs), *state], training=training)
        return tf.reduce_sum(sequence_loss(replica_rows(targets), logits)) / config.batch_size, state

    def replica_train_step(inputs, targets, state):
        optimizer = model.optimizer
        with tf.GradientTape() as tape:
            loss, state = replica_loss(inputs, targets, state, training=True)
            scaled_loss = optimizer.scale_loss(loss)  # loss scaling under mixed_float16
        variables = model.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        if cpu_step:
            sgd_update(optimizer, gradients, variables)
        else:
            training.apply_gradients(optimizer, gradients, variables)
        return loss, state

    def replica_eval_step(inputs, targets, state):
        return replica_loss(inputs, targets, state, training=False)

    def distributed(replica_step):
        replica_step = tf.function(replica_step, jit_compile=cpu_step)

        @tf.function
        def step(inputs, targets, state):
            loss, state = strategy.run(replica_step, args=(inputs, targets, state))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None), state
        return step

    replica_zero_state = tf.function(lambda: zero_state(config, rows_per_replica))

    def initial_state():
        return strategy.run(replica_zero_state)

    return distributed(replica_train_step), distributed(replica_eval_step), initial_state


def sgd_update(optimizer, gradients, variables):
    """The tutorial's update on one device: SGD on the whole gradient clipped to
    one global norm, rewriting only the embedding rows of the window's words.

    The embedding's gradient arrives as one row per word of the window
    (tf.IndexedSlices). Keras' SGD makes it a dense [10,000 x 200] tensor, twice
    (for the clipping and for the update), and rewrites every row; the
    tutorial's TF1 optimizer updated only those rows, as here. The norm is the
    one Keras and TF1's clip_by_global_norm take: over the rows as they come (a
    word that occurs twice contributes two rows, not their sum), clipped at the
    optimizer's `global_clipnorm`. The result is the optimizer's own `apply` to
    float32 rounding (test_sgd_update_is_keras_sgd_with_global_clipnorm). The
    `small` training step, AVX-512 EPYC, 2026-11-25: 44.3 ms best and 47.6
    median against 46.0 and 47.7 with Keras' update (docs/RESULTS.md).
    """
    clip_norm = optimizer.global_clipnorm
    norm = global_norm(gradients)
    # Keras' clipping: a scale of 1 below the norm; NaN (no update) if it is not finite.
    scale = clip_norm * tf.minimum(1.0 / norm, 1.0 / clip_norm) + (norm - norm)
    step_size = tf.cast(optimizer.learning_rate, tf.float32) * scale
    for gradient, variable in zip(gradients, variables):
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.IndexedSlices(gradient.values * step_size, gradient.indices,
                                        gradient.dense_shape)
        else:
            gradient = gradient * step_size
        optimizer.assign_sub(variable, gradient)  # a scatter for IndexedSlices
    optimizer.iterations.assign_add(1)


def global_norm(gradients):
    """tf.linalg.global_norm over the gradients, an IndexedSlices' rows as they come."""
    return tf.sqrt(tf.add_n([
        sum_of_squares(g.values if isinstance(g, tf.IndexedSlices) else g) for g in gradients]))


def sum_of_squares(tensor):
    """tf.reduce_sum(tf.square(tensor)), adding the halves of its rows first.

    XLA on the CPU makes a sum over the output layer's [200 x 10,000] gradient a
    reduce-window, alone 1.37 ms a call; halving the rows to at most 8 is one
    fused pass, and the call took 0.34 ms (AVX-512 EPYC, 2026-11-25;
    docs/RESULTS.md). It is a pairwise sum, as accurate as the plain one.
    """
    squares = tf.square(tensor)
    # A scalar, or rows unknown when traced (0 here): the plain sum.
    while squares.shape.rank and (squares.shape[0] or 0) > 8:
        half = squares.shape[0] // 2
        # An odd row count keeps its last row aside.
        squares = tf.concat([squares[:half] + squares[half:2 * half], squares[2 * half:]], 0)
    return tf.reduce_sum(squares)


def run_epoch(step, initial_state, windows, config, progress=None):
    """Runs `step` over every window of an epoch; returns the loss per word.

    The tutorial's run_epoch: the state starts at zero and each window's final
    state is the next window's initial state. `progress(windows_done, loss_per_word)`
    is called about ten times.
    """
    state = initial_state()
    total_loss, num_windows = 0.0, int(windows.cardinality())
    report_every = max(num_windows // 10, 1)
    for window, (inputs, targets) in enumerate(windows):
        loss, state = step(inputs, targets, state)
        total_loss += loss
        if progress and (window + 1) % report_every == 0:
            progress(window + 1, float(total_loss) / ((window + 1) * config.num_steps))
    return float(total_loss) / (num_windows * config.num_steps)


# ----------------------------------------------------------------------------
# Evaluation


def _log_probs(model, inputs, targets, state):
    """log p(target) of every word of a window, and the state after it."""
    logits, *state = model([inputs, *state], training=False)
    return -word_losses(targets, logits), state


# Traced once per model and window shape; XLA-compiled where it pays (CPU, LSTM).
LOG_PROBS = {jit: tf.function(_log_probs, jit_compile=jit, reduce_retracing=True)
             for jit in (False, True)}


def stream_log_probs(model, config, ids, window=EVAL_WINDOW, jit_compile=None):
    """log p(ids[i + 1] | ids[0..i]) for every i: `ids` read as one continuous stream.

    The state starts at zero and is carried from window to window, so every
    word after the first is predicted from everything before it, exactly as
    the tutorial's batch_size=1, num_steps=1 evaluation; longer windows give
    the same numbers, faster. Runs on this process's first device, outside any
    strategy. Returns a float64 numpy array of len(ids) - 1. jit_compile: XLA
    or not; None decides by `uses_cpu_speedups`.
    """
    if jit_compile is None:
        jit_compile = uses_cpu_speedups(tf.distribute.get_strategy(), config)
    log_probs = LOG_PROBS[jit_compile]
    ids = np.asarray(ids, dtype=np.int32)
    state = zero_state(config, 1)
    pieces = []
    for start in range(0, len(ids) - 1, window):
        stop = min(start + window, len(ids) - 1)
        piece, state = log_probs(model, ids[None, start:stop], ids[None, start + 1:stop + 1],
                                 state)
        pieces.append(piece.numpy()[0])
    return np.concatenate(pieces).astype(np.float64)


def evaluate_stream(model, config, ids, window=EVAL_WINDOW):
    """Perplexity of `model` over `ids` read as one stream (`stream_log_probs`):
    the tutorial's test perplexity."""
    return perplexity(-stream_log_probs(model, config, ids, window).mean())


def print_progress(epoch, num_windows, config, learning_rate):
    """The tutorial's progress line, as a `run_epoch` progress callback."""
    start = time.perf_counter()
    words_per_window = config.batch_size * config.num_steps

    def progress(windows_done, loss_per_word):
        words_per_second = windows_done * words_per_window / (time.perf_counter() - start)
        print(f"| epoch {epoch + 1:3d} | {windows_done:5d}/{num_windows} windows "
              f"| lr {learning_rate:.3f} | ppl {perplexity(loss_per_word):9.2f} "
              f"| {words_per_second:6.0f} words/s |", flush=True)
    return progress


# ----------------------------------------------------------------------------
# Training


def train_and_evaluate(config, data_path, strategy=None, save_path=None, seed=0,
                       steps_per_epoch=None, restart=False):
    """Trains `config` on PTB, printing per-epoch perplexities, and returns metrics.

    With `save_path` (the run folder, see common/run.py) the training state is
    saved after every epoch, and calling again with the same settings resumes
    after the last completed epoch; the final model is `model.keras`.
    Any strategy: batch_size is global, split by rows among the replicas.

    Returns a dict with `history` (one dict per epoch: epoch, learning_rate,
    train_perplexity, valid_perplexity, seconds, words_per_second) and
    `test_perplexity`.
    """
    strategy = strategy or tf.distribute.get_strategy()
    # Every replica must get the same number of streams, each with its own state.
    training.check_global_batch(config.batch_size, strategy, flag="--model")
    settings = dict(dataclasses.asdict(config), seed=seed, steps_per_epoch=steps_per_epoch,
                    data_path=run_lib.data_setting(data_path))
    run = run_lib.open_run(save_path, "ptb", settings, restart, strategy)
    keras.utils.set_random_seed(seed)
    train_data, valid_data, test_ids, words = load_data(data_path, config)
    if steps_per_epoch:
        train_data = train_data.take(steps_per_epoch)
    num_windows = int(train_data.cardinality())
    words_per_window = config.batch_size * config.num_steps

    with strategy.scope():
        model = build_training_model(config, strategy, seed=seed)
        model.optimizer.build(model.trainable_variables)
    print(f"Model {model.count_params():,} parameters; "
          f"{strategy.num_replicas_in_sync} replica(s) in sync.")
    train_step, eval_step, initial_state = make_steps(model, config, strategy)
    state = run_lib.TrainingState(run, model)
    epochs_done, history = run_lib.resume(run, state)
    tensorboard = run_lib.tensorboard(run)  # the curves, as Keras' fit would write them
    if tensorboard:
        tensorboard.set_model(model)
        tensorboard.on_train_begin()

    for epoch in range(epochs_done, config.epochs):
        learning_rate = learning_rate_for_epoch(config, epoch)
        model.optimizer.learning_rate.assign(learning_rate)
        print(f"Epoch {epoch + 1}: learning rate {learning_rate:.3f}")

        start = time.perf_counter()
        train_loss = run_epoch(train_step, initial_state, train_data, config,
                               print_progress(epoch, num_windows, config, learning_rate))
        seconds = time.perf_counter() - start
        valid_loss = run_epoch(eval_step, initial_state, valid_data, config)
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
            report.plot_perplexity(history, run.file("perplexity.png"), title=run_title(config))
            tensorboard.on_epoch_end(epoch, dict(
                loss=train_loss, perplexity=history[-1]["train_perplexity"],
                val_loss=valid_loss, val_perplexity=history[-1]["valid_perplexity"],
                words_per_second=history[-1]["words_per_second"]))
        state.save(epoch + 1)
    if tensorboard:
        tensorboard.on_train_end()

    start = time.perf_counter()
    eval_model = build_eval_model(config, model)
    test_perplexity = evaluate_stream(eval_model, config, test_ids)
    test_seconds = time.perf_counter() - start
    print(f"Test perplexity: {test_perplexity:.2f} "
          f"({len(test_ids) - 1:,} words in {test_seconds:.1f} s)")
    metrics = dict(history=history, test_perplexity=test_perplexity)
    if run:
        run_lib.save_model(eval_model, run.file("model.keras"))
        run_lib.write_json(run.file(VOCABULARY), words)  # for ptb.score, generate, next_word
        run_lib.log_test_metrics(run, len(history), dict(test_perplexity=test_perplexity))
        report.plot_perplexity(history, run.file("perplexity.png"), title=(
            f"{run_title(config)}; test perplexity {test_perplexity:.2f}"))
        run.write_metrics(history, test_perplexity=test_perplexity, test_seconds=test_seconds,
                          training_seconds=sum(epoch["seconds"] for epoch in history))
    return metrics


def run_title(config):
    return f"PTB {config.rnn_cell}, {config.num_layers} x {config.hidden_size} units"


def build_eval_model(config, trained_model):
    """A copy of `trained_model` for any window length, outside any strategy (the
    batch-1 test stream runs on one device)."""
    model = build_model(config, num_steps=None)
    model.set_weights(trained_model.get_weights())
    return model


def load_trained_model(save_path):
    """The evaluation model that a finished run saved in its folder, and its Config."""
    path = os.path.join(save_path, "model.keras")
    settings = run_lib.saved_settings(save_path, "ptb") if os.path.isdir(save_path) else None
    if settings is None or not os.path.isfile(path):
        raise cli.UserInputError(f"--save_path={save_path}: no model.keras there; train "
                                 "with python -m ptb.ptb_word_lm --save_path first.")
    # Runs from before --rnn_cell existed lack that field: theirs is the default.
    config = Config(**{field.name: settings[field.name] for field in dataclasses.fields(Config)
                       if field.name in settings})
    try:
        model = keras.saving.load_model(path)
    except Exception as error:  # Keras raises many types for a broken archive
        raise cli.UserInputError(f"{path}: not a loadable Keras model ({type(error).__name__}); "
                                 "train again with --restart")
    return model, config


# ----------------------------------------------------------------------------
# Command line

FLAGS = flags.FLAGS


def define_flags():
    """Defined on demand, so that importing this module defines no flags."""
    cli.define_run_flags(
        data_path_help="Folder with ptb.{train,valid,test}.txt; downloaded into the Keras "
                       "cache when left out.",
        default_run_folder="runs/ptb/<model>[_<rnn_cell>]", epochs_default=None,
        epochs_help="Epochs in all; overrides the preset's (the tutorial's max_max_epoch).")
    flags.adopt_module_key_flags(cli)  # so that --help lists the shared flags too
    flags.DEFINE_enum("model", "small", list(PRESETS), "Which preset to train.")
    flags.DEFINE_enum("rnn_cell", "lstm", list(RNN_CELLS), "The recurrent layer; the "
                      "presets are the tutorial's LSTM ones, their other settings kept.")
    flags.DEFINE_float("learning_rate", None, "Initial SGD learning rate; overrides the "
                       "preset's (the tutorial's learning_rate).")
    flags.DEFINE_integer("steps_per_epoch", None, "Train only this many windows per epoch "
                         "(for quick looks; the perplexities are then not the tutorial's).")


def main(argv):
    del argv  # cli.run refuses stray arguments
    cli.check_at_least("epochs", 1)
    cli.check_at_least("steps_per_epoch", 1)
    config = PRESETS[FLAGS.model]
    if FLAGS.epochs is not None:
        config = dataclasses.replace(config, epochs=FLAGS.epochs)
    if FLAGS.learning_rate is not None:
        if not FLAGS.learning_rate > 0:
            raise cli.UserInputError(f"--learning_rate={FLAGS.learning_rate}: must be above 0")
        config = dataclasses.replace(config, learning_rate=FLAGS.learning_rate)
    config = dataclasses.replace(config, rnn_cell=FLAGS.rnn_cell)
    strategy = strategy_lib.get_strategy(num_gpus=FLAGS.num_gpus)
    training.use_mixed_precision(FLAGS.mixed_precision)
    run_name = FLAGS.model if FLAGS.rnn_cell == "lstm" else f"{FLAGS.model}_{FLAGS.rnn_cell}"
    save_path = FLAGS.save_path or os.path.join("runs", "ptb", run_name)
    train_and_evaluate(config, FLAGS.data_path, strategy, save_path=save_path,
                       seed=FLAGS.seed, steps_per_epoch=FLAGS.steps_per_epoch,
                       restart=FLAGS.restart)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
