"""Perplexity per epoch as pictures: one run's curves, or several runs' side by side.

The trainer draws `perplexity.png` into every run folder after each epoch. To
compare runs (the three recurrent cells in docs/RESULTS.md):

    python -m ptb.report --out docs/ptb_small_cells.png \\
        lstm=runs/ptb/small gru=runs/ptb/small_gru simple_rnn=docs/results/simple_rnn.csv

Each `label=path` names a run folder (its metrics.json) or a history.csv.
"""

import csv
import json
import pathlib

import matplotlib

matplotlib.use("Agg")  # files only; no display needed (servers, CI)
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

import common  # noqa: E402,F401  (quiets TensorFlow's start-up logs)
from absl import flags  # noqa: E402

from common import cli  # noqa: E402
from common import run as run_lib  # noqa: E402


def plot_perplexity(history, path, title):
    """Training and validation perplexity per epoch (log scale), the best
    validation epoch marked. history: the run folder's, one dict per epoch."""
    epochs = [epoch["epoch"] for epoch in history]
    valid = [epoch["valid_perplexity"] for epoch in history]
    best = min(range(len(valid)), key=valid.__getitem__)
    figure, axes = plt.subplots(figsize=(6.5, 4))
    axes.plot(epochs, [epoch["train_perplexity"] for epoch in history], "o-", markersize=3,
              label="train")
    axes.plot(epochs, valid, "o-", markersize=3, label="validation")
    axes.axvline(epochs[best], color="gray", linestyle=":",
                 label=f"best validation: {valid[best]:.2f} (epoch {epochs[best]})")
    # The training perplexity is averaged over each epoch while the weights move,
    # so in the first epochs it sits above the validation one.
    _finish(figure, axes, title)
    run_lib.save_figure(figure, path)
    plt.close(figure)


def plot_validation_curves(histories, path, title):
    """Validation perplexity per epoch of several runs: {label: history}."""
    figure, axes = plt.subplots(figsize=(6.5, 4))
    for label, history in histories.items():
        valid = [epoch["valid_perplexity"] for epoch in history]
        axes.plot([epoch["epoch"] for epoch in history], valid, "o-", markersize=3,
                  label=f"{label} (best {min(valid):.2f})")
    _finish(figure, axes, title, ylabel="validation perplexity")
    run_lib.save_figure(figure, path)
    plt.close(figure)


def _finish(figure, axes, title, ylabel="perplexity"):
    axes.set_yscale("log")  # early epochs are far above the rest
    axes.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(8))  # round numbers, not decades
    axes.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3, which="both")
    axes.legend()
    axes.set_title(title, fontsize=10)
    figure.tight_layout()


def read_history(path):
    """The per-epoch history of a run folder (metrics.json) or of a history.csv."""
    path = pathlib.Path(path)
    try:
        if path.is_dir():
            history = json.loads((path / run_lib.METRICS).read_text())["history"]
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
    plot_validation_curves(histories, FLAGS.out, FLAGS.title)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    define_flags()
    cli.run(main, takes_arguments=True)
