"""The CPU training step's loss gradient and update: the same numbers as Keras', fewer passes.

    word_losses(targets, logits)               sparse softmax cross-entropy, its gradient
                                               in one pass over the logits
    sgd_update(optimizer, gradients, variables)  SGD on the gradient clipped to one global
                                               norm, only the window's embedding rows rewritten

Both are checked against Keras (tests/test_ptb_fast_cpu.py); docs/performance.md
gives what each saves.
"""

import tensorflow as tf


def word_losses(targets, logits):
    """-log softmax(logits)[target] of every word: sparse softmax cross-entropy.

    Keras' loss (TensorFlow's kernel) writes the gradient out in the forward pass
    and the backward pass then scales it: two more passes over the [words x
    vocabulary] logits than here, where the gradient is written once, in the
    backward pass.
    """
    # float32 even under --mixed_precision: the softmax over 10,000 words needs its range.
    return _word_losses(tf.cast(targets, tf.int32), tf.cast(logits, tf.float32))


@tf.custom_gradient
def _word_losses(targets, logits):
    log_normaliser = tf.reduce_logsumexp(logits, axis=-1)
    target_logits = tf.gather(logits, targets, axis=-1, batch_dims=targets.shape.rank)

    def gradient(upstream):
        softmax = tf.exp(logits - log_normaliser[..., None])
        one_hot = tf.one_hot(targets, tf.shape(logits)[-1], dtype=logits.dtype)
        return None, (softmax - one_hot) * upstream[..., None]

    return log_normaliser - target_logits, gradient


def sgd_update(optimizer, gradients, variables):
    """The tutorial's update on one device: SGD on the whole gradient clipped to
    one global norm, rewriting only the embedding rows of the window's words.

    The embedding's gradient arrives as one row per word of the window
    (tf.IndexedSlices). Keras' SGD makes it a dense [vocabulary x hidden]
    tensor, twice (for the clipping and for the update), and rewrites every
    row; the tutorial's TF1 optimizer updated only those rows, as here. The
    norm is the one Keras and TF1's clip_by_global_norm take: over the rows as
    they come (a word that occurs twice contributes two rows, not their sum),
    clipped at the optimizer's `global_clipnorm`. The result is the optimizer's
    own `apply` to float32 rounding. With --tied the embedding is also the
    output layer, its gradient dense, and every row is rewritten.
    """
    clip_norm = optimizer.global_clipnorm
    norm = global_norm(gradients)
    # Keras' clipping: a scale of 1 below the norm; NaN (no update) if it is not finite.
    scale = clip_norm * tf.minimum(1.0 / norm, 1.0 / clip_norm) + (norm - norm)
    step_size = tf.cast(optimizer.learning_rate, tf.float32) * scale
    for gradient, variable in zip(gradients, variables):
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.IndexedSlices(gradient.values * step_size, gradient.indices,
                                        gradient.dense_shape)
        else:
            gradient = gradient * step_size
        optimizer.assign_sub(variable, gradient)  # a scatter for IndexedSlices
    optimizer.iterations.assign_add(1)


def global_norm(gradients):
    """tf.linalg.global_norm over the gradients, an IndexedSlices' rows as they come."""
    return tf.sqrt(tf.add_n([
        sum_of_squares(g.values if isinstance(g, tf.IndexedSlices) else g) for g in gradients]))


def sum_of_squares(tensor):
    """tf.reduce_sum(tf.square(tensor)), adding the halves of its rows first.

    XLA's CPU code makes a plain sum over the output layer's [hidden x
    vocabulary] gradient a slow reduce-window; halving the rows down to at most
    8 is one fused pass. It is a pairwise sum, as accurate as the plain one.
    """
    squares = tf.square(tensor)
    # A scalar, or rows unknown when traced (0 here): the plain sum.
    while squares.shape.rank and (squares.shape[0] or 0) > 8:
        half = squares.shape[0] // 2
        # An odd row count keeps its last row aside.
        squares = tf.concat([squares[:half] + squares[half:2 * half], squares[2 * half:]], 0)
    return tf.reduce_sum(squares)
