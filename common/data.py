"""Training batches that a resumed run draws exactly as an uninterrupted one would.

A tf.data `shuffle(..., reshuffle_each_iteration=True)` draws each epoch's order
from a random stream that restarts with the process, so a run resumed at epoch
5 would see epoch 1's order again. Here each epoch's order, and any random
augmentation, is a pure function of (seed, epoch, batch):

    epoch e:   order_e = stateless_shuffle(range(n), seed=(seed, e))
               batch i = examples order_e[i*B : (i+1)*B], augmented with seed (seed, e, i)

and the dataset runs from the resumed epoch to the last, to be used with
`training.fit(..., initial_epoch=first_epoch, steps_per_epoch=batches_per_epoch(...))`,
which keeps one iterator across the epochs.
"""

import math

import tensorflow as tf


def without_autotune(dataset):
    """`dataset` with tf.data's autotuning switched off.

    These pipelines slice arrays already in memory: there is nothing to tune.
    With autotuning on, deleting an iterator after a busy loop sometimes waited
    seconds for the autotuning thread's next round, and every epoch ends an
    iterator (docs/performance.md). Prefetching still overlaps with it off.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def batches_per_epoch(num_examples, batch_size):
    return math.ceil(num_examples / batch_size)


def shuffled_epochs(features, labels, batch_size, seed, first_epoch, epochs, augment=None):
    """(features, labels) batches of epochs first_epoch .. epochs - 1, reshuffled every epoch.

    augment: optional `augment(features, seed) -> features` for one batch, where
    seed is a stateless-random seed (shape [2]) unique to that batch.
    """
    features, labels = tf.convert_to_tensor(features), tf.convert_to_tensor(labels)
    num_examples = int(labels.shape[0])

    def one_epoch(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.random.experimental.stateless_shuffle(
            tf.range(num_examples, dtype=tf.int64), seed=epoch_seed)
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size).enumerate().map(
            lambda index, batch: gather(batch, tf.random.experimental.stateless_fold_in(
                epoch_seed, index)))

    def gather(batch, batch_seed):
        batch_features = tf.gather(features, batch)
        if augment is not None:
            batch_features = augment(batch_features, batch_seed)
        return batch_features, tf.gather(labels, batch)

    return without_autotune(tf.data.Dataset.range(first_epoch, epochs)
                            .flat_map(one_epoch)
                            .prefetch(tf.data.AUTOTUNE))  # the next batch is ready while a step runs


def in_order(features, labels, batch_size):
    """Batches in stored order (validation and test)."""
    return without_autotune(tf.data.Dataset.from_tensor_slices((features, labels))
                            .batch(batch_size).prefetch(tf.data.AUTOTUNE))
