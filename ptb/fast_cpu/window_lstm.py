"""keras.layers.LSTM for CPUs: the LSTM's recurrence written out for XLA.

On a CPU, keras.layers.LSTM runs its cell in a while loop, and automatic
differentiation adds, per time step, the products for the weights' gradients.
`WindowLSTM` computes the same function from the same weights (checkpoints
are interchangeable with keras.layers.LSTM) as an unrolled window that XLA
compiles whole, with a hand-written backward pass:

- per step, x_t @ kernel and h_{t-1} @ recurrent_kernel forward, and
  dz_t @ kernel^T and dz_t @ recurrent_kernel^T backward;
- the kernel's and the recurrent kernel's gradients for the whole window in
  one product each.

Step t of a layer then needs only step t of the layer below, forward (and
step t of the layer above, backward), so XLA's runtime runs the two layers'
steps side by side; one layer's steps alone, small and one after another,
leave the two cores partly idle (docs/performance.md).

It is for CPUs only: on a GPU keras.layers.LSTM runs the cuDNN kernel, which is
faster still, so `fast_cpu.path_for` picks this layer only for one CPU
replica. It supports what the PTB model uses (tanh / sigmoid, biases, no
dropout inside the layer, no mask, a fixed window length) and says so otherwise.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="ptb")
class WindowLSTM(keras.layers.LSTM):

    def __init__(self, units, **kwargs):
        super().__init__(units, **kwargs)
        check_supported(self)

    def build(self, sequences_shape, initial_state_shape=None):
        if sequences_shape[1] is None:
            raise ValueError("WindowLSTM needs a fixed window length (the time dimension "
                             "of its input); use keras.layers.LSTM.")
        super().build(sequences_shape, initial_state_shape)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        del training  # no dropout inside the layer
        if mask is not None:
            raise ValueError("WindowLSTM does not support masks; use keras.layers.LSTM.")
        # The initial state arrives as tensors (a stateful layer's: its variables).
        h, c = (tf.cast(tf.convert_to_tensor(state), sequences.dtype) for state in initial_state)
        outputs, h, c = self.recurrence(tf.transpose(sequences, [1, 0, 2]), h, c)
        return h, tf.transpose(outputs, [1, 0, 2]), [h, c]

    def recurrence(self, inputs, h, c):
        """(outputs, h, c) over a window, inputs [steps, batch, features]."""
        dtype = inputs.dtype
        return _recurrence(inputs, h, c, tf.cast(self.cell.kernel, dtype),
                           tf.cast(self.cell.recurrent_kernel, dtype),
                           tf.cast(self.cell.bias, dtype))


def check_supported(layer):
    """Refuses, naming them, the arguments of keras.layers.LSTM that `layer` (a
    WindowLSTM or StreamLSTM) does not compute."""
    unsupported = {
        "activation": layer.cell.activation is not keras.activations.tanh,
        "recurrent_activation": layer.cell.recurrent_activation is not keras.activations.sigmoid,
        "use_bias": not layer.cell.use_bias,
        "dropout": bool(layer.cell.dropout),
        "recurrent_dropout": bool(layer.cell.recurrent_dropout),
        "go_backwards": layer.go_backwards,
    }
    named = [name for name, bad in unsupported.items() if bad]
    if named:
        raise ValueError(f"{type(layer).__name__} does not support {', '.join(named)} other "
                         "than the defaults; use keras.layers.LSTM.")


@keras.saving.register_keras_serializable(package="ptb")
class StreamLSTM(keras.layers.LSTM):
    """keras.layers.LSTM for reading a stream (evaluation, batch 1): the inputs'
    products for the whole window in one product, then the recurrence one step
    at a time (a loop XLA compiles as a loop, for windows of any length).

    At batch 1 each step is a matrix-vector product that reads the whole kernel
    from memory; Keras' cell reads both kernels at every step, this only the
    recurrent one. The same function from the same weights, to float32 rounding
    (the bias and the input product are added before the recurrent product).
    Forward only: it has no gradient written out.
    """

    def __init__(self, units, **kwargs):
        super().__init__(units, **kwargs)
        check_supported(self)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        del training  # no dropout inside the layer
        if mask is not None:
            raise ValueError("StreamLSTM does not support masks; use keras.layers.LSTM.")
        h, c = (tf.cast(tf.convert_to_tensor(state), sequences.dtype) for state in initial_state)
        kernel, recurrent_kernel, bias = (tf.cast(weight, sequences.dtype) for weight in (
            self.cell.kernel, self.cell.recurrent_kernel, self.cell.bias))
        input_gates = tf.einsum("btf,fg->tbg", sequences, kernel) + bias  # [time, batch, 4H]

        def step(state, x_gates):
            h, c, _ = cell(x_gates + tf.matmul(state[0], recurrent_kernel), state[1])
            return h, c

        outputs, cells = tf.scan(step, input_gates, initializer=(h, c))
        return outputs[-1], tf.transpose(outputs, [1, 0, 2]), [outputs[-1], cells[-1]]


@tf.custom_gradient
def _recurrence(inputs, h, c, kernel, recurrent_kernel, bias):
    """The LSTM over a window, with its backward pass written out.

    inputs: [steps, batch, features]. Gates in Keras' order (input, forget,
    cell, output). Returns the outputs [steps, batch, units] and the final h and c.
    """
    units = h.shape[-1]
    saved, previous_h, outputs = [], [], []
    for x in tf.unstack(inputs):
        previous_h.append(h)
        h, c, saved_step = cell(tf.matmul(x, kernel) + tf.matmul(h, recurrent_kernel) + bias, c)
        saved.append(saved_step)
        outputs.append(h)

    def gradient(d_outputs, d_h, d_c):
        d_outputs, d_h, d_c = upstream_gradients(d_outputs, d_h, d_c, h, len(saved))
        d_gates, d_inputs = [], []
        for saved_step, d_output in zip(saved[::-1], d_outputs[::-1]):
            d_step_gates, d_c = cell_gradient(saved_step, d_h + d_output, d_c)
            d_gates.append(d_step_gates)
            d_h = tf.matmul(d_gates[-1], recurrent_kernel, transpose_b=True)
            d_inputs.append(tf.matmul(d_gates[-1], kernel, transpose_b=True))
        d_gates = tf.reshape(tf.stack(d_gates[::-1]), [-1, 4 * units])
        d_kernel = tf.matmul(tf.reshape(inputs, [-1, inputs.shape[-1]]), d_gates,
                             transpose_a=True)
        d_recurrent_kernel = tf.matmul(tf.reshape(tf.stack(previous_h), [-1, units]),
                                       d_gates, transpose_a=True)
        return (tf.stack(d_inputs[::-1]), d_h, d_c, d_kernel, d_recurrent_kernel,
                tf.reduce_sum(d_gates, axis=0))

    return (tf.stack(outputs), h, c), gradient


def cell(gates, c):
    """One LSTM step from its gates' inputs [batch, 4 * units] (Keras' order: input,
    forget, cell, output): (h, c, what the backward step needs)."""
    i, f, g, o = tf.split(gates, 4, axis=1)
    i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
    c_previous = c
    c = f * c + i * g
    tanh_c = tf.tanh(c)
    return o * tanh_c, c, (i, f, g, o, c_previous, tanh_c)


def cell_gradient(saved_step, d_h, d_c):
    """One step back through `cell`, from the gradients reaching its h and c:
    (the gradient of its gates' inputs, the gradient of the c before it)."""
    i, f, g, o, c_previous, tanh_c = saved_step
    d_c = d_c + tf.raw_ops.TanhGrad(y=tanh_c, dy=d_h * o)
    d_gates = tf.concat([
        tf.raw_ops.SigmoidGrad(y=i, dy=d_c * g),
        tf.raw_ops.SigmoidGrad(y=f, dy=d_c * c_previous),
        tf.raw_ops.TanhGrad(y=g, dy=d_c * i),
        tf.raw_ops.SigmoidGrad(y=o, dy=d_h * tanh_c),
    ], axis=1)
    return d_gates, d_c * f


def upstream_gradients(d_outputs, d_h, d_c, h, steps):
    """The gradients reaching a window's outputs (one per step) and its final h
    and c, zeros for those that arrive as None (nothing depends on them)."""
    d_h = tf.zeros_like(d_c) if d_h is None else d_h
    d_c = tf.zeros_like(d_h) if d_c is None else d_c
    d_outputs = tf.unstack(d_outputs) if d_outputs is not None else [tf.zeros_like(d_h)] * steps
    return d_outputs, d_h, d_c
