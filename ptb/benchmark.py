"""Training and evaluation speed of the PTB model, against the machine's limit.

    python -m ptb.benchmark --model small [--steps 300]

Runs the trainer's own training step (ptb_word_lm: same model, loss, SGD with
global-norm clipping, state carried between windows) on PTB-shaped random word
ids, skips the warm-up calls, and prints:

  - training words/s, and the same for the plain Keras stack (--compare_plain),
  - test-set evaluation words/s (batch 1, one stream, as the trainer evaluates),
  - model FLOPs per word and the achieved GFLOP/s,
  - that as a share of this machine's fp32 matmul peak, measured in the same
    run (model FLOPs utilisation, MFU).

FLOPs per trained word count the matrix multiplies only (the rest is small):
a multiply-add of an [n, k] by [k, m] matrix is 2*n*k*m FLOPs, and the backward
pass costs twice the forward one, so

    FLOPs/word = 3 * 2 * (num_layers * (2H) * (4H) + H * V)

with H = hidden_size and V = vocab_size: each LSTM layer multiplies [input, h]
(2H wide) by its four gates' weights (4H wide), and the output layer multiplies
H by V. Evaluation is the forward third of that. For `small` this is 15.8
MFLOP per word, 6.3 GFLOP per training window of 400 words; the 200 x 10,000
output layer is three quarters of it.

Where the time goes (`--breakdown`, small preset, 2026-11-22, this 2-core CPU
with another training job present; forward + backward per 400-word window):
the output layer's matmuls 20.3 ms, TensorFlow's fused sparse softmax
cross-entropy 11.1 ms (this package's log_softmax version: 6.6 ms), the
2-layer LSTM 19.5 ms as a while loop and 17.8 ms unrolled. A whole plain-Keras
step took ~75 ms (5,304 words/s), so ~24 ms went elsewhere (gradient clipping,
the SGD update, the embedding gradient, Keras). The parts are faster in
isolation, but whole-step comparisons on this shared machine have not yet
shown a reliable gain: see docs/RESULTS.md before trusting any speed-up.
"""

import time

import common  # noqa: F401  (quiets TensorFlow's start-up logs; import first)
from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from ptb import ptb_word_lm

PTB_TEST_WORDS = 82_430


def flops_per_word(config):
    """Training FLOPs per word (see the module docstring); evaluation is a third."""
    hidden, vocab = config.hidden_size, config.vocab_size
    forward = 2 * (config.num_layers * (2 * hidden) * (4 * hidden) + hidden * vocab)
    return 3 * forward


def reference_loss(targets, logits):
    """The straightforward Keras loss: Keras' sparse cross-entropy, summed over time."""
    per_word = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
    return keras.ops.sum(per_word, axis=-1)


def build_trainer(config, plain=False, steps_per_execution=1, seed=0):
    """The trainer's compiled model; `plain=True` gives the plain Keras stack
    (while-loop LSTM, Keras' cross-entropy, one step per call) for comparison."""
    if plain:
        model = ptb_word_lm.build_model(config, unroll=False, seed=seed)
        model.compile(optimizer=keras.optimizers.SGD(
            config.learning_rate, global_clipnorm=config.max_grad_norm), loss=reference_loss)
        return model
    model = ptb_word_lm.build_model(
        config, unroll=ptb_word_lm.cpu_only(), seed=seed)
    ptb_word_lm.compile_for_training(model, config, steps_per_execution=steps_per_execution)
    return model


def random_windows(config, num_windows, seed=0):
    rng = np.random.default_rng(seed)
    shape = (num_windows, config.batch_size, config.num_steps)
    ids = rng.integers(0, config.vocab_size, size=(2,) + shape, dtype=np.int32)
    return tf.data.Dataset.from_tensor_slices((ids[0], ids[1])).cache()


def training_words_per_second(model, config, steps, calls, warmup_calls=1):
    """Best words/s over `calls` fits of `steps` windows, after warm-up fits."""
    data = random_windows(config, steps)
    rates = []
    for call in range(warmup_calls + calls):
        ptb_word_lm.reset_lstm_states(model)
        start = time.perf_counter()
        model.fit(data, epochs=1, verbose=0, shuffle=False)
        if call >= warmup_calls:
            rates.append(steps * config.batch_size * config.num_steps / (time.perf_counter() - start))
    return max(rates), float(np.median(rates))


def evaluation_words_per_second(model, config, num_words):
    eval_model = ptb_word_lm.build_eval_model(config, model)
    ids = np.random.default_rng(1).integers(0, config.vocab_size, num_words, dtype=np.int32)
    ptb_word_lm.evaluate_stream(eval_model, ids[:1000])  # warm-up: traces the step
    start = time.perf_counter()
    ptb_word_lm.evaluate_stream(eval_model, ids)
    seconds = time.perf_counter() - start
    return (num_words - 1) / seconds, seconds


def step_breakdown(config, repeats=10):
    """Milliseconds (best of `repeats`) of the parts of one training step, each
    forward + backward on a window's worth of data: where the time goes."""
    rng = np.random.default_rng(2)
    words = config.batch_size * config.num_steps
    hidden = tf.constant(rng.standard_normal((words, config.hidden_size)), tf.float32)
    logits = tf.constant(rng.standard_normal((words, config.vocab_size)), tf.float32)
    targets = tf.constant(rng.integers(0, config.vocab_size, words), tf.int32)
    kernel = tf.Variable(tf.zeros((config.hidden_size, config.vocab_size)))
    inputs = tf.constant(rng.standard_normal(
        (config.batch_size, config.num_steps, config.hidden_size)), tf.float32)

    def gradients(loss_fn, tensors, variables=()):
        def step():
            with tf.GradientTape() as tape:
                tape.watch(tensors)  # trainable variables are watched anyway
                loss = loss_fn()
            return tape.gradient(loss, tensors + list(variables))
        return tf.function(step)

    def lstm_stack(unroll):
        layers = [keras.layers.LSTM(config.hidden_size, return_sequences=True, unroll=unroll)
                  for _ in range(config.num_layers)]

        def loss():
            x = inputs
            for layer in layers:
                x = layer(x)
            return tf.reduce_sum(x)
        loss()  # builds the layers' weights
        return gradients(loss, [inputs], [w for layer in layers for w in layer.trainable_weights])

    parts = {
        "output matmul [words x H] @ [H x V]": gradients(
            lambda: tf.reduce_sum(tf.matmul(hidden, kernel) * logits), [hidden], [kernel]),
        "TF fused sparse softmax cross-entropy": gradients(
            lambda: tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits)),
            [logits]),
        "this package's cross_entropy_with_logits": gradients(
            lambda: tf.reduce_sum(ptb_word_lm.cross_entropy_with_logits(logits, targets)),
            [logits]),
        "LSTM stack, while loop": lstm_stack(unroll=False),
        "LSTM stack, unrolled": lstm_stack(unroll=True),
    }
    milliseconds = {}
    for name, step in parts.items():
        step()  # traces
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), step())  # waits: a sync point
            best = min(best, time.perf_counter() - start)
        milliseconds[name] = 1e3 * best
    return milliseconds


def matmul_peak_gflops(size=2048, repeats=10):
    """Best fp32 GFLOP/s of a size^3 matmul on this machine's default device."""
    a = tf.random.uniform((size, size))
    b = tf.random.uniform((size, size))
    matmul = tf.function(lambda: tf.linalg.matmul(a, b))
    matmul().numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul().numpy()  # .numpy() waits for the result: a sync point
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_enum("model", "small", list(ptb_word_lm.PRESETS), "Preset to benchmark.")
    flags.DEFINE_integer("steps", 200, "Training windows per timed call.")
    flags.DEFINE_integer("calls", 3, "Timed calls (the best and the median are reported).")
    flags.DEFINE_integer("eval_words", PTB_TEST_WORDS, "Words in the evaluation stream "
                         "(default: the size of the PTB test set); 0 skips evaluation.")
    flags.DEFINE_boolean("compare_plain", True, "Also time the plain Keras stack.")
    flags.DEFINE_boolean("breakdown", False, "Also time the parts of one step.")


def main(argv):
    del argv
    config = ptb_word_lm.PRESETS[FLAGS.model]
    device = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    peak = matmul_peak_gflops()
    per_word = flops_per_word(config)
    print(f"preset {FLAGS.model}: {per_word / 1e6:.1f} MFLOP per trained word, "
          f"{per_word * config.batch_size * config.num_steps / 1e9:.2f} GFLOP per window; "
          f"{device} fp32 matmul peak {peak:.0f} GFLOP/s")

    if FLAGS.breakdown:
        for name, milliseconds in step_breakdown(config).items():
            print(f"  {name:42s} {milliseconds:7.1f} ms per window (forward + backward)")

    model = build_trainer(config, steps_per_execution=FLAGS.steps)
    print(f"parameters: {model.count_params():,}")
    best, median = training_words_per_second(model, config, FLAGS.steps, FLAGS.calls)
    achieved = best * per_word / 1e9
    print(f"train (this package): {best:8.0f} words/s best, {median:8.0f} median | "
          f"{achieved:.1f} GFLOP/s = {100 * achieved / peak:.0f}% of peak (MFU)")
    if FLAGS.compare_plain:
        plain = build_trainer(config, plain=True)
        plain_best, plain_median = training_words_per_second(plain, config, FLAGS.steps, FLAGS.calls)
        print(f"train (plain Keras):  {plain_best:8.0f} words/s best, {plain_median:8.0f} median | "
              f"this package is {best / plain_best:.2f}x faster (best vs best)")
    if FLAGS.eval_words:
        words_per_second, seconds = evaluation_words_per_second(model, config, FLAGS.eval_words)
        print(f"eval (batch 1 stream): {words_per_second:7.0f} words/s, "
              f"{FLAGS.eval_words:,} words in {seconds:.1f} s | "
              f"{words_per_second * per_word / 3 / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    define_flags()
    app.run(main)
