"""Compares PTB runs: their validation perplexity per epoch in one figure.

    python -m ptb.report --out docs/ptb_small_cells.png \\
        lstm=runs/ptb/small gru=runs/ptb/small_gru simple_rnn=docs/results/ptb_small_simple_rnn_fp32_seed0_zen3_2026-11-23.csv

Each `label=path` names a run folder (its metrics.json) or a history.csv.
(What a run records as it trains is in record.py.)
"""

import csv
import pathlib

import common  # noqa: F401  (quiets TensorFlow's start-up logs)
from absl import flags

from common import cli
from common import files
from common import run_folder
from ptb import record


def read_history(path):
    """The per-epoch history of a run folder (metrics.json) or of a history.csv."""
    path = pathlib.Path(path)
    try:
        if path.is_dir():
            history = files.read_json((path / run_folder.METRICS).read_text())["history"]
        else:
            with open(path, newline="") as file:
                history = [{key: float(value) for key, value in row.items()}
                           for row in csv.DictReader(file)]
        if not all({"epoch", "valid_perplexity"} <= set(epoch) for epoch in history):
            raise KeyError("valid_perplexity")  # not a PTB run
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise cli.UserInputError(f"{path}: no readable PTB per-epoch history "
                                 f"({type(error).__name__}); give a PTB run folder or its "
                                 "history.csv")
    return history


FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("out", "perplexity.png", "The PNG to write.")
    flags.DEFINE_string("title", "PTB validation perplexity per epoch", "The figure's title.")


def main(argv):
    if len(argv) < 2:
        raise cli.UserInputError("give the runs to compare as label=path (a run folder or "
                                 "a history.csv)")
    histories = {}
    for argument in argv[1:]:
        label, separator, path = argument.partition("=")
        if not separator or not label or not path:
            raise cli.UserInputError(f"{argument!r}: write label=path, e.g. gru=runs/ptb/small_gru")
        histories[label] = read_history(path)
        if not histories[label]:
            raise cli.UserInputError(f"{path}: no completed epoch yet")
    files.save_figure(record.validation_figure(histories, FLAGS.title), FLAGS.out)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    define_flags()
    cli.run(main, takes_arguments=True)
