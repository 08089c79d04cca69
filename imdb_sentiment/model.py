"""The tutorial's classifier; the recurrent layer is the only thing that differs.

    token ids [batch, 256] -> Embedding(10,000, 100) -> RNN(128) -> Dense(1, sigmoid)

With `bidirectional` (keras-io's and TensorFlow's text-classification
tutorials), a second RNN reads each review backwards and Dense sees both final
states: twice the recurrent weights, Dense 2H + 1. With padding="pre" the
backward reader ends on the padding of a short review.

Parameters (V = vocabulary, E = embedding size, H = units):
    Embedding  V * E                       1,000,000
    SimpleRNN  H * (E + H + 1)                29,312
    LSTM       4 * H * (E + H + 1)           117,248
    GRU        3 * H * (E + H + 2)            88,320   (reset_after: two biases)
    Dense      H + 1                             129
"""

import keras

from common import training
from common.cli import UserInputError
from common.layers import ReplicaDropout

RNN_LAYERS = {
    "simple_rnn": keras.layers.SimpleRNN,
    "lstm": keras.layers.LSTM,
    "gru": keras.layers.GRU,
}


def build_model(config):
    """The model for config.rnn (not compiled); call inside `strategy.scope()`."""
    if config.rnn not in RNN_LAYERS:
        raise UserInputError(f"--rnn={config.rnn}: choose one of {', '.join(RNN_LAYERS)}")
    inputs = keras.Input(shape=(config.sequence_length,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(config.vocab_size, config.embedding_dim, name="embedding")(inputs)
    # Word dropout (training only, no weights): zeroes whole word vectors, so the
    # model cannot lean on a few telltale words; it overfits less than without.
    # (The replicas of a tf.distribute strategy draw masks of their own: common/layers.py.)
    x = ReplicaDropout(
        config.word_dropout, noise_shape=(None, config.sequence_length, 1), name="word_dropout"
    )(x)
    # Dropout on the RNN's inputs: one mask for every step, as RNN(dropout=...) does.
    x = ReplicaDropout(config.dropout, noise_shape=(None, 1, None), name="input_dropout")(x)
    # Default arguments on purpose: tanh/sigmoid, no recurrent_dropout, unroll=False,
    # use_bias=True, GRU reset_after=True keep LSTM and GRU on the cuDNN kernel on a
    # GPU. No mask: padding="pre" puts real words last, and cuDNN would need
    # right-padded masks anyway.
    recurrent = RNN_LAYERS[config.rnn](config.units, name=config.rnn)
    if config.bidirectional:
        recurrent = keras.layers.Bidirectional(recurrent, name=f"bidirectional_{config.rnn}")
    x = recurrent(x)
    # float32 even under --mixed_precision: the probability and the loss need its range.
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32",
                                 name="positive_probability")(x)
    return keras.Model(inputs, outputs, name=f"imdb_{model_name(config)}")


def model_name(config):
    """config.rnn, or bidirectional_<rnn>: how run folders and tables name the model."""
    return f"bidirectional_{config.rnn}" if config.bidirectional else config.rnn


def loss(labels, probabilities):
    """Binary cross-entropy of each review."""
    return keras.losses.binary_crossentropy(keras.ops.cast(labels[:, None], "float32"),
                                            probabilities)


def accuracy(labels, probabilities):
    """1 where the review's more probable class is its label, else 0."""
    return keras.metrics.binary_accuracy(keras.ops.cast(labels[:, None], "float32"),
                                         probabilities)


METRICS = {"accuracy": accuracy}


def compile_model(model, config):
    """Gives the model its optimizer, Adam; call inside `strategy.scope()`."""
    # Clipping the global gradient norm keeps SimpleRNN's exploding gradients
    # (256 steps of tanh) from wrecking Adam's first updates.
    model.compile(optimizer=keras.optimizers.Adam(
        config.learning_rate, global_clipnorm=training.global_clipnorm(config.clip_norm)))
