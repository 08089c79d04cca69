"""keras.layers.LSTM for CPUs: the window's matrix products done at once.

On a CPU, keras.layers.LSTM runs its cell once per time step: forward, two
small matrix products per step (x_t @ kernel and h_{t-1} @ recurrent_kernel),
and automatic differentiation adds four more backward. For the small PTB
preset that is 240 products of a [20 x 200] by a [200 x 800] matrix (or one of
its gradients) per training window, of the 243 that a profile of the training
step found (docs/RESULTS.md); products that small keep the cores poorly busy.

`WindowLSTM` computes the same function from the same weights (checkpoints
are interchangeable with keras.layers.LSTM) with fewer, larger products:

- the input projection x_t @ kernel + bias of every step in one product;
- per step only h_{t-1} @ recurrent_kernel forward and, in the hand-written
  backward pass, dz_t @ recurrent_kernel^T;
- the recurrent kernel's gradient for the whole window in one product.

It is for CPUs only: on a GPU keras.layers.LSTM runs the cuDNN kernel, which is
faster still, so `ptb_word_lm.build_training_model` picks this layer only for
one CPU replica (`uses_cpu_speedups`). It supports what the PTB model uses (tanh / sigmoid, biases, no
dropout inside the layer, no mask, a fixed window length) and says so otherwise.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="ptb")
class WindowLSTM(keras.layers.LSTM):

    def __init__(self, units, **kwargs):
        super().__init__(units, **kwargs)
        unsupported = {
            "activation": self.cell.activation is not keras.activations.tanh,
            "recurrent_activation": self.cell.recurrent_activation is not keras.activations.sigmoid,
            "use_bias": not self.cell.use_bias,
            "dropout": bool(self.cell.dropout),
            "recurrent_dropout": bool(self.cell.recurrent_dropout),
            "go_backwards": self.go_backwards,
        }
        named = [name for name, bad in unsupported.items() if bad]
        if named:
            raise ValueError(f"WindowLSTM does not support {', '.join(named)} other than "
                             "the defaults; use keras.layers.LSTM.")

    def build(self, sequences_shape, initial_state_shape=None):
        if sequences_shape[1] is None:
            raise ValueError("WindowLSTM needs a fixed window length (the time dimension "
                             "of its input); use keras.layers.LSTM.")
        super().build(sequences_shape, initial_state_shape)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        del training  # no dropout inside the layer
        if mask is not None:
            raise ValueError("WindowLSTM does not support masks; use keras.layers.LSTM.")
        _, steps, features = sequences.shape
        dtype = sequences.dtype
        kernel = tf.cast(self.cell.kernel, dtype)
        recurrent_kernel = tf.cast(self.cell.recurrent_kernel, dtype)
        bias = tf.cast(self.cell.bias, dtype)

        time_major = tf.reshape(tf.transpose(sequences, [1, 0, 2]), [-1, features])
        gate_inputs = tf.reshape(tf.matmul(time_major, kernel) + bias,
                                 [steps, -1, 4 * self.units])
        # The initial state arrives as tensors (a stateful layer's: its variables).
        h, c = (tf.cast(tf.convert_to_tensor(state), dtype) for state in initial_state)
        outputs, h, c = _recurrence(gate_inputs, h, c, recurrent_kernel)
        return h, tf.transpose(outputs, [1, 0, 2]), [h, c]


@tf.custom_gradient
def _recurrence(gate_inputs, h, c, recurrent_kernel):
    """The LSTM's sequential part, with its backward pass written out.

    gate_inputs: [steps, batch, 4 * units], x_t @ kernel + bias for every step,
    gates in Keras' order (input, forget, cell, output). Returns the outputs
    [steps, batch, units] and the final h and c.
    """
    units = h.shape[-1]
    saved, previous_h, outputs = [], [], []
    for x_gates in tf.unstack(gate_inputs):
        i, f, g, o = tf.split(x_gates + tf.matmul(h, recurrent_kernel), 4, axis=1)
        i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
        c_previous = c
        c = f * c + i * g
        tanh_c = tf.tanh(c)
        previous_h.append(h)
        h = o * tanh_c
        saved.append((i, f, g, o, c_previous, tanh_c))
        outputs.append(h)

    def gradient(d_outputs, d_h, d_c):
        # Outputs that nothing depends on (the final state) can arrive as None.
        d_h = tf.zeros_like(h) if d_h is None else d_h
        d_c = tf.zeros_like(c) if d_c is None else d_c
        d_outputs = (tf.unstack(d_outputs) if d_outputs is not None
                     else [tf.zeros_like(h)] * len(saved))
        d_gates = []
        for (i, f, g, o, c_previous, tanh_c), d_output in zip(saved[::-1], d_outputs[::-1]):
            d_h = d_h + d_output
            d_c = d_c + tf.raw_ops.TanhGrad(y=tanh_c, dy=d_h * o)
            d_gates.append(tf.concat([
                tf.raw_ops.SigmoidGrad(y=i, dy=d_c * g),
                tf.raw_ops.SigmoidGrad(y=f, dy=d_c * c_previous),
                tf.raw_ops.TanhGrad(y=g, dy=d_c * i),
                tf.raw_ops.SigmoidGrad(y=o, dy=d_h * tanh_c),
            ], axis=1))
            d_c = d_c * f
            d_h = tf.matmul(d_gates[-1], recurrent_kernel, transpose_b=True)
        d_gates = tf.stack(d_gates[::-1])
        d_recurrent_kernel = tf.matmul(
            tf.reshape(tf.stack(previous_h), [-1, units]),
            tf.reshape(d_gates, [-1, 4 * units]), transpose_a=True)
        return d_gates, d_h, d_c, d_recurrent_kernel

    return (tf.stack(outputs), h, c), gradient
