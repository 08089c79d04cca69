"""Word-level LSTM language model on Penn Treebank (Zaremba et al. 2014).

A TensorFlow 2 / Keras 3 reproduction of the TensorFlow tutorial
(tensorflow/models, tutorials/rnn/ptb): the same presets, initialisation, loss,
optimiser, learning-rate schedule and evaluation, so its table is the bar:

| preset | epochs | train perplexity | valid perplexity | test perplexity |
|--------|--------|------------------|------------------|-----------------|
| small  | 13     | 37.99            | 121.39           | 115.91          |
| medium | 39     | 48.45            |  86.16           |  82.07          |
| large  | 55     | 37.87            |  82.62           |  78.29          |

This package's figures, with their commands, are in docs/results.md. The presets
are the tutorial's, field for field; `Config` gives each field's meaning and the
tutorial's name where it differs.

Get the data and run (downloads the data when --data_path is left out):
  wget http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz
  tar xvf simple-examples.tgz
  python -m ptb.ptb_word_lm --data_path=simple-examples/data/ --model small

Any word-level corpus in PTB's, PyTorch's or WikiText's file names trains the
same way (reader.py). The steps are computed by ptb/engine.py, as fast as the
machine allows; the run folder (common/run_folder.py) makes a run resumable.
"""

import dataclasses
import functools
import math
import time

import common  # noqa: F401  (quiets TensorFlow's start-up logs; import first)
from absl import flags
import keras
import tensorflow as tf

from common import cli
from common import run_folder
from common import strategy as strategy_lib
from common import training
from common.layers import ReplicaDropout
from ptb import engine
from ptb import reader
from ptb import record
from ptb.tied_embedding import TiedEmbedding


@dataclasses.dataclass(frozen=True)
class Config:
    init_scale: float = 0.1  # weights start uniform in [-init_scale, init_scale]
    learning_rate: float = 1.0  # plain SGD
    max_grad_norm: float = 5.0  # clip all gradients together to this global norm
    num_layers: int = 2  # stacked LSTM layers
    num_steps: int = 20  # words per window (truncated backpropagation through time)
    hidden_size: int = 200  # LSTM units = embedding width
    epochs_at_full_lr: int = 4  # tutorial: max_epoch
    epochs: int = 13  # tutorial: max_max_epoch
    keep_prob: float = 1.0  # dropout keeps each unit with this probability
    lr_decay: float = 0.5  # learning rate *= lr_decay every epoch after epochs_at_full_lr
    batch_size: int = 20  # parallel streams of text: the rows of every window
    vocab_size: int = 10000  # PTB's; a run takes the size of its corpus's vocabulary
    rnn_cell: str = "lstm"  # the recurrent layer: lstm (the tutorial's), gru or simple_rnn
    tied: bool = False  # the output layer shares the embedding's matrix (not the tutorial's)


# The recurrent layers --rnn_cell chooses from, and the state each carries per layer.
RNN_CELLS = {
    # The tutorial's BasicLSTMCell: forget_bias=0.0.
    "lstm": (functools.partial(keras.layers.LSTM, unit_forget_bias=False), ("h", "c")),
    "gru": (keras.layers.GRU, ("h",)),
    "simple_rnn": (keras.layers.SimpleRNN, ("h",)),
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


def learning_rate_for_epoch(config, epoch):
    """The tutorial's schedule; `epoch` counts from 0."""
    return config.learning_rate * config.lr_decay ** max(epoch + 1 - config.epochs_at_full_lr, 0)


def perplexity(loss_per_word):
    """exp of the mean loss per word (over a whole epoch, not a mean of per-batch exps);
    inf past what a float holds."""
    return math.exp(loss_per_word) if loss_per_word < 700 else math.inf


# ----------------------------------------------------------------------------
# Model


def build_model(config, num_steps=None, seed=0):
    """The tutorial's network as a Keras model that takes the LSTM state in and gives it back.

        [words, state] -> embedding -> dropout -> [LSTM -> dropout] x num_layers
                       -> dense over the vocabulary -> [logits, final state]

    `state`: [batch, hidden_size] tensors, each layer's in turn (h and c for an
    LSTM, h for a GRU or SimpleRNN). The loop carries the final state of one
    window into the next, as the tutorial fed `final_state` back through its
    `feed_dict`; nothing is kept inside the model, so one model serves any batch
    size and any number of replicas. `num_steps=None`: windows of any length.
    Every cell keeps Keras' defaults where they select cuDNN on a GPU.
    """
    if config.rnn_cell not in RNN_CELLS:
        raise ValueError(f"rnn_cell={config.rnn_cell!r}: choose one of {', '.join(RNN_CELLS)}.")
    # Each weight drawn on its own, as the tutorial's variables were: an initializer
    # with an integer seed would give every weight of the same shape the same numbers.
    init = keras.initializers.RandomUniform(-config.init_scale, config.init_scale,
                                            seed=keras.random.SeedGenerator(seed))
    dropout_rate = 1.0 - config.keep_prob
    recurrent_layer, state_parts = RNN_CELLS[config.rnn_cell]
    words = keras.Input(shape=(num_steps,), dtype="int32", name="words")
    state = [keras.Input(shape=(config.hidden_size,), name=f"{config.rnn_cell}_{layer}_{part}")
             for layer in range(config.num_layers) for part in state_parts]
    if config.tied:  # float32 under --mixed_precision: it is the output layer too
        embedding = TiedEmbedding(config.vocab_size, config.hidden_size,
                                  embeddings_initializer=init, bias_initializer=init,
                                  dtype="float32", name="embedding")
    else:
        embedding = keras.layers.Embedding(config.vocab_size, config.hidden_size,
                                           embeddings_initializer=init, name="embedding")
    x = embedding(words)
    # A Dropout layer on [batch, time, units] draws a fresh mask for every time
    # step, as the tutorial does (LSTM(dropout=...) would reuse one mask); the
    # replicas draw masks of their own (common/layers.py).
    x = ReplicaDropout(dropout_rate, seed=seed + 1)(x)
    final_state = []
    for layer in range(config.num_layers):
        layer_state = state[len(state_parts) * layer:len(state_parts) * (layer + 1)]
        x, *layer_state = recurrent_layer(
            config.hidden_size, return_sequences=True, return_state=True,
            kernel_initializer=init, recurrent_initializer=init,
            bias_initializer="zeros",  # as the tutorial's cells
            name=f"{config.rnn_cell}_{layer}")(x, initial_state=layer_state)
        final_state += layer_state
        x = ReplicaDropout(dropout_rate, seed=seed + 2 + layer)(x)
    if config.tied:
        logits = embedding(x, reverse=True)  # x @ embeddings^T + bias
    else:
        # float32 even under --mixed_precision: the softmax over 10,000 words needs its range.
        logits = keras.layers.Dense(config.vocab_size, kernel_initializer=init,
                                    bias_initializer=init, dtype="float32", name="softmax")(x)
    return keras.Model([words, *state], [logits, *final_state], name=f"ptb_{config.rnn_cell}")


def window_cost(word_losses, batch_size):
    """The tutorial's cost of a window: -log p of every word, summed over the
    window's time steps and averaged over its `batch_size` streams.

    That is sequence_loss with average_across_timesteps=False. A per-word mean
    at the same learning rate would make every step num_steps times smaller:
    training is then that much slower and ends far above the tutorial's
    perplexities.
    """
    return tf.reduce_sum(tf.reduce_sum(word_losses, axis=-1)) / batch_size


def sgd(config):
    """The tutorial's optimizer, built in `strategy.scope()`: plain SGD with the whole
    batch's gradient clipped to one global norm (training.apply_gradients explains
    the division)."""
    return keras.optimizers.SGD(config.learning_rate,
                                global_clipnorm=training.global_clipnorm(config.max_grad_norm))


# ----------------------------------------------------------------------------
# Training and evaluation


def run_epoch(step, initial_state, windows, config, progress=None, epoch=None):
    """Runs `step` over every window of an epoch; returns the loss per word.

    The tutorial's run_epoch: the state starts at zero and each window's final
    state is the next window's initial state, so gradients flow back num_steps
    words while the state carries everything read before.
    `progress(windows_done, perplexity)` is called about ten times; `epoch`
    (from 0) is named if training diverges.
    """
    state = initial_state()
    total_loss, num_windows = 0.0, int(windows.cardinality())
    report_every = max(num_windows // 10, 1)
    for window, (inputs, targets) in enumerate(windows):
        loss, state = step(inputs, targets, state)
        loss = float(loss)
        total_loss += loss
        # Diverged, nothing after it worth keeping: a loss that is not finite, or one
        # whose perplexity is beyond a float (clipping can keep such a loss finite).
        if not math.isfinite(total_loss) or math.isinf(perplexity(loss / config.num_steps)):
            raise training.NonFiniteLoss(f"window {window + 1} of {num_windows}", loss,
                                         None if epoch is None else epoch + 1)
        if progress and (window + 1) % report_every == 0:
            progress(window + 1, perplexity(total_loss / ((window + 1) * config.num_steps)))
    return total_loss / (num_windows * config.num_steps)


def evaluate_stream(model, config, ids):
    """The tutorial's test perplexity: `ids` read by `model` as one stream (batch 1), the
    state carried from word to word, each word predicted from everything before it."""
    return perplexity(-engine.stream_log_probs(model, config, ids).mean())


def train_and_evaluate(config, data_path, strategy=None, save_path=None, seed=0,
                       steps_per_epoch=None, restart=False, vocab_size=None):
    """Trains `config` on the corpus at `data_path` (PTB, downloaded, when None),
    printing per-epoch perplexities; returns {"history": one dict per epoch,
    "test_perplexity": ...}.

    The vocabulary is the training text's words, or its `vocab_size` most frequent.
    With `save_path` (the run folder) the same call again resumes after the last
    completed epoch. Any strategy: batch_size is global, split by rows among the replicas.
    """
    strategy = strategy or tf.distribute.get_strategy()
    # Every replica must get the same number of streams, each with its own state.
    training.check_global_batch(config.batch_size, strategy, flag="--model")
    corpus = reader.read_corpus(data_path, vocab_size)
    print(corpus.describe())
    config = dataclasses.replace(config, vocab_size=corpus.vocab_size)
    settings = dict(dataclasses.asdict(config), seed=seed, steps_per_epoch=steps_per_epoch,
                    data_path=data_path)
    run = run_folder.open_run(save_path, "ptb", settings, restart, strategy,
                              own_files=[record.VOCABULARY])
    keras.utils.set_random_seed(seed)
    train_data = corpus.windows("train", config.batch_size, config.num_steps)
    valid_data = corpus.windows("valid", config.batch_size, config.num_steps)
    corpus.windows("test", 1, 1)  # a test text long enough to be read as one stream
    test_ids = corpus.test
    if steps_per_epoch:
        train_data = train_data.take(steps_per_epoch)
    num_windows = int(train_data.cardinality())
    words_per_window = config.batch_size * config.num_steps

    with strategy.scope():
        model = build_model(config, num_steps=config.num_steps, seed=seed)
        model.compile(optimizer=sgd(config))
    # The one door to the engine: the steps, computed as fast as this machine allows.
    steps = engine.compile(model, config, strategy, window_cost)
    model = steps.model  # the same weights, in the layers the steps compute with
    print(f"Model {model.count_params():,} parameters; "
          f"{strategy.num_replicas_in_sync} replica(s) in sync; {steps.name}.")
    epochs_done, history = run.resume(model)  # (0, []) for a new run
    records = record.RunRecord(run, model, config, num_windows,  # printed, figure, TensorBoard
                               unigram_perplexity=corpus.unigram_perplexity("valid"))

    for epoch in range(epochs_done, config.epochs):
        learning_rate = learning_rate_for_epoch(config, epoch)
        model.optimizer.learning_rate.assign(learning_rate)
        progress = records.epoch_start(epoch, learning_rate)

        start = time.perf_counter()
        train_loss = run_epoch(steps.train_step, steps.initial_state, train_data, config,
                               progress, epoch)
        seconds = time.perf_counter() - start
        valid_loss = run_epoch(steps.eval_step, steps.initial_state, valid_data, config)
        history.append(dict(
            epoch=epoch + 1, learning_rate=learning_rate,
            train_perplexity=perplexity(train_loss), valid_perplexity=perplexity(valid_loss),
            seconds=seconds, words_per_second=num_windows * words_per_window / seconds))
        records.epoch_end(history, train_loss, valid_loss)
        run.end_epoch(history)  # metrics.json, then the checkpoint
    records.training_end()

    start = time.perf_counter()
    eval_model = steps.stream_model()  # batch 1, windows of any length
    test_perplexity = evaluate_stream(eval_model, config, test_ids)
    test_seconds = time.perf_counter() - start
    records.test_end(history, eval_model, corpus.words, test_perplexity,
                     len(test_ids) - 1, test_seconds)
    run.finish(history, test_scalars=dict(test_perplexity=test_perplexity),
               test_perplexity=test_perplexity, test_seconds=test_seconds,
               training_seconds=sum(epoch["seconds"] for epoch in history))
    return dict(history=history, test_perplexity=test_perplexity)


# ----------------------------------------------------------------------------
# Command line

FLAGS = flags.FLAGS


def define_flags():
    """Defined on demand, so that importing this module defines no flags."""
    cli.define_run_flags(
        data_path_help="Corpus folder: ptb.{train,valid,test}.txt, {train,valid,test}.txt "
                       "or wiki.{train,valid,test}.tokens; PTB, downloaded into the Keras "
                       "cache, when left out.",
        default_run_folder="runs/ptb/<model>[_<rnn_cell>][_tied]", epochs_default=None,
        learning_rate_default=None, learning_rate_help="Initial SGD learning rate; "
        "overrides the preset's (the tutorial's learning_rate).",
        epochs_help="Epochs in all; overrides the preset's (the tutorial's max_max_epoch).")
    flags.adopt_module_key_flags(cli)  # so that --help lists the shared flags too
    flags.DEFINE_enum("model", "small", list(PRESETS), "Which preset to train.")
    flags.DEFINE_enum("rnn_cell", "lstm", list(RNN_CELLS), "The recurrent layer; the "
                      "presets are the tutorial's LSTM ones, their other settings kept.")
    flags.DEFINE_boolean("tied", False, "Tie the output layer to the embedding: one "
                         "matrix for a word's input and output vector.")
    flags.DEFINE_integer("vocab_size", None, "Keep only this many of the training text's "
                         "most frequent words, the rest read as <unk>; all of them when "
                         "left out.", lower_bound=2)  # <eos> and <unk> at least
    flags.DEFINE_integer("steps_per_epoch", None, "Train only this many windows per epoch "
                         "(for quick looks; the perplexities are then not the tutorial's).",
                         lower_bound=1)


def main(argv):
    del argv  # cli.run refuses stray arguments
    config = PRESETS[FLAGS.model]
    overrides = dict(epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate)
    config = dataclasses.replace(config, rnn_cell=FLAGS.rnn_cell, tied=FLAGS.tied, **{
        name: value for name, value in overrides.items() if value is not None})
    strategy = strategy_lib.get_strategy(num_gpus=FLAGS.num_gpus,
                                       worker_timeout=FLAGS.worker_timeout)
    training.use_mixed_precision(FLAGS.mixed_precision)
    run_name = FLAGS.model + ("" if FLAGS.rnn_cell == "lstm" else f"_{FLAGS.rnn_cell}") + (
        "_tied" if FLAGS.tied else "")
    save_path = cli.run_folder_path("ptb", run_name)
    train_and_evaluate(config, FLAGS.data_path, strategy, save_path=save_path,
                       seed=FLAGS.seed, steps_per_epoch=FLAGS.steps_per_epoch,
                       restart=FLAGS.restart, vocab_size=FLAGS.vocab_size)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
