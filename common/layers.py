"""Layers the three tutorials share."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="common")
class ReplicaDropout(keras.layers.Dropout):
    """keras.layers.Dropout whose replicas draw masks of their own.

    Keras' Dropout draws its mask from a seed kept in one variable, which a
    tf.distribute strategy mirrors: every replica reads the same seed and, for
    its equal share of the batch, draws the same mask (checked with Keras 3.15
    on two mirrored CPUs), so the examples of replica 2 lose exactly the units
    that the matching examples of replica 1 lose. Here each replica folds its
    number into the seed. On one replica this is keras.layers.Dropout, draw for
    draw.

    For the same mask at every time step of a sequence [batch, time, features],
    as an RNN layer's own `dropout=` argument does, use noise_shape=(None, 1, None).
    """

    def call(self, inputs, training=False):
        replica = tf.distribute.get_replica_context()
        if not training or self.rate == 0 or replica is None or (
                replica.num_replicas_in_sync == 1):
            return super().call(inputs, training=training)
        seed = tf.random.experimental.stateless_fold_in(
            tf.cast(self.seed_generator.next(), tf.int64), replica.replica_id_in_sync_group)
        noise_shape = None
        if self.noise_shape is not None:
            noise_shape = [tf.shape(inputs)[axis] if size is None else size
                           for axis, size in enumerate(self.noise_shape)]
        return tf.nn.experimental.stateless_dropout(inputs, self.rate, seed=seed,
                                                    noise_shape=noise_shape)
