"""The PTB model's fast path on a CPU: the same model and step, computed faster.

    path = fast_cpu.path_for(strategy, config)   # taken once, by ptb/engine.py
    path.lstm_layer, path.output_layer           # the model's layers
    path.word_losses, path.update                # the step's loss and SGD update
    path.jit_compile                             # XLA for the steps
    path.dtype, path.tied_embedding              # the layers' dtype; --tied's layer

`PLAIN` is the Keras model and step as anyone would write them: keras.layers.LSTM
and Dense (cuDNN on a GPU), Keras' cross-entropy and SGD, no XLA. `FAST` swaps in,
with the same weights and the same function (tests/test_ptb_fast_cpu.py holds each
part and a whole training step to the plain one):

    WindowLSTM     (window_lstm.py)     the recurrence written out for XLA, the
                                        weights' gradients one product per window
    BiasRowDense   (bias_row_dense.py)  the output bias as one more row of its kernel
    word_losses    (step.py)            the cross-entropy's gradient in one pass
    sgd_update     (step.py)            only the window's embedding rows rewritten
                                        (all of them with --tied: the output's
                                        gradient is dense)
    jit_compile                         XLA fuses the hundreds of small operations

A profile of the plain step on a CPU found most of its time in the LSTM's small
per-step products and in small element-wise operations, which these remove or
fuse; docs/performance.md has the measurements and `python -m ptb.benchmark`
repeats them. The fast path is for an LSTM on one CPU replica only: on a GPU the
LSTM must stay on cuDNN, which XLA cannot compile, and with several replicas a
compiled step cannot read variables mirrored on other devices.

`FAST_BFLOAT16` (bfloat16.py) is the fast path under --mixed_precision, which
common/training.py allows on a CPU only where it has bfloat16 dot products:
the same layers and step with every matrix product in bfloat16 and everything
else in float32, the products outside XLA, whose CPU code does not multiply
bfloat16 faster than float32.
"""

import dataclasses
from typing import Callable

import keras
import tensorflow as tf

from common import training
from ptb.fast_cpu import bfloat16
from ptb.fast_cpu import step
from ptb.fast_cpu.bias_row_dense import BiasRowDense
from ptb.fast_cpu.window_lstm import StreamLSTM, WindowLSTM
from ptb.tied_embedding import TiedEmbedding


@dataclasses.dataclass(frozen=True)
class Path:
    """The parts of the PTB model and training step that the fast path replaces."""

    name: str
    lstm_layer: type  # a keras.layers.LSTM
    output_layer: type  # a keras.layers.Dense
    word_losses: Callable  # (targets, logits) -> -log p(target) of every word, float32
    update: Callable  # (optimizer, gradients, variables): one SGD step
    jit_compile: bool  # compile the training and evaluation steps with XLA
    dtype: str | None = None  # the layers' dtype policy; None: Keras' global one
    tied_embedding: type = TiedEmbedding  # embedding and output layer under --tied


def keras_word_losses(targets, logits):
    """Keras' sparse softmax cross-entropy, in float32 (the softmax over the
    vocabulary needs its range even under --mixed_precision)."""
    return keras.losses.sparse_categorical_crossentropy(
        targets, tf.cast(logits, tf.float32), from_logits=True)


PLAIN = Path("plain Keras", keras.layers.LSTM, keras.layers.Dense, keras_word_losses,
             training.apply_gradients, jit_compile=False)
FAST = Path("CPU fast path", WindowLSTM, BiasRowDense, step.word_losses, step.sgd_update,
            jit_compile=True)
# --mixed_precision on one CPU replica: the products in bfloat16, outside XLA (bfloat16.py).
FAST_BFLOAT16 = Path("CPU fast path, bfloat16 products", bfloat16.Bfloat16WindowLSTM,
                     bfloat16.Bfloat16Dense, bfloat16.word_losses, bfloat16.sgd_update,
                     jit_compile=False, dtype="float32",
                     tied_embedding=bfloat16.Bfloat16TiedEmbedding)


def path_for(strategy, config):
    """FAST for an LSTM on one CPU replica (FAST_BFLOAT16 under Keras'
    mixed_bfloat16 policy, which --mixed_precision sets on a CPU), PLAIN otherwise
    (GPUs, several replicas, and the GRU and SimpleRNN cells, whose Keras while
    loops XLA made slower)."""
    if config.rnn_cell == "lstm" and training.is_one_cpu_replica(strategy):
        if keras.mixed_precision.global_policy().name == "mixed_bfloat16":
            return FAST_BFLOAT16
        return FAST
    return PLAIN


# Reading one stream (batch 1: the test set, ptb.score) on a CPU: StreamLSTM with
# Keras' output layer, with XLA; after FAST_BFLOAT16 the trainer's batch-1 model is
# float32, so that its test perplexity is that of the weights as the tools compute.
STREAM = Path("CPU fast path, one stream", StreamLSTM, keras.layers.Dense, step.word_losses,
              update=None, jit_compile=True, dtype="float32")


def stream_path(path):
    """The path that evaluates one stream for a model trained on `path`."""
    return STREAM if path in (FAST, FAST_BFLOAT16) else path
