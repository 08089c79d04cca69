"""An embedding that is also the output layer: tied input and output word vectors.

    embedding = TiedEmbedding(vocab_size, hidden_size)
    vectors = embedding(words)                 # [batch, time, hidden], as keras.layers.Embedding
    logits = embedding(outputs, reverse=True)  # outputs @ embeddings^T + bias: [batch, time, vocab]

Press & Wolf (2017) and Inan et al. (2017): the word's input vector is also
its output vector, which removes vocab_size x hidden_size weights (2,000,000
in `small`) and usually lowers perplexity. Needs the recurrent layer's output
as wide as the embedding, as in all the tutorial's presets.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="ptb")
class TiedEmbedding(keras.layers.Layer):

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.input_dim, self.output_dim = input_dim, output_dim
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(shape=(self.input_dim, self.output_dim),
                                          initializer=self.embeddings_initializer,
                                          name="embeddings")
        # The output layer's own weights: one bias per word.
        self.bias = self.add_weight(shape=(self.input_dim,), initializer=self.bias_initializer,
                                    name="bias")

    def call(self, inputs, reverse=False):
        embeddings = tf.cast(self.embeddings, self.compute_dtype)
        if not reverse:  # as keras.layers.Embedding: a gather, its gradient the rows read
            return tf.gather(embeddings, tf.cast(inputs, tf.int32))
        inputs = tf.cast(inputs, self.compute_dtype)
        return (tf.tensordot(inputs, embeddings, axes=[[-1], [1]])
                + tf.cast(self.bias, self.compute_dtype))

    def compute_output_shape(self, input_shape, reverse=False):
        if reverse:
            return (*input_shape[:-1], self.input_dim)
        return (*input_shape, self.output_dim)

    def compute_output_spec(self, inputs, reverse=False):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape, reverse),
                                 dtype=self.compute_dtype)

    def get_config(self):
        return dict(super().get_config(), input_dim=self.input_dim, output_dim=self.output_dim,
                    embeddings_initializer=keras.initializers.serialize(
                        self.embeddings_initializer),
                    bias_initializer=keras.initializers.serialize(self.bias_initializer))
