"""Training and evaluation speed of the PTB model, against the machine's limit.

    python -m ptb.benchmark --model small [--steps 300]

Runs the trainer's own training step (ptb_word_lm: same model, loss, SGD with
global-norm clipping, state carried between windows) on PTB-shaped random word
ids, skips the warm-up calls, and prints:

  - training words/s, and the same for the plain Keras stack (--compare_plain)
    and for each half of the CPU fast path on its own (--variants), the models
    taking turns,
  - test-set evaluation words/s (batch 1, one stream, as the trainer evaluates),
  - whether the CPU has bfloat16 dot products (AVX512_BF16, AMX),
  - this machine's float32 and bfloat16 matmul peaks, measured in the same run,
  - model FLOPs per word, the achieved GFLOP/s and their share of the peak for
    the step's precision (model FLOPs utilisation, MFU).

FLOPs per trained word count the matrix multiplies only (the rest is small):
a multiply-add of an [n, k] by [k, m] matrix is 2*n*k*m FLOPs, and the backward
pass costs twice the forward one, so

    FLOPs/word = 3 * 2 * (num_layers * (2H) * (4H) + H * V)

with H = hidden_size and V = vocab_size: each LSTM layer multiplies [input, h]
(2H wide) by its four gates' weights (4H wide), and the output layer multiplies
H by V. Evaluation is the forward third of that. For `small` this is 15.8
MFLOP per word, 6.3 GFLOP per training window of 400 words; the 200 x 10,000
output layer is three quarters of it.

MFU is against the fastest product the step could use on this machine: the
faster of TensorFlow's and numpy's fp32 product, so that a slow framework
kernel does not flatter it, and with --mixed_precision also TensorFlow's bf16
product on a CPU (fp16 on a GPU). Every
training line also gives the page faults and system CPU time per window (a
sign of the allocator returning memory to the system). `--profile` prints
where a step's time goes, per operation (for the compiled step, XLA's
fusions and dots); `--breakdown` times the parts in isolation and the whole
step cut after each stage (forward, backward, the gradient's norm, the
update). What these found, and the PyTorch comparison: docs/performance.md.
"""

import dataclasses
import glob
import os
import resource
import time

import common  # noqa: F401  (quiets TensorFlow's start-up logs; import first)
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from common import cli
from common import machine
from common import strategy as strategy_lib
from common import training
from ptb import engine
from ptb import fast_cpu
from ptb import ptb_word_lm
from ptb import reader
from ptb.fast_cpu import step as fast_step

PTB_TEST_WORDS = 82_430


# ----------------------------------------------------------------------------
# The trainer's steps on either path, or on one part of the fast path alone (the
# tests hold the fast path to the plain one with these too)


def build_trainer(config, strategy, path=None, seed=0):
    """engine.Steps as the trainer builds them, on `path` (None: the engine's choice)."""
    with strategy.scope():
        model = ptb_word_lm.build_model(config, num_steps=config.num_steps, seed=seed)
        model.compile(optimizer=ptb_word_lm.sgd(config))
    return engine.compile(model, config, strategy, ptb_word_lm.window_cost, path)


# The fast path's two halves, each on its own.
CPU_LAYERS_ONLY = dataclasses.replace(
    fast_cpu.PLAIN, name="CPU layers, plain step",
    lstm_layer=fast_cpu.WindowLSTM, output_layer=fast_cpu.BiasRowDense)
CPU_STEP_ONLY = dataclasses.replace(
    fast_cpu.FAST, name="Keras layers, CPU step (XLA, loss gradient, sparse update)",
    lstm_layer=keras.layers.LSTM, output_layer=keras.layers.Dense)


def part_trainers(config, strategy, seed=0):
    """{name: trainer} for each half of the fast path alone."""
    return {path.name: build_trainer(config, strategy, path, seed)
            for path in (CPU_LAYERS_ONLY, CPU_STEP_ONLY)}


def random_windows(config, num_windows, seed=0):
    """`num_windows` windows of random word ids, through the trainer's pipeline."""
    num_ids = config.batch_size * (num_windows * config.num_steps + 1)
    ids = np.random.default_rng(seed).integers(0, config.vocab_size, size=num_ids)
    return reader.ptb_producer(ids, config.batch_size, config.num_steps, name="random ids")


def train_windows(steps, config, windows):
    """Trains on `windows` as the trainer's epoch loop does."""
    ptb_word_lm.run_epoch(steps.train_step, steps.initial_state, windows, config)


def flops_per_word(config):
    """Training FLOPs per word (see the module docstring); evaluation is a third."""
    hidden, vocab = config.hidden_size, config.vocab_size
    forward = 2 * (config.num_layers * (2 * hidden) * (4 * hidden) + hidden * vocab)
    return 3 * forward


def training_words_per_second(trainers, config, steps, calls, warmup_calls=1):
    """{name: (best, median, faults, system_ms)} over `calls` passes over `steps`
    windows each: words/s, and the page faults and milliseconds of system CPU
    time per window (this process's, over the timed passes).

    The trainers take turns, pass by pass, so that the machine's slow phases
    (docs/performance.md) fall on all of them alike; warm-up passes are not timed.
    """
    windows = random_windows(config, steps)
    rates = {name: [] for name in trainers}
    faults = {name: 0 for name in trainers}
    system_seconds = {name: 0.0 for name in trainers}
    for call in range(warmup_calls + calls):
        for name, trainer in trainers.items():
            before = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            train_windows(trainer, config, windows)
            seconds = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
            if call >= warmup_calls:
                rates[name].append(steps * config.batch_size * config.num_steps / seconds)
                faults[name] += after.ru_minflt + after.ru_majflt - before.ru_minflt - before.ru_majflt
                system_seconds[name] += after.ru_stime - before.ru_stime
    timed_windows = calls * steps
    return {name: (max(r), float(np.median(r)), faults[name] / timed_windows,
                   1e3 * system_seconds[name] / timed_windows) for name, r in rates.items()}


def evaluation_words_per_second(steps, config, num_words):
    """Words/s of the test stream as the trainer evaluates it after training with `steps`."""
    eval_model = steps.stream_model()
    ids = np.random.default_rng(1).integers(0, config.vocab_size, num_words, dtype=np.int32)
    # The first call (a warm-up) traces the step.
    ptb_word_lm.evaluate_stream(eval_model, config, ids[:1000])
    start = time.perf_counter()
    ptb_word_lm.evaluate_stream(eval_model, config, ids)
    seconds = time.perf_counter() - start
    return (num_words - 1) / seconds, seconds


def step_breakdown(config, repeats=10):
    """Milliseconds (best of `repeats`) of the parts of one training step, each
    forward + backward on a window's worth of data, then the whole step cut
    after each stage (`step_stages`): where the time goes."""
    rng = np.random.default_rng(2)
    words = config.batch_size * config.num_steps
    hidden = tf.constant(rng.standard_normal((words, config.hidden_size)), tf.float32)
    logits = tf.constant(rng.standard_normal((words, config.vocab_size)), tf.float32)
    targets = tf.constant(rng.integers(0, config.vocab_size, words), tf.int32)
    kernel = tf.Variable(tf.zeros((config.hidden_size, config.vocab_size)))
    inputs = tf.constant(rng.standard_normal(
        (config.batch_size, config.num_steps, config.hidden_size)), tf.float32)

    def gradients(loss_fn, tensors, variables=(), jit_compile=False):
        def step():
            with tf.GradientTape() as tape:
                tape.watch(tensors)  # trainable variables are watched anyway
                loss = loss_fn()
            return tape.gradient(loss, tensors + list(variables))
        return tf.function(step, jit_compile=jit_compile)

    def lstm_stack(layer_class, jit_compile=False, **kwargs):
        layers = [layer_class(config.hidden_size, return_sequences=True, **kwargs)
                  for _ in range(config.num_layers)]

        def loss():
            x = inputs
            for layer in layers:
                x = layer(x)
            return tf.reduce_sum(x)
        loss()  # builds the layers' weights
        return gradients(loss, [inputs], [w for layer in layers for w in layer.trainable_weights],
                         jit_compile)

    parts = {
        "output matmul [words x H] @ [H x V]": gradients(
            lambda: tf.reduce_sum(tf.matmul(hidden, kernel) * logits), [hidden], [kernel]),
        "sparse softmax cross-entropy": gradients(
            lambda: tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits)),
            [logits]),
        "output layer + Keras' cross-entropy, XLA": gradients(
            lambda: tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(
                targets, tf.matmul(hidden, kernel), from_logits=True)),
            [hidden], [kernel], jit_compile=True),
        "output layer + fast_cpu's word_losses, XLA": gradients(
            lambda: tf.reduce_sum(fast_step.word_losses(targets, tf.matmul(hidden, kernel))),
            [hidden], [kernel], jit_compile=True),
        "LSTM stack, keras.layers.LSTM": lstm_stack(keras.layers.LSTM),
        "LSTM stack, keras.layers.LSTM unrolled": lstm_stack(keras.layers.LSTM, unroll=True),
        "LSTM stack, WindowLSTM": lstm_stack(fast_cpu.WindowLSTM),
        "LSTM stack, keras.layers.LSTM unrolled, XLA": lstm_stack(
            keras.layers.LSTM, jit_compile=True, unroll=True),
        "LSTM stack, WindowLSTM, XLA": lstm_stack(fast_cpu.WindowLSTM, jit_compile=True),
    }
    parts.update(step_stages(config))
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


def step_stages(config):
    """{stage: function}: the trainer's step on one window, cut after each
    stage, so that the differences say what the backward pass, the global norm
    of the gradient and the SGD update cost inside the whole step. The last is
    the trainer's own step (engine.compile); the others compile as it does."""
    steps = build_trainer(config, tf.distribute.get_strategy())
    model, path = steps.model, steps.path
    inputs, targets = next(iter(random_windows(config, 1)))
    state = engine.zero_state(model, config.batch_size)
    variables = model.trainable_variables

    def loss():  # the trainer's (engine.compile), on the whole batch
        logits, *_ = model([inputs, *state], training=True)
        return ptb_word_lm.window_cost(path.word_losses(targets, logits), config.batch_size)

    def dense_gradients():
        with tf.GradientTape() as tape:
            window_loss = loss()
        # The embedding's gradient arrives as IndexedSlices; summed as the optimizer does.
        return [tf.convert_to_tensor(g) for g in tape.gradient(window_loss, variables)]

    # Each returns something of every gradient, so that XLA cannot drop any of them.
    stages = {
        "whole step: forward only": loss,
        "whole step: forward + backward": lambda: [tf.reduce_sum(g) for g in dense_gradients()],
        "whole step: + the gradient's global norm": lambda: fast_step.global_norm(
            dense_gradients()),
    }
    stages = {name: tf.function(stage, jit_compile=path.jit_compile)
              for name, stage in stages.items()}
    stages["whole step: + the SGD update (the trainer's)"] = (
        lambda: steps.train_step(inputs, targets, steps.initial_state())[0])
    return stages


# Profiler events that contain others (the executor's and XLA's wrappers, and
# waits), left out so that each operation's time is counted once.
CONTAINER_EVENTS = ("Process", "ExecutorState::", "CpuExecutable::", "ThunkExecutor::",
                    "BlockUntilReady", "SlinkyThreadPool::", "ThreadpoolListener::", "end: ",
                    "ExecutorDoneCallback")


def operation_profile(trainer, config, windows=40, top=12):
    """[(operation, ms per window, calls per window)] of `windows` training
    windows under TensorFlow's profiler, most time first.

    Operations are TensorFlow's op types, or for a step compiled with XLA its
    HLO operations (fusions and dots, numbered suffixes dropped), which XLA
    reports only when started with --xla_cpu_enable_xprof_traceme (main sets
    it for --profile). Times are summed over threads, which run operations
    side by side, so they add up to more than the wall time.
    """
    import collections
    import re
    import tempfile
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    data = random_windows(config, windows)
    train_windows(trainer, config, data)  # warm-up: traces and compiles
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        train_windows(trainer, config, data)
        tf.profiler.experimental.stop()
        (trace,) = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
        space = xplane_pb2.XSpace.FromString(open(trace, "rb").read())
    picoseconds, calls = collections.Counter(), collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            # The executor's op threads, and the intra-op threads that run XLA's code.
            if not (line.name.startswith("tf_Compute") or "Eigen" in line.name):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if name.startswith(CONTAINER_EVENTS):
                    continue
                operation = re.sub(r"([._]\d+)+$", "", name.split(":")[-1])
                picoseconds[operation] += event.duration_ps
                calls[operation] += 1
    return [(operation, ps / 1e9 / windows, calls[operation] / windows)
            for operation, ps in picoseconds.most_common(top)]


def matmul_peaks_gflops(device, size=2048, repeats=10):
    """{(precision, library): best GFLOP/s of a size^3 matrix product}: TensorFlow's
    float32 product on `device`, and its float16 one on a GPU; on a CPU also
    numpy's float32 one (its BLAS is often the faster) and TensorFlow's bfloat16
    one (oneDNN's, float32 sums; numpy has no bfloat16)."""
    def best_seconds(matmul):
        matmul()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            matmul()
            best = min(best, time.perf_counter() - start)
        return best

    def tf_product(dtype):
        a = tf.cast(tf.random.uniform((size, size)), dtype)
        b = tf.cast(tf.random.uniform((size, size)), dtype)
        product = tf.function(lambda: tf.linalg.matmul(a, b))
        return lambda: product().numpy()  # .numpy() waits for the result: a sync point

    seconds = {("fp32", "TensorFlow"): best_seconds(tf_product(tf.float32))}
    if device == "GPU":  # --mixed_precision's float16
        seconds["fp16", "TensorFlow"] = best_seconds(tf_product(tf.float16))
    if device == "CPU":
        a_np, b_np = np.random.default_rng(0).random((2, size, size), dtype=np.float32)
        seconds["fp32", "numpy"] = best_seconds(lambda: a_np @ b_np)
        seconds["bf16", "TensorFlow"] = best_seconds(tf_product(tf.bfloat16))
    return {key: 2 * size**3 / s / 1e9 for key, s in seconds.items()}


def peak_for(peaks, precision):
    """(GFLOP/s, description) of the fastest product a step whose products are in
    `precision` (fp32, bf16 or fp16) could use: the faster of float32's and
    `precision`'s."""
    usable = {key: gflops for key, gflops in peaks.items() if key[0] in ("fp32", precision)}
    precision_of_peak, library = max(usable, key=usable.get)
    return usable[precision_of_peak, library], f"{library}'s {precision_of_peak}"


FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_enum("model", "small", list(ptb_word_lm.PRESETS), "Preset to benchmark.")
    flags.DEFINE_boolean("tied", False, "The output layer tied to the embedding (--tied).")
    flags.DEFINE_integer("seed", 0, "Random seed: initial weights and the random word ids.",
                         lower_bound=0, upper_bound=2**32 - 1)
    flags.DEFINE_integer("num_gpus", None, "GPUs to use; unset: all visible, 0: CPU only.")
    flags.DEFINE_bool("mixed_precision", False, "float16 on GPUs; bfloat16 products on CPUs "
                      "with bfloat16 dot products (refused on other CPUs).")
    flags.DEFINE_integer("steps", 200, "Training windows per timed pass.", lower_bound=1)
    flags.DEFINE_integer("calls", 3, "Timed passes (the best and the median are reported).",
                         lower_bound=1)
    flags.DEFINE_integer("eval_words", PTB_TEST_WORDS, "Words in the evaluation stream "
                         "(default: the size of the PTB test set); 0 skips evaluation.", lower_bound=0)
    flags.DEFINE_boolean("compare_plain", True, "Also time the plain Keras stack.")
    flags.DEFINE_boolean("variants", False, "Also time each half of the CPU fast path on "
                         "its own (the CPU layers, the CPU step), in turns with the others.")
    flags.DEFINE_boolean("breakdown", False, "Also time the parts of one step.")
    flags.DEFINE_boolean("profile", False, "Also print where a step's time goes, per "
                         "operation, for the plain stack and this package's (compiled) step.")


def main(argv):
    del argv  # cli.run refuses stray arguments
    config = dataclasses.replace(ptb_word_lm.PRESETS[FLAGS.model], tied=FLAGS.tied)
    if FLAGS.profile:  # read when XLA first compiles, which is later
        os.environ["XLA_FLAGS"] = " ".join(
            [os.environ.get("XLA_FLAGS", ""), "--xla_cpu_enable_xprof_traceme=true"]).strip()
    strategy = strategy_lib.get_strategy(num_gpus=FLAGS.num_gpus)
    if FLAGS.variants and FLAGS.mixed_precision:
        raise cli.UserInputError("--variants: the halves of the float32 fast path; leave out "
                                 "--mixed_precision")
    policy = training.use_mixed_precision(FLAGS.mixed_precision)
    precision = {"mixed_bfloat16": "bf16", "mixed_float16": "fp16"}.get(policy, "fp32")
    keras.utils.set_random_seed(FLAGS.seed)
    device = "GPU" if tf.config.list_logical_devices("GPU") and FLAGS.num_gpus != 0 else "CPU"
    print(f"machine: {machine.describe_machine()}; TensorFlow {tf.__version__}, "
          f"Keras {keras.__version__}")
    if device == "CPU":
        dot_products = machine.bfloat16_dot_products()
        print("bfloat16 dot products: " + (", ".join(dot_products) if dot_products else "none")
              + (" (no AMX)" if dot_products and "AMX" not in dot_products else ""))
    peaks = matmul_peaks_gflops(device)
    peak, peak_name = peak_for(peaks, precision)
    per_word = flops_per_word(config)
    print(f"preset {FLAGS.model}: {per_word / 1e6:.1f} MFLOP per trained word, "
          f"{per_word * config.batch_size * config.num_steps / 1e9:.2f} GFLOP per window")
    print(f"{device} matmul peaks, GFLOP/s: "
          + ", ".join(f"{library} {key_precision} {gflops:.0f}"
                      for (key_precision, library), gflops in peaks.items())
          + f"; MFU below is against {peak_name} {peak:.0f} (the step's products: {precision})")

    if FLAGS.breakdown:
        repeats = 10
        print(f"breakdown, best of {repeats} (the parts alone: forward + backward):")
        for name, milliseconds in step_breakdown(config, repeats).items():
            print(f"  {name:46s} {milliseconds:7.1f} ms per window")

    if FLAGS.profile:
        for name, profiled in (
                ("plain Keras", build_trainer(config, strategy, fast_cpu.PLAIN)),
                ("this package", build_trainer(config, strategy))):
            print(f"profile ({name}), summed over threads, per window:")
            rows = operation_profile(profiled, config)
            for operation, milliseconds, calls in rows:
                print(f"  {operation:28s} {milliseconds:7.2f} ms  {calls:6.1f} calls")
            if not rows:  # tiny models run their operations inline, unrecorded
                print("  (no operations on the executor's threads to show)")

    trainers = {"this package": build_trainer(config, strategy, seed=FLAGS.seed)}
    if FLAGS.compare_plain:
        trainers["plain Keras"] = build_trainer(config, strategy, fast_cpu.PLAIN,
                                                         seed=FLAGS.seed)
    if FLAGS.variants:
        trainers.update(part_trainers(config, strategy, seed=FLAGS.seed))
    print(f"parameters: {trainers['this package'].model.count_params():,}")
    rates = training_words_per_second(trainers, config, FLAGS.steps, FLAGS.calls)
    best = rates["this package"][0]
    for name, (name_best, name_median, faults, system_ms) in rates.items():
        achieved = name_best * per_word / 1e9
        print(f"train ({name}): {name_best:6.0f} words/s best, {name_median:6.0f} median | "
              f"{achieved:5.1f} GFLOP/s = {100 * achieved / peak:2.0f}% of peak (MFU) | "
              f"per window {faults:.0f} page faults, {system_ms:.1f} ms system time"
              + (f" | this package: {best / name_best:.2f}x" if name != "this package" else ""))
    if FLAGS.eval_words:
        words_per_second, seconds = evaluation_words_per_second(
            trainers["this package"], config, FLAGS.eval_words)
        print(f"eval (batch 1 stream): {words_per_second:7.0f} words/s, "
              f"{FLAGS.eval_words:,} words in {seconds:.1f} s | "
              f"{words_per_second * per_word / 3 / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
