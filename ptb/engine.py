"""How the PTB model is trained and evaluated: the one door to what makes it fast.

    with strategy.scope():
        model = ptb_word_lm.build_model(config, num_steps=config.num_steps)  # keras.layers
        model.compile(optimizer=keras.optimizers.SGD(...))
    steps = engine.compile(model, config, strategy, ptb_word_lm.window_cost)
    loss, state = steps.train_step(inputs, targets, state)  # state: steps.initial_state()
    steps.model            # the model the steps train: `model`, or its CPU twin
    steps.stream_model()   # the trained weights, for windows of any length, batch 1

    log_probs = engine.stream_log_probs(model, config, ids)  # one stream, batch 1

The trainer writes the tutorial's model and loop in plain Keras; this module
decides, once, how each step is computed (`fast_cpu.path_for`):

    an LSTM on one CPU replica       the CPU fast path: the same function from the
                                     same weights, compiled with XLA (ptb/fast_cpu)
      with --mixed_precision         its matrix products in bfloat16 (fast_cpu/bfloat16.py)
    GPUs, several replicas, GRU and  the model as built, Keras' loss and update, each
    SimpleRNN cells                  replica on its own rows of every window

The fast path's layers are subclasses of Keras' with the same weights, so its
twin of the model is `keras.models.clone_model` with those layers swapped in;
checkpoints of the two are interchangeable.
"""

import dataclasses
from typing import Callable
import weakref

import keras
import numpy as np
import tensorflow as tf

from common import training
from ptb import fast_cpu
from ptb.tied_embedding import TiedEmbedding


@dataclasses.dataclass(frozen=True)
class Steps:
    """The compiled steps for one window of every row, and the model they train.

        loss, state = train_step(inputs, targets, state)   # one SGD step
        loss, state = eval_step(inputs, targets, state)    # no update, no dropout

    `inputs` and `targets` are the whole window [batch_size, num_steps];
    `state` is what the previous call returned (`initial_state()` at an
    epoch's start); `loss` is the window's cost.
    """

    name: str  # what computes the steps, as the trainer prints it
    model: keras.Model  # what the steps train; checkpoint and evaluate this one
    train_step: Callable
    eval_step: Callable
    initial_state: Callable
    path: fast_cpu.Path  # the parts of the model and step that compute them

    def stream_model(self):
        """A copy of the trained model for windows of any length, outside any
        strategy (a batch-1 stream runs on one device), in plain Keras layers;
        float32 after bfloat16 products, so that its numbers are those the tools
        (ptb.score, ptb.generate) compute from the saved model."""
        dtype = fast_cpu.stream_path(self.path).dtype
        words = keras.Input(shape=(None,), dtype="int32", name="words")
        state = [keras.Input(shape=spec.shape[1:], name=spec.name)
                 for spec in self.model.inputs[1:]]
        model = _clone(self.model, lambda layer: _rebuilt(layer, fast_cpu.PLAIN, dtype),
                       input_tensors=[words, *state])
        model.set_weights(self.model.get_weights())
        return model


def compile(model, config, strategy, window_cost, path=None):
    """The Steps that train `model` (ptb_word_lm.build_model with a fixed window,
    compiled with its optimizer, in `strategy.scope()`) under `strategy`.

    window_cost(word_losses, batch_size): the tutorial's cost of a window.
    path: how to compute (fast_cpu); None: `fast_cpu.path_for` decides. With
    several replicas each one trains on its own block of the window's rows
    (streams), always the same block, so the state it returns, and gets back
    with the next window, belongs to the streams it reads; the replicas'
    gradients join before the update (training.apply_gradients).
    """
    path = path or fast_cpu.path_for(strategy, config)
    with strategy.scope():
        model = twin(model, path)
        model.optimizer.build(model.trainable_variables)
    rows_per_replica = config.batch_size // strategy.num_replicas_in_sync

    def replica_rows(window):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return window[replica * rows_per_replica:(replica + 1) * rows_per_replica]

    def replica_loss(inputs, targets, state, training):
        logits, *state = model([replica_rows(inputs), *state], training=training)
        # Divided by the global batch: the replicas' losses add up to the window's.
        return window_cost(path.word_losses(replica_rows(targets), logits),
                           config.batch_size), state

    def replica_train_step(inputs, targets, state):
        with tf.GradientTape() as tape:
            loss, state = replica_loss(inputs, targets, state, training=True)
            scaled_loss = model.optimizer.scale_loss(loss)  # loss scaling under mixed_float16
        gradients = tape.gradient(scaled_loss, model.trainable_variables)
        path.update(model.optimizer, gradients, model.trainable_variables)
        return loss, state

    def replica_eval_step(inputs, targets, state):
        return replica_loss(inputs, targets, state, training=False)

    replica_zero_state = tf.function(lambda: zero_state(model, rows_per_replica))
    return Steps(path.name, model,
                 training.replicated_step(strategy, replica_train_step, path.jit_compile),
                 training.replicated_step(strategy, replica_eval_step, path.jit_compile),
                 lambda: strategy.run(replica_zero_state), path)


def twin(model, path):
    """`model` with the layers of `path` in place of Keras' LSTM, Dense and
    TiedEmbedding, the same weights and optimizer; `model` itself on the plain path."""
    if path.lstm_layer is keras.layers.LSTM and path.output_layer is keras.layers.Dense:
        return model
    twin_model = _clone(model, lambda layer: _rebuilt(layer, path, path.dtype))
    twin_model.set_weights(model.get_weights())
    twin_model.compile(optimizer=model.optimizer)
    return twin_model


def _clone(model, clone_function, input_tensors=None):
    """keras.models.clone_model, uncompiled: a compiled model's clone would be
    compiled too, and its saved file would carry an optimizer."""
    clone = keras.models.clone_model(model, input_tensors=input_tensors,
                                     clone_function=clone_function)
    return keras.Model(clone.inputs, clone.outputs, name=model.name)


def _rebuilt(layer, path, dtype):
    """A new layer of `path`'s class for `layer`, with its config (and `dtype`)."""
    classes = {keras.layers.LSTM: path.lstm_layer, keras.layers.Dense: path.output_layer,
               TiedEmbedding: path.tied_embedding}
    # The fast path's classes map back to Keras' own on the plain path.
    plain = next((keras_class for keras_class in classes if isinstance(layer, keras_class)),
                 type(layer))
    config = layer.get_config()
    if dtype and not isinstance(layer, keras.layers.InputLayer):
        config["dtype"] = dtype
    return classes.get(plain, plain).from_config(config)


def zero_state(model, batch_size):
    """The state every epoch (and every stream) starts from: zeros for each of the
    model's state inputs."""
    return [tf.zeros([batch_size, spec.shape[1]]) for spec in model.inputs[1:]]


def _window_log_probs(model, inputs, targets, state, word_losses):
    """log p(target) of every word of a window, and the state after it."""
    logits, *state = model([inputs, *state], training=False)
    return -word_losses(targets, logits), state


# Traced once per model and window shape.
_WINDOW_LOG_PROBS = {jit: tf.function(_window_log_probs, jit_compile=jit, reduce_retracing=True)
                     for jit in (False, True)}

# Windows of this many words with the state carried between them give the
# tutorial's one word at a time (batch 1, num_steps 1) to float32 rounding, much faster.
STREAM_WINDOW = 200


def stream_log_probs(model, config, ids, window=STREAM_WINDOW, compiled=True):
    """log p(ids[i + 1] | ids[0..i]) for every i: `ids` read by `model` as one
    continuous stream, a float64 numpy array of len(ids) - 1.

    The state starts at zero and is carried from window to window, so every
    word after the first is predicted from everything before it. Computed as
    the engine would after training `config`, on this process's first device
    outside any strategy: for an LSTM on a CPU, with XLA and fast_cpu.StreamLSTM,
    unless `compiled` is False (windows of many lengths, each of which XLA
    would compile anew).
    """
    path = fast_cpu.stream_path(fast_cpu.path_for(tf.distribute.get_strategy(), config))
    if not compiled:
        path = fast_cpu.PLAIN
    log_probs = _WINDOW_LOG_PROBS[path.jit_compile]
    stream_model = _stream_twin(model, path)
    ids = np.asarray(ids, dtype=np.int32)
    state = zero_state(model, 1)
    pieces = []
    for start in range(0, len(ids) - 1, window):
        stop = min(start + window, len(ids) - 1)
        piece, state = log_probs(stream_model, ids[None, start:stop],
                                 ids[None, start + 1:stop + 1], state, path.word_losses)
        pieces.append(piece.numpy()[0])
    return np.concatenate(pieces).astype(np.float64)


# Each model's stream twin, kept while the model lives, so that its compiled step is reused.
_STREAM_TWINS = weakref.WeakKeyDictionary()


def _stream_twin(model, path):
    """`model` with the LSTM layers of `path`, holding `model`'s weights as they are now."""
    if path.lstm_layer is keras.layers.LSTM:
        return model
    stream_twin = _STREAM_TWINS.get(model)
    if stream_twin is None:
        stream_twin = _clone(model, lambda layer: _rebuilt(layer, path, dtype=None))
        _STREAM_TWINS[model] = stream_twin
    stream_twin.set_weights(model.get_weights())
    return stream_twin
