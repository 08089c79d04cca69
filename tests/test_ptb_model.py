"""ptb/ptb_word_lm.py: presets, model, loss, state, evaluation."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from ptb import engine
from ptb import fast_cpu
from ptb import ptb_word_lm

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
    # Tied: the output layer keeps only its bias.
    tied = dataclasses.replace(config, tied=True)
    assert ptb_word_lm.build_model(tied).count_params() == expected - hidden * vocab


def test_initialisation_matches_the_tutorial():
    model = ptb_word_lm.build_model(SMALL)
    for weight in model.weights:
        values = weight.numpy()
        if weight.path.startswith("lstm") and "bias" in weight.path:
            assert not values.any(), "BasicLSTMCell biases start at zero (forget_bias=0)"
        else:
            assert np.abs(values).max() <= SMALL.init_scale
            assert np.abs(values).max() > 0.9 * SMALL.init_scale  # uniform, not narrower


@pytest.mark.parametrize("rnn_cell, tied", [("lstm", False), ("gru", False), ("lstm", True)])
def test_every_weight_starts_from_numbers_of_its_own(rnn_cell, tied):
    """The tutorial draws each variable on its own; no two weights share their numbers,
    whatever their shapes (a kernel and a recurrent kernel are both [units, 4 units])."""
    config = dataclasses.replace(SMALL, rnn_cell=rnn_cell, tied=tied)
    drawn = [weight for weight in ptb_word_lm.build_model(config, seed=3).weights
             if weight.numpy().any()]  # the zero biases aside
    for i, first in enumerate(drawn):
        for second in drawn[i + 1:]:
            size = min(first.numpy().size, second.numpy().size)
            assert not np.array_equal(first.numpy().ravel()[:size],
                                      second.numpy().ravel()[:size]), (first.path, second.path)
    # The same seed, the same numbers.
    again = ptb_word_lm.build_model(config, seed=3).weights
    assert all(np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(ptb_word_lm.build_model(config, seed=3).weights, again))


def test_learning_rate_schedule():
    rates = [ptb_word_lm.learning_rate_for_epoch(SMALL, epoch) for epoch in range(13)]
    assert rates == [1.0] * 4 + [0.5**k for k in range(1, 10)]


def test_dropout_draws_a_new_mask_at_every_time_step():
    config = ptb_word_lm.PRESETS["medium"]
    model = ptb_word_lm.build_model(dataclasses.replace(config, hidden_size=16, vocab_size=30,
                                                        batch_size=1, num_steps=10))
    dropout = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dropout))
    assert dropout.rate == pytest.approx(0.5)
    kept = dropout(tf.ones((1, 10, 16)), training=True).numpy() != 0
    assert len({row.tobytes() for row in kept[0]}) > 5


def test_window_cost_sums_over_time_and_averages_over_batch():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 4, 7)).astype(np.float32)
    targets = rng.integers(0, 7, (3, 4)).astype(np.int32)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    per_word = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    # The training step's loss: the batch mean of the per-stream sums.
    loss = ptb_word_lm.window_cost(fast_cpu.PLAIN.word_losses(targets, logits), batch_size=3)
    assert float(loss) == pytest.approx(per_word.sum(axis=1).mean(), rel=1e-5)
    assert float(loss) == pytest.approx(4 * per_word.mean(), rel=1e-5)  # num_steps x per-word


def test_state_carries_from_window_to_window():
    # Larger weights than the tutorial's, so the state visibly changes the output.
    config = dataclasses.replace(TINY, init_scale=1.0)
    model = ptb_word_lm.build_model(config)
    ids = tf.constant(np.random.default_rng(2).integers(0, TINY.vocab_size, (TINY.batch_size, 8)))
    zero = engine.zero_state(model, TINY.batch_size)
    whole = model([ids, *zero])[0].numpy()
    first, *state = model([ids[:, :4], *zero])
    second = model([ids[:, 4:], *state])[0].numpy()
    np.testing.assert_allclose(np.concatenate([first.numpy(), second], axis=1), whole, atol=1e-6)
    restarted = model([ids[:, 4:], *zero])[0].numpy()
    assert np.abs(restarted - second).max() > 1e-2  # without the state it differs


def test_windowed_evaluation_equals_word_by_word():
    model = ptb_word_lm.build_model(TINY)  # windows of any length
    ids = np.random.default_rng(3).integers(0, TINY.vocab_size, 157)
    # The tutorial's way, one word at a time, against windows of 50 words.
    word_by_word = np.exp(-engine.stream_log_probs(model, TINY, ids, window=1).mean())
    assert np.exp(-engine.stream_log_probs(model, TINY, ids, window=50).mean()) == pytest.approx(
        word_by_word, rel=1e-5)
    assert ptb_word_lm.evaluate_stream(model, TINY, ids) == pytest.approx(word_by_word, rel=1e-5)
    # By hand: exp of the mean of -log p(next word) over the one continuous stream.
    logits = model([tf.constant(ids[None, :-1]), *engine.zero_state(model, 1)])[0].numpy()[0]
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    by_hand = np.exp(-log_probs[np.arange(156), ids[1:]].mean())
    assert word_by_word == pytest.approx(by_hand, rel=1e-4)
    # Compiled with the CPU's stream layers, or plain Keras.
    np.testing.assert_allclose(engine.stream_log_probs(model, TINY, ids),
                               engine.stream_log_probs(model, TINY, ids, compiled=False),
                               rtol=1e-5, atol=1e-6)
