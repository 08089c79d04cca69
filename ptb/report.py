"""What a PTB run reports: its run folder's records, and perplexity per epoch as pictures.

`RunRecord` writes, after each epoch, metrics.json, history.csv,
`perplexity.png` and TensorBoard's event files, and at the end the batch-1
`model.keras` with its vocabulary. To compare runs (the three recurrent cells
in docs/results.md):

    python -m ptb.report --out docs/ptb_small_cells.png \\
        lstm=runs/ptb/small gru=runs/ptb/small_gru simple_rnn=docs/results/ptb_small_simple_rnn.csv

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

from common import callbacks  # noqa: E402
from common import cli  # noqa: E402
from common import run_folder  # noqa: E402

# In the run folder beside model.keras: the words in id order.
VOCABULARY = "vocabulary.json"


class RunRecord:
    """The trainer's records in its run folder (`run`; None: nothing is written)."""

    def __init__(self, run, model, title):
        self.run, self.title = run, title
        self.tensorboard = callbacks.tensorboard(run)  # the curves, as Keras' fit writes them
        if self.tensorboard:
            self.tensorboard.set_model(model)
            self.tensorboard.on_train_begin()

    def epoch_end(self, history, train_loss, valid_loss):
        if not self.run:
            return
        self.run.write_metrics(history)
        plot_perplexity(history, self.run.file("perplexity.png"), title=self.title)
        self.tensorboard.on_epoch_end(history[-1]["epoch"] - 1, dict(
            loss=train_loss, perplexity=history[-1]["train_perplexity"],
            val_loss=valid_loss, val_perplexity=history[-1]["valid_perplexity"],
            words_per_second=history[-1]["words_per_second"]))

    def training_end(self):
        if self.tensorboard:
            self.tensorboard.on_train_end()

    def test_end(self, history, eval_model, words, test_perplexity, test_seconds):
        """The final model and its vocabulary (for ptb.score, generate, next_word), the
        test result in metrics.json, TensorBoard and the figure's title; then the
        run is over and the folder's lock released."""
        if not self.run:
            return
        run_folder.save_model(eval_model, self.run.file("model.keras"))
        run_folder.write_json(self.run.file(VOCABULARY), words)
        callbacks.log_test_metrics(self.run, len(history), dict(test_perplexity=test_perplexity))
        plot_perplexity(history, self.run.file("perplexity.png"),
                        title=f"{self.title}; test perplexity {test_perplexity:.2f}")
        self.run.write_metrics(history, test_perplexity=test_perplexity, test_seconds=test_seconds,
                               training_seconds=sum(epoch["seconds"] for epoch in history))
        self.run.close()


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
    run_folder.save_figure(figure, path)
    plt.close(figure)


def plot_validation_curves(histories, path, title):
    """Validation perplexity per epoch of several runs: {label: history}."""
    figure, axes = plt.subplots(figsize=(6.5, 4))
    for label, history in histories.items():
        valid = [epoch["valid_perplexity"] for epoch in history]
        axes.plot([epoch["epoch"] for epoch in history], valid, "o-", markersize=3,
                  label=f"{label} (best {min(valid):.2f})")
    _finish(figure, axes, title, ylabel="validation perplexity")
    run_folder.save_figure(figure, path)
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
            history = json.loads((path / run_folder.METRICS).read_text())["history"]
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
