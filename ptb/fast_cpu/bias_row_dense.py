"""keras.layers.Dense for CPUs: the bias as one more row of the kernel.

    [x, 1] @ [kernel; bias] = x @ kernel + bias

The PTB model's output layer maps each word's 200 hidden units to 10,000
logits. As keras.layers.Dense, XLA's CPU code adds the bias in a pass of its
own over the [words x vocabulary] logits, and the backward pass sums the
[words x vocabulary] gradient over the words for the bias's gradient: a
column sum beside the output layer's two backward products. With the bias
inside the product, its gradient is the last row of [x, 1]^T @ gradient, the
product that gives the kernel's gradient anyway, one row larger
(docs/performance.md has the profile and the step times).

Same weights as keras.layers.Dense (checkpoints are interchangeable) and the
same function, to float32 rounding (the bias is added inside the product's
sum rather than after it). The fast path (`fast_cpu.FAST`) uses it with
`WindowLSTM`, on one CPU replica only.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="ptb")
class BiasRowDense(keras.layers.Dense):

    def __init__(self, units, **kwargs):
        super().__init__(units, **kwargs)
        if not self.use_bias:
            raise ValueError("BiasRowDense needs use_bias=True; use keras.layers.Dense.")

    def call(self, inputs, training=None):
        del training
        rows = tf.reshape(inputs, [-1, inputs.shape[-1]])
        rows_and_ones = tf.concat([rows, tf.ones_like(rows[:, :1])], axis=1)
        kernel_and_bias = tf.concat([self.kernel, self.bias[None, :]], axis=0)
        outputs = tf.matmul(rows_and_ones, kernel_and_bias)
        outputs = tf.reshape(outputs, tf.concat([tf.shape(inputs)[:-1], [self.units]], axis=0))
        return outputs if self.activation is None else self.activation(outputs)
