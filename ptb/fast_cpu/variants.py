"""The PTB trainer built on either path, or on one part of the fast path alone,
for `python -m ptb.benchmark` and for the tests that hold the fast path to the plain one.

    trainer = variants.build_trainer(config, strategy, fast_cpu.PLAIN)  # model, step, state
    variants.train_windows(trainer, config, variants.random_windows(config, 30))
"""

import dataclasses

import keras
import numpy as np

from ptb import fast_cpu
from ptb import ptb_word_lm


def build_trainer(config, strategy, path=None, seed=0):
    """(model, train_step, initial_state) as the trainer builds them on `path`
    (None: the trainer's own choice, `fast_cpu.path_for`)."""
    path = path or fast_cpu.path_for(strategy, config)
    with strategy.scope():
        model = ptb_word_lm.build_training_model(config, path, seed=seed)
    train_step, _, initial_state = ptb_word_lm.make_steps(model, config, strategy, path)
    return model, train_step, initial_state


# The fast path's two halves, each on its own.
CPU_LAYERS_ONLY = dataclasses.replace(
    fast_cpu.PLAIN, name="CPU layers, plain step",
    lstm_layer=fast_cpu.WindowLSTM, output_layer=fast_cpu.BiasRowDense)
CPU_STEP_ONLY = dataclasses.replace(
    fast_cpu.FAST, name="Keras layers, CPU step (XLA, loss gradient, sparse update)",
    lstm_layer=keras.layers.LSTM, output_layer=keras.layers.Dense)


def part_trainers(config, strategy, seed=0):
    """{name: trainer} for each half of the fast path alone."""
    return {path.name: build_trainer(config, strategy, path, seed)
            for path in (CPU_LAYERS_ONLY, CPU_STEP_ONLY)}


def random_windows(config, num_windows, seed=0):
    """`num_windows` windows of random word ids, through the trainer's pipeline."""
    num_ids = config.batch_size * (num_windows * config.num_steps + 1)
    ids = np.random.default_rng(seed).integers(0, config.vocab_size, size=num_ids)
    return ptb_word_lm.window_dataset(ids, config, name="random ids")


def train_windows(trainer, config, windows):
    """Trains on `windows` as the trainer's epoch loop does."""
    _, train_step, initial_state = trainer
    ptb_word_lm.run_epoch(train_step, initial_state, windows, config)
