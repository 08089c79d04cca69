"""ptb/ptb_word_lm.py: presets, model, loss, state, evaluation, fast path."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from ptb import benchmark
from ptb import ptb_word_lm
from ptb.window_lstm import WindowLSTM

SMALL = ptb_word_lm.PRESETS["small"]
TINY = dataclasses.replace(ptb_word_lm.PRESETS["small"], hidden_size=8, vocab_size=50,
                           batch_size=3, num_steps=4)


def test_presets_are_the_tutorials():
    as_tuple = lambda c: (c.init_scale, c.learning_rate, c.max_grad_norm, c.num_layers,  # noqa: E731
                          c.num_steps, c.hidden_size, c.epochs_at_full_lr, c.epochs,
                          c.keep_prob, c.lr_decay, c.batch_size, c.vocab_size)
    presets = ptb_word_lm.PRESETS
    assert as_tuple(presets["small"]) == (0.1, 1.0, 5, 2, 20, 200, 4, 13, 1.0, 0.5, 20, 10000)
    assert as_tuple(presets["medium"]) == (0.05, 1.0, 5, 2, 35, 650, 6, 39, 0.5, 0.8, 20, 10000)
    assert as_tuple(presets["large"]) == (0.04, 1.0, 10, 2, 35, 1500, 14, 55, 0.35, 1 / 1.15, 20,
                                          10000)
    assert as_tuple(presets["test"]) == (0.1, 1.0, 1, 1, 2, 2, 1, 1, 1.0, 0.5, 20, 10000)


@pytest.mark.parametrize("preset, expected", [
    # embedding V*H + per layer 4*(2H*H + H) + softmax H*V + V
    ("small", 4_651_600), ("medium", 19_775_200), ("large", 66_022_000), ("test", 50_040)])
def test_parameter_counts(preset, expected):
    config = ptb_word_lm.PRESETS[preset]
    hidden, vocab = config.hidden_size, config.vocab_size
    by_hand = (vocab * hidden + config.num_layers * 4 * (2 * hidden * hidden + hidden)
               + hidden * vocab + vocab)
    assert by_hand == expected
    assert ptb_word_lm.build_model(config).count_params() == expected


def test_initialisation_matches_the_tutorial():
    model = ptb_word_lm.build_model(SMALL)
    for weight in model.weights:
        values = weight.numpy()
        if weight.path.startswith("lstm") and "bias" in weight.path:
            assert not values.any(), "BasicLSTMCell biases start at zero (forget_bias=0)"
        else:
            assert np.abs(values).max() <= SMALL.init_scale
            assert np.abs(values).max() > 0.9 * SMALL.init_scale  # uniform, not narrower


def test_learning_rate_schedule():
    rates = [ptb_word_lm.learning_rate_for_epoch(SMALL, epoch) for epoch in range(13)]
    assert rates == [1.0] * 4 + [0.5**k for k in range(1, 10)]


def test_dropout_draws_a_new_mask_at_every_time_step():
    config = ptb_word_lm.PRESETS["medium"]
    model = ptb_word_lm.build_model(dataclasses.replace(config, hidden_size=16, vocab_size=30,
                                                        batch_size=1, num_steps=10))
    dropout = model.get_layer(index=2)
    assert isinstance(dropout, keras.layers.Dropout) and dropout.rate == pytest.approx(0.5)
    kept = dropout(tf.ones((1, 10, 16)), training=True).numpy() != 0
    assert len({row.tobytes() for row in kept[0]}) > 5


def test_sequence_loss_sums_over_time_and_averages_over_batch():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 4, 7)).astype(np.float32)
    targets = rng.integers(0, 7, (3, 4)).astype(np.int32)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    per_word = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    # The loss as Keras applies it in fit/evaluate, on a model that outputs its input.
    passthrough = keras.Input(shape=(4, 7))
    model = keras.Model(passthrough, keras.layers.Identity()(passthrough))
    model.compile(loss=ptb_word_lm.sequence_loss)
    loss = model.evaluate(logits, targets, batch_size=3, verbose=0)
    assert float(loss) == pytest.approx(per_word.sum(axis=1).mean(), rel=1e-5)
    assert float(loss) == pytest.approx(4 * per_word.mean(), rel=1e-5)  # num_steps x per-word


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


def test_state_carries_from_window_to_window():
    # Larger weights than the tutorial's, so the state visibly changes the output.
    model = ptb_word_lm.build_model(dataclasses.replace(TINY, init_scale=1.0), num_steps=None)
    ids = np.random.default_rng(2).integers(0, TINY.vocab_size, (TINY.batch_size, 8))
    whole = model(ids).numpy()
    ptb_word_lm.reset_lstm_states(model)
    first, second = model(ids[:, :4]).numpy(), model(ids[:, 4:]).numpy()
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-6)
    ptb_word_lm.reset_lstm_states(model)
    restarted = model(ids[:, 4:]).numpy()
    assert np.abs(restarted - second).max() > 1e-2  # without the state it differs


def test_windowed_evaluation_equals_word_by_word():
    trained = ptb_word_lm.build_model(TINY)
    model = ptb_word_lm.build_eval_model(TINY, trained)
    ids = np.random.default_rng(3).integers(0, TINY.vocab_size, 157)
    word_by_word = ptb_word_lm.evaluate_stream(model, ids, window=1)  # the tutorial's way
    assert ptb_word_lm.evaluate_stream(model, ids, window=50) == pytest.approx(word_by_word,
                                                                               rel=1e-5)
    # By hand: exp of the mean of -log p(next word) over the one continuous stream.
    ptb_word_lm.reset_lstm_states(model)
    logits = model(ids[None, :-1]).numpy()[0]
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    by_hand = np.exp(-log_probs[np.arange(156), ids[1:]].mean())
    assert word_by_word == pytest.approx(by_hand, rel=1e-4)


def test_gpu_and_several_replicas_get_the_plain_cudnn_eligible_model(monkeypatch):
    cpu_model = ptb_word_lm.build_training_model(TINY)
    assert cpu_model.jit_compile and isinstance(cpu_model.get_layer("lstm_0"), WindowLSTM)
    for cpu_only, replicas in ((False, 1), (True, 2)):
        monkeypatch.setattr(ptb_word_lm, "cpu_only", lambda: cpu_only)
        model = ptb_word_lm.build_training_model(TINY, replicas=replicas)
        assert not model.jit_compile  # cuDNN kernels cannot be compiled with XLA
        for layer in ("lstm_0", "lstm_1"):
            lstm = model.get_layer(layer)
            # Keras takes the cuDNN kernel for exactly these arguments.
            assert type(lstm) is keras.layers.LSTM and not lstm.unroll and lstm.use_cudnn == "auto"
            assert lstm.activation is keras.activations.tanh and lstm.cell.use_bias
            assert lstm.recurrent_activation is keras.activations.sigmoid
            assert lstm.cell.recurrent_dropout == 0


def test_fast_path_trains_like_the_plain_keras_path():
    """WindowLSTM + XLA + several steps per call (on a CPU), against the plain
    Keras stack, from the same weights: same losses to float32 tolerance."""
    data = benchmark.random_windows(SMALL, num_windows=4)
    fast = benchmark.build_trainer(SMALL, steps_per_execution=2)
    plain = benchmark.build_trainer(SMALL, plain=True)
    plain.set_weights(fast.get_weights())
    epoch_losses, step_losses = {}, {}
    for name, model in (("fast", fast), ("plain", plain)):
        epoch_losses[name] = model.fit(data, verbose=0, shuffle=False).history["loss"][0]
        step_losses[name] = [float(model.train_on_batch(x, y)) for x, y in data.take(2)]
    assert epoch_losses["fast"] == pytest.approx(20 * np.log(SMALL.vocab_size), rel=0.05)
    assert epoch_losses["fast"] == pytest.approx(epoch_losses["plain"], rel=2e-5)
    np.testing.assert_allclose(step_losses["fast"], step_losses["plain"], rtol=2e-5)
    for a, b in zip(fast.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, atol=2e-5)
