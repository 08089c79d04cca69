"""The tutorial's classifier; the recurrent layer is the only thing that differs.

    token ids [batch, 256] -> Embedding(10,000, 100) -> RNN(128) -> Dense(1, sigmoid)

Parameters (V = vocabulary, E = embedding size, H = units):
    Embedding  V * E                       1,000,000
    SimpleRNN  H * (E + H + 1)                29,312
    LSTM       4 * H * (E + H + 1)           117,248
    GRU        3 * H * (E + H + 2)            88,320   (reset_after: two biases)
    Dense      H + 1                             129
"""

import tensorflow as tf
import keras

from common.cli import UserInputError

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
    x = keras.layers.Dropout(
        config.word_dropout, noise_shape=(None, config.sequence_length, 1), name="word_dropout"
    )(x)
    # Default arguments on purpose: tanh/sigmoid, no recurrent_dropout, unroll=False,
    # use_bias=True, GRU reset_after=True keep LSTM and GRU on the cuDNN kernel on a
    # GPU. No mask: padding="pre" puts real words last, and cuDNN would need
    # right-padded masks anyway.
    x = RNN_LAYERS[config.rnn](config.units, dropout=config.dropout, name=config.rnn)(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="positive_probability")(x)
    return keras.Model(inputs, outputs, name=f"imdb_{config.rnn}")


def compile_model(model, config):
    """Adam on binary cross-entropy, with accuracy; call inside `strategy.scope()`."""
    model.compile(
        # Clipping the global gradient norm keeps SimpleRNN's exploding gradients
        # (256 steps of tanh) from wrecking Adam's first updates.
        optimizer=keras.optimizers.Adam(config.learning_rate, global_clipnorm=config.clip_norm),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        # XLA fuses the per-step loop: measured 1.7x faster LSTM epochs on a 2-core
        # CPU. On a GPU leave it to Keras ("auto"), which keeps the cuDNN kernels;
        # with several replicas too, as XLA cannot reach another device's variables.
        jit_compile=True if _one_cpu_replica() else "auto",
    )


def _one_cpu_replica():
    """True when training runs on the CPU alone, with the strategy in scope."""
    single = tf.distribute.get_strategy().num_replicas_in_sync == 1
    return single and not tf.config.list_physical_devices("GPU")
