"""`python -m mnist_lstm`: train, or with --evaluate report on a saved model."""

import common  # noqa: F401  (first: quiets TensorFlow's start-up logs)
from absl import flags
from common import cli
from mnist_lstm import train

train.define_flags()
flags.adopt_module_key_flags(train)  # so that --help lists them
cli.run(train.main)
