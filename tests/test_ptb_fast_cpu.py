"""ptb/fast_cpu: each part of the CPU fast path, and a whole training step, against plain Keras."""

import dataclasses
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import training
from ptb import benchmark
from ptb import fast_cpu
from ptb import ptb_word_lm
from ptb.fast_cpu import bfloat16
from ptb.fast_cpu import step as fast_step
from ptb.fast_cpu.bias_row_dense import BiasRowDense
from ptb.fast_cpu.window_lstm import StreamLSTM, WindowLSTM
from ptb.tied_embedding import TiedEmbedding

SMALL = ptb_word_lm.PRESETS["small"]
TINY = dataclasses.replace(ptb_word_lm.PRESETS["small"], hidden_size=8, vocab_size=50,
                           batch_size=3, num_steps=4)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_word_losses_and_their_gradient_are_keras_cross_entropys(jit_compile):
    rng = np.random.default_rng(4)
    targets = tf.constant(rng.integers(0, 50, (3, 5)), tf.int32)
    logits = tf.constant(5 * rng.standard_normal((3, 5, 50)), tf.float32)  # peaked softmaxes
    upstream = tf.constant(rng.standard_normal((3, 5)), tf.float32)

    def losses_and_gradient(loss_fn):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            losses = loss_fn(targets, logits)
            weighted = tf.reduce_sum(losses * upstream)
        return losses, tape.gradient(weighted, logits)

    keras_loss = lambda t, x: keras.losses.sparse_categorical_crossentropy(  # noqa: E731
        t, x, from_logits=True)
    ours = tf.function(lambda: losses_and_gradient(fast_step.word_losses),
                       jit_compile=jit_compile)()
    expected = losses_and_gradient(keras_loss)
    for actual, wanted in zip(ours, expected):
        np.testing.assert_allclose(actual.numpy(), wanted.numpy(), rtol=1e-5, atol=1e-6)
    # float16 logits (--mixed_precision on a GPU) are scored in float32.
    half = fast_step.word_losses(targets, tf.cast(logits, tf.float16))
    assert half.dtype == tf.float32
    np.testing.assert_allclose(half.numpy(), expected[0].numpy(), rtol=1e-2)


def test_window_lstm_matches_keras_lstm_values_gradients_and_state():
    rng = np.random.default_rng(1)
    inputs = tf.constant(rng.standard_normal((4, 7, 5)), tf.float32)
    output_weights = tf.constant(rng.standard_normal((4, 7, 6)), tf.float32)
    init = keras.initializers.RandomUniform(-0.5, 0.5, seed=1)

    def stateful_model(layer_class):
        words = keras.Input((7, 5), batch_size=4)
        outputs = layer_class(6, return_sequences=True, stateful=True, kernel_initializer=init,
                              recurrent_initializer=init, bias_initializer=init)(words)
        return keras.Model(words, outputs)

    reference, window = stateful_model(keras.layers.LSTM), stateful_model(WindowLSTM)
    window.set_weights(reference.get_weights())
    for call in range(2):  # the second call starts from the state the first left
        results = []
        for model in (reference, window):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                loss = tf.reduce_sum(model(inputs) * output_weights)
            gradients = tape.gradient(loss, [inputs] + model.trainable_weights)
            states = [state.numpy() for state in model.layers[1].states]
            results.append([loss.numpy()] + [g.numpy() for g in gradients] + states)
        for expected, actual in zip(*results):
            np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_window_lstm_refuses_what_it_does_not_compute():
    with pytest.raises(ValueError, match="dropout"):
        WindowLSTM(4, dropout=0.5)
    with pytest.raises(ValueError, match="fixed window length"):
        WindowLSTM(4)(keras.Input((None, 3)))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_stream_lstm_reads_any_window_as_keras_lstm_does(jit_compile):
    rng = np.random.default_rng(4)
    init = keras.initializers.RandomUniform(-0.5, 0.5, seed=3)
    layers = [layer_class(5, return_sequences=True, return_state=True, kernel_initializer=init,
                          recurrent_initializer=init, bias_initializer=init)
              for layer_class in (keras.layers.LSTM, StreamLSTM)]
    for steps in (7, 1, 3):  # windows of any length, one word included
        inputs = tf.constant(rng.standard_normal((1, steps, 6)), tf.float32)
        state = [tf.constant(rng.standard_normal((1, 5)), tf.float32) for _ in range(2)]
        expected = layers[0](inputs, initial_state=state)
        layers[1].build(inputs.shape)
        layers[1].set_weights(layers[0].get_weights())
        actual = tf.function(lambda: layers[1](inputs, initial_state=state),
                             jit_compile=jit_compile)()
        for got, wanted in zip(actual, expected):  # outputs, h, c
            np.testing.assert_allclose(got.numpy(), wanted.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_bias_row_dense_matches_keras_dense_values_and_gradients(jit_compile):
    rng = np.random.default_rng(5)
    inputs = tf.constant(rng.standard_normal((3, 4, 6)), tf.float32)
    output_weights = tf.constant(rng.standard_normal((3, 4, 9)), tf.float32)
    init = keras.initializers.RandomUniform(-0.5, 0.5, seed=2)
    layers = [layer_class(9, kernel_initializer=init, bias_initializer=init)
              for layer_class in (keras.layers.Dense, BiasRowDense)]
    for layer in layers:
        layer.build(inputs.shape)
    layers[1].set_weights(layers[0].get_weights())
    assert [w.path for w in layers[1].weights] == [f"{layers[1].name}/kernel",
                                                   f"{layers[1].name}/bias"]

    def values_and_gradients(layer):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs)
            loss = tf.reduce_sum(outputs * output_weights)
        return [outputs] + tape.gradient(loss, [inputs, layer.kernel, layer.bias])

    expected = values_and_gradients(layers[0])
    actual = tf.function(lambda: values_and_gradients(layers[1]), jit_compile=jit_compile)()
    assert actual[0].shape == (3, 4, 9)
    for got, wanted in zip(actual, expected):
        np.testing.assert_allclose(got.numpy(), wanted.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="use_bias"):
        BiasRowDense(4, use_bias=False)


@pytest.mark.parametrize("clip_norm", [0.5, 1e3])  # clipping on, and off
def test_sgd_update_is_keras_sgd_with_global_clipnorm(clip_norm):
    """The CPU step's update, with the embedding's rows kept sparse, against
    Keras' SGD on the same gradients (the embedding's made dense by Keras)."""
    rng = np.random.default_rng(6)
    start = [rng.standard_normal((10, 3)), rng.standard_normal((3, 4))]
    # Word 7 twice in the window: both rows count in the norm, and both update it.
    embedding_rows = tf.IndexedSlices(tf.constant(rng.standard_normal((4, 3)), tf.float32),
                                      tf.constant([7, 2, 7, 0]), tf.constant([10, 3]))
    gradients = [embedding_rows, tf.constant(rng.standard_normal((3, 4)), tf.float32)]
    results = []
    for update in ("keras", "sgd_update"):
        variables = [keras.Variable(value, dtype="float32") for value in start]
        optimizer = keras.optimizers.SGD(0.3, global_clipnorm=clip_norm)
        optimizer.build(variables)
        if update == "keras":
            optimizer.apply(gradients, variables)
        else:
            # Compiled as in the training step, which reads the model's variables.
            tf.function(lambda: fast_step.sgd_update(optimizer, gradients, variables),
                        jit_compile=True)()
        assert int(optimizer.iterations.numpy()) == 1
        results.append([v.numpy() for v in variables])
    for keras_result, ours in zip(*results):
        np.testing.assert_allclose(ours, keras_result, rtol=1e-6, atol=1e-7)
    untouched = [1, 3, 4, 5, 6, 8, 9]  # rows of words not in the window
    np.testing.assert_array_equal(results[1][0][untouched], start[0][untouched].astype(np.float32))
    assert (results[1][0][[0, 2, 7]] != start[0][[0, 2, 7]].astype(np.float32)).all()


@pytest.mark.parametrize("shape", [(201, 5), (200, 3), (17,), (8, 2), (3,), ()])
def test_sum_of_squares_is_the_plain_sum(shape):
    """The clipping norm's sum of squares, rows halved first (odd counts too)."""
    values = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    expected = np.sum(np.square(values.astype(np.float64)))
    rows_unknown = tf.TensorSpec([None, *shape[1:]]) if shape else tf.TensorSpec([])
    for run in (fast_step.sum_of_squares,
                tf.function(fast_step.sum_of_squares, jit_compile=True),
                tf.function(fast_step.sum_of_squares, input_signature=[rows_unknown])):
        np.testing.assert_allclose(float(run(tf.constant(values))), expected, rtol=1e-6)


def test_gpu_and_several_replicas_get_the_plain_cudnn_eligible_model(monkeypatch):
    one_replica = tf.distribute.get_strategy()
    assert fast_cpu.path_for(one_replica, TINY) is fast_cpu.FAST
    cpu_model = benchmark.build_trainer(TINY, one_replica).model
    assert isinstance(cpu_model.get_layer("lstm_0"), WindowLSTM)
    assert isinstance(cpu_model.get_layer("softmax"), BiasRowDense)
    # The GRU and SimpleRNN cells always take the plain path.
    assert fast_cpu.path_for(one_replica, dataclasses.replace(TINY, rnn_cell="gru")) is (
        fast_cpu.PLAIN)
    two_replicas = types.SimpleNamespace(num_replicas_in_sync=2)
    assert not training.is_one_cpu_replica(two_replicas)
    for gpu_visible, strategy in ((True, one_replica), (False, two_replicas)):
        if gpu_visible:
            monkeypatch.setattr(training, "is_one_cpu_replica", lambda strategy: False)
        path = fast_cpu.path_for(strategy, TINY)
        assert path is fast_cpu.PLAIN and not path.jit_compile  # no XLA: cuDNN cannot be compiled
        # The engine trains the model as the trainer built it.
        model = benchmark.build_trainer(TINY, tf.distribute.get_strategy(), path).model
        for layer in ("lstm_0", "lstm_1"):
            lstm = model.get_layer(layer)
            # Keras takes the cuDNN kernel for exactly these arguments.
            assert type(lstm) is keras.layers.LSTM and not lstm.unroll and lstm.use_cudnn == "auto"
            assert lstm.activation is keras.activations.tanh and lstm.cell.use_bias
            assert lstm.recurrent_activation is keras.activations.sigmoid
            assert lstm.cell.recurrent_dropout == 0
        assert type(model.get_layer("softmax")) is keras.layers.Dense


@pytest.mark.parametrize("tied", [False, True])
def test_fast_path_trains_like_the_plain_keras_path(tied):
    """The CPU layers + XLA (on a CPU) against the plain Keras stack, from the same
    weights: same losses and weights to float32 tolerance. Tied, the embedding's
    gradient is the sum of its rows' (input) and a dense one (output)."""
    config = dataclasses.replace(SMALL, tied=tied)
    strategy = tf.distribute.get_strategy()
    windows = list(benchmark.random_windows(config, num_windows=4))
    trainers = {"fast": benchmark.build_trainer(config, strategy),
                "plain": benchmark.build_trainer(config, strategy, fast_cpu.PLAIN)}
    trainers["plain"].model.set_weights(trainers["fast"].model.get_weights())
    losses = {}
    for name, trainer in trainers.items():
        state = trainer.initial_state()
        losses[name] = []
        for inputs, targets in windows:
            loss, state = trainer.train_step(inputs, targets, state)
            losses[name].append(float(loss))
    assert losses["fast"][0] == pytest.approx(20 * np.log(config.vocab_size), rel=0.05)
    np.testing.assert_allclose(losses["fast"], losses["plain"], rtol=2e-5)
    for a, b in zip(trainers["fast"].model.get_weights(), trainers["plain"].model.get_weights()):
        np.testing.assert_allclose(a, b, atol=2e-5)


# ----------------------------------------------------------------------------
# bfloat16 products (--mixed_precision on a CPU)


cpu_only = pytest.mark.skipif(bool(tf.config.list_logical_devices("GPU")),
                              reason="the CPU paths; a visible GPU takes the plain one")


@pytest.fixture
def mixed_bfloat16():
    """Keras' mixed_bfloat16 policy, as --mixed_precision sets it on a CPU."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def matmul_dtypes(function, *args):
    """The dtypes of the matrix products in `function`'s graph, each with its count."""
    graph = tf.function(function).get_concrete_function(*args).graph
    dtypes = [op.get_attr("T").name for op in graph.get_operations() if op.type == "MatMul"]
    return {dtype: dtypes.count(dtype) for dtype in set(dtypes)}


@cpu_only
def test_bfloat16_layers_compute_their_products_in_bfloat16():
    """The same functions as WindowLSTM and Dense, to bfloat16's precision, from
    float32 weights; every product forward and backward in bfloat16, the state float32."""
    rng = np.random.default_rng(5)
    inputs = tf.constant(rng.standard_normal((3, 6, 5)), tf.float32)
    init = keras.initializers.RandomUniform(-0.5, 0.5, seed=2)
    layers = {}
    for name, layer_class in (("float32", WindowLSTM), ("bfloat16", bfloat16.Bfloat16WindowLSTM)):
        layers[name] = layer_class(7, return_sequences=True, return_state=True,
                                   kernel_initializer=init, recurrent_initializer=init,
                                   bias_initializer=init)
        layers[name](inputs)

    def outputs_and_gradients(layer):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs, h, c = layer(inputs)
            loss = tf.reduce_sum(outputs * outputs) + tf.reduce_sum(h) + tf.reduce_sum(c)
        return [outputs, h, c, *tape.gradient(loss, [inputs, *layer.trainable_weights])]

    expected = outputs_and_gradients(layers["float32"])
    actual = outputs_and_gradients(layers["bfloat16"])
    assert [tensor.dtype for tensor in actual] == [tf.float32] * len(actual)
    for a, b in zip(actual, expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0.03, atol=0.03)
        # bfloat16 keeps 8 bits: the products differ from float32's, not just by reordering.
    assert not all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(actual, expected))
    # One product of the whole window's inputs, one per time step of the state; backward,
    # one per step and three for the window (inputs', kernel's and recurrent kernel's).
    assert matmul_dtypes(lambda: outputs_and_gradients(layers["bfloat16"])) == {
        "bfloat16": 1 + 6 + 6 + 3}

    dense = {name: layer_class(9, kernel_initializer=init, bias_initializer=init)
             for name, layer_class in (("float32", keras.layers.Dense),
                                       ("bfloat16", bfloat16.Bfloat16Dense))}
    for layer in dense.values():
        layer(inputs)
    dense["bfloat16"].set_weights(dense["float32"].get_weights())

    def dense_outputs_and_gradients(layer):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs)
            loss = tf.reduce_sum(outputs * outputs)
        return [outputs, *tape.gradient(loss, [inputs, *layer.trainable_weights])]

    for a, b in zip(dense_outputs_and_gradients(dense["bfloat16"]),
                    dense_outputs_and_gradients(dense["float32"])):
        assert a.dtype == tf.float32
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0.03, atol=0.05)
    assert matmul_dtypes(lambda: dense_outputs_and_gradients(dense["bfloat16"])) == {
        "bfloat16": 3}

    tied = {name: layer_class(11, 5, embeddings_initializer=init, bias_initializer=init)
            for name, layer_class in (("float32", TiedEmbedding),
                                      ("bfloat16", bfloat16.Bfloat16TiedEmbedding))}
    words = tf.constant(rng.integers(0, 11, (3, 6)), tf.int32)

    def tied_outputs_and_gradients(layer):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            vectors = layer(words)
            logits = layer(inputs + vectors, reverse=True)
            loss = tf.reduce_sum(logits * logits)
        gradients = tape.gradient(loss, [inputs, *layer.trainable_weights])
        return [vectors, logits, *map(tf.convert_to_tensor, gradients)]

    for layer in tied.values():
        layer.build()
    tied["bfloat16"].set_weights(tied["float32"].get_weights())
    for a, b in zip(tied_outputs_and_gradients(tied["bfloat16"]),
                    tied_outputs_and_gradients(tied["float32"])):
        assert a.dtype == tf.float32
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0.03, atol=0.05)
    assert matmul_dtypes(lambda: tied_outputs_and_gradients(tied["bfloat16"])) == {
        "bfloat16": 3}
    with pytest.raises(ValueError, match="computes in float32"):
        bfloat16.Bfloat16Dense(9, dtype="mixed_bfloat16")


@cpu_only
@pytest.mark.parametrize("tied", [False, True])
def test_mixed_precision_on_one_cpu_takes_the_bfloat16_path(mixed_bfloat16, tied):
    strategy = tf.distribute.get_strategy()
    config = dataclasses.replace(TINY, tied=tied)
    path = fast_cpu.path_for(strategy, config)
    assert path is fast_cpu.FAST_BFLOAT16 and not path.jit_compile
    steps = benchmark.build_trainer(config, strategy)
    model = steps.model
    assert isinstance(model.get_layer("lstm_0"), bfloat16.Bfloat16WindowLSTM)
    if tied:
        assert isinstance(model.get_layer("embedding"), bfloat16.Bfloat16TiedEmbedding)
    else:
        assert isinstance(model.get_layer("softmax"), bfloat16.Bfloat16Dense)
    # Only the products are bfloat16: every layer computes and keeps its weights in float32.
    computing = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    assert {layer.compute_dtype for layer in computing} == {"float32"}
    assert {weight.dtype for weight in model.weights} == {"float32"}
    # The test stream is read in float32 with XLA, as the tools read the saved model.
    stream = fast_cpu.stream_path(path)
    assert stream.jit_compile and stream.dtype == "float32"
    eval_model = steps.stream_model()
    assert {layer.compute_dtype for layer in eval_model.layers
            if not isinstance(layer, keras.layers.InputLayer)} == {"float32"}
    assert type(eval_model.get_layer("lstm_0")) is keras.layers.LSTM
    assert eval_model.inputs[0].shape == (None, None)  # windows of any length
    for a, b in zip(eval_model.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Elsewhere mixed precision keeps the plain path, in Keras' mixed_bfloat16.
    assert fast_cpu.path_for(strategy, dataclasses.replace(TINY, rnn_cell="gru")) is (
        fast_cpu.PLAIN)


@cpu_only
def test_bfloat16_step_trains_like_the_float32_step(mixed_bfloat16):
    """From the same weights, eight windows of `small` (no dropout): the window
    losses within 1e-4 of float32's, the weights within 5e-3 (measured: 1.4e-6
    and 7e-4 on a Zen 5). The state stays float32, so the second window reuses
    the step traced for the first."""
    strategy = tf.distribute.get_strategy()
    windows = list(benchmark.random_windows(SMALL, num_windows=8))
    trainers = {"bfloat16": benchmark.build_trainer(SMALL, strategy)}
    keras.mixed_precision.set_global_policy("float32")
    trainers["float32"] = benchmark.build_trainer(SMALL, strategy)
    assert type(trainers["float32"].model.get_layer("lstm_0")) is WindowLSTM
    trainers["bfloat16"].model.set_weights(trainers["float32"].model.get_weights())
    losses = {}
    for name, trainer in trainers.items():
        state, losses[name] = trainer.initial_state(), []
        for inputs, targets in windows:
            loss, state = trainer.train_step(inputs, targets, state)
            losses[name].append(float(loss))
            assert [part.dtype for part in state] == [tf.float32] * 4
        assert trainer.train_step.experimental_get_tracing_count() == 1
    np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=1e-4)
    for a, b in zip(trainers["bfloat16"].model.get_weights(),
                    trainers["float32"].model.get_weights()):
        np.testing.assert_allclose(a, b, atol=5e-3)
    assert type(trainers["bfloat16"].model.get_layer("lstm_0")) is bfloat16.Bfloat16WindowLSTM
