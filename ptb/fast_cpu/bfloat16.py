"""The CPU fast path with its matrix products in bfloat16 (--mixed_precision on a
CPU with bfloat16 dot products).

On such a CPU (AVX512_BF16 or AMX), TensorFlow's own matrix product (oneDNN)
multiplies bfloat16 faster than float32, but XLA's CPU code multiplies it no
faster than float32 (docs/performance.md). So here the
products run as TensorFlow's operations, outside XLA, and only the
element-wise parts are compiled:

    Bfloat16WindowLSTM  WindowLSTM with bfloat16 products; the inputs' products
                        (x @ kernel forward, dz @ kernel^T backward) for the whole
                        window in one product each, outside the loop over time
    Bfloat16Dense       the output layer's three products in bfloat16
    Bfloat16TiedEmbedding  the same for --tied's output layer
    word_losses         the float32 path's, compiled with XLA on its own
    sgd_update          the float32 path's, compiled with XLA on its own

Only the products are bfloat16: each rounds its inputs to bfloat16, sums in
float32 and rounds its result to bfloat16 (TensorFlow's CPU kernel has no
float32 output), which the rest reads as float32. The weights, the gates and
the cell, the state carried between windows, the softmax, the losses and the
update stay float32. The LSTM's bias gradient is summed (in float32) from the
gate gradients as rounded for the weight gradients' products.
"""

import keras
import tensorflow as tf

from ptb.fast_cpu import step
from ptb.fast_cpu.window_lstm import WindowLSTM, cell, cell_gradient, upstream_gradients
from ptb.tied_embedding import TiedEmbedding


def to_bfloat16(tensor):
    return tf.cast(tensor, tf.bfloat16)


def check_float32(layer):
    """The layers below compute in float32 around their bfloat16 products."""
    if layer.compute_dtype != "float32":
        raise ValueError(f"{type(layer).__name__} computes in float32, its products in "
                         f"bfloat16; build it with dtype='float32', not {layer.compute_dtype}.")


def product(a, b, transpose_a=False, transpose_b=False):
    """a @ b of bfloat16 `a` and `b` (oneDNN's bfloat16 kernel), as float32."""
    return tf.cast(tf.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b),
                   tf.float32)


@keras.saving.register_keras_serializable(package="ptb")
class Bfloat16WindowLSTM(WindowLSTM):
    """WindowLSTM whose products are bfloat16; its weights and state stay float32."""

    def __init__(self, units, **kwargs):
        super().__init__(units, **kwargs)
        check_float32(self)

    def recurrence(self, inputs, h, c):
        weights = (self.cell.kernel, self.cell.recurrent_kernel, self.cell.bias)
        return _recurrence(inputs, h, c, *map(tf.convert_to_tensor, weights))


@tf.custom_gradient
def _recurrence(inputs, h, c, kernel, recurrent_kernel, bias):
    """WindowLSTM's recurrence (inputs [steps, batch, features]) with bfloat16
    products; the products of the inputs for the whole window at once."""
    steps, features, units = inputs.shape[0], inputs.shape[-1], h.shape[-1]
    inputs_16 = to_bfloat16(tf.reshape(inputs, [-1, features]))  # [steps * batch, features]
    kernel_16, recurrent_kernel_16 = to_bfloat16(kernel), to_bfloat16(recurrent_kernel)
    # One large product for the whole window's inputs runs nearer the CPU's peak
    # than one small product per step; only the state's product stays in the loop.
    input_gates = tf.reshape(product(inputs_16, kernel_16) + bias, [steps, -1, 4 * units])
    saved, previous_h, outputs = [], [], []
    for x_gates in tf.unstack(input_gates):
        previous_h.append(to_bfloat16(h))
        h, c, saved_step = cell(x_gates + product(previous_h[-1], recurrent_kernel_16), c)
        saved.append(saved_step)
        outputs.append(h)

    def gradient(d_outputs, d_h, d_c):
        d_outputs, d_h, d_c = upstream_gradients(d_outputs, d_h, d_c, h, steps)
        d_gates = []
        for saved_step, d_output in zip(saved[::-1], d_outputs[::-1]):
            d_step_gates, d_c = cell_gradient(saved_step, d_h + d_output, d_c)
            d_gates.append(to_bfloat16(d_step_gates))
            d_h = product(d_gates[-1], recurrent_kernel_16, transpose_b=True)
        # The products that need every step's gate gradients, once for the window.
        d_gates_16 = tf.concat(d_gates[::-1], axis=0)  # [steps * batch, 4 * units]
        d_inputs = product(d_gates_16, kernel_16, transpose_b=True)
        d_kernel = product(inputs_16, d_gates_16, transpose_a=True)
        d_recurrent_kernel = product(tf.concat(previous_h, axis=0), d_gates_16,
                                     transpose_a=True)
        d_bias = tf.reduce_sum(tf.cast(d_gates_16, tf.float32), axis=0)
        return (tf.reshape(d_inputs, [steps, -1, features]), d_h, d_c, d_kernel,
                d_recurrent_kernel, d_bias)

    return (tf.stack(outputs), h, c), gradient


@keras.saving.register_keras_serializable(package="ptb")
class Bfloat16Dense(keras.layers.Dense):
    """keras.layers.Dense (a bias, no activation) whose products are bfloat16;
    float32 weights."""

    def __init__(self, units, **kwargs):
        super().__init__(units, **kwargs)
        check_float32(self)
        if not self.use_bias or self.activation is not keras.activations.linear:
            raise ValueError("Bfloat16Dense needs use_bias=True and no activation; "
                             "use keras.layers.Dense.")

    def call(self, inputs, training=None):
        del training
        rows = tf.reshape(inputs, [-1, inputs.shape[-1]])
        outputs = _affine(rows, tf.convert_to_tensor(self.kernel),
                          tf.convert_to_tensor(self.bias))
        return tf.reshape(outputs, tf.concat([tf.shape(inputs)[:-1], [self.units]], axis=0))


@keras.saving.register_keras_serializable(package="ptb")
class Bfloat16TiedEmbedding(TiedEmbedding):
    """TiedEmbedding whose output products (reverse=True) are bfloat16; float32 weights."""

    def __init__(self, input_dim, output_dim, **kwargs):
        super().__init__(input_dim, output_dim, **kwargs)
        check_float32(self)

    def call(self, inputs, reverse=False):
        if not reverse:
            return super().call(inputs)
        rows = tf.reshape(inputs, [-1, self.output_dim])
        outputs = _affine_transposed(rows, tf.convert_to_tensor(self.embeddings),
                                     tf.convert_to_tensor(self.bias))
        return tf.reshape(outputs, tf.concat([tf.shape(inputs)[:-1], [self.input_dim]], axis=0))


@tf.custom_gradient
def _affine(rows, kernel, bias):
    """rows @ kernel + bias, the three products in bfloat16."""
    rows_16, kernel_16 = to_bfloat16(rows), to_bfloat16(kernel)
    outputs = product(rows_16, kernel_16) + bias

    def gradient(d_outputs):
        d_outputs_16 = to_bfloat16(d_outputs)
        return (product(d_outputs_16, kernel_16, transpose_b=True),
                product(rows_16, d_outputs_16, transpose_a=True),
                tf.reduce_sum(d_outputs, axis=0))

    return outputs, gradient


@tf.custom_gradient
def _affine_transposed(rows, matrix, bias):
    """rows @ matrix^T + bias (the tied embedding's [vocabulary x units] matrix),
    the three products in bfloat16."""
    rows_16, matrix_16 = to_bfloat16(rows), to_bfloat16(matrix)
    outputs = product(rows_16, matrix_16, transpose_b=True) + bias

    def gradient(d_outputs):
        d_outputs_16 = to_bfloat16(d_outputs)
        return (product(d_outputs_16, matrix_16),
                product(d_outputs_16, rows_16, transpose_a=True),
                tf.reduce_sum(d_outputs, axis=0))

    return outputs, gradient


word_losses = tf.function(step.word_losses, jit_compile=True)


def sgd_update(optimizer, gradients, variables):
    """step.sgd_update compiled with XLA on its own. Called while the training
    step is traced; the variables are captured, as a tf.function takes no Keras
    variables as arguments."""
    update = tf.function(lambda gradients: step.sgd_update(optimizer, gradients, variables),
                         jit_compile=True)
    update(gradients)
