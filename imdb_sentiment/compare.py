"""Trains SimpleRNN, LSTM and GRU on the same reviews with the same budget, compares.

Writes to --output_dir (default runs/imdb_sentiment):
    results.md / results.csv / results.json   the table (json adds curves, config)
    curves.png                                 train and validation curves
    <rnn>.keras, <rnn>.json                    the models, for predict.py; rerunning
                                               reuses finished models and resumes
                                               an interrupted one

Run:
    python -m imdb_sentiment.compare --data_dir ../shared/data/imdb
"""

import csv
import dataclasses
import datetime
import json
import pathlib
import platform
import os
import time

import common  # first: quiets TensorFlow's start-up logs
import common.cli
from common.cli import UserInputError

from absl import flags
import matplotlib

matplotlib.use("Agg")  # files only, no display needed
from matplotlib import pyplot  # noqa: E402
import matplotlib.ticker  # noqa: E402

from imdb_sentiment import model as model_lib  # noqa: E402
from imdb_sentiment import train  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    train.define_flags()  # the shared settings: --data_dir, --epochs, ...
    flags.DEFINE_string("output_dir", "runs/imdb_sentiment", "Where results and models go.")

COLUMNS = ("model", "parameters", "test_accuracy", "test_loss", "best_epoch", "epochs_run",
           "seconds_per_epoch")


def compare(config, strategy, output_dir, data_dir=None, verbose=1):
    """Trains every recurrent layer with config; returns the list of their metrics."""
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    reviews = None  # loaded once, on the first model that needs training
    results = []
    for rnn in model_lib.RNN_LAYERS:
        model_config = dataclasses.replace(config, rnn=rnn)
        if reviews is None and not train._finished_run(output_dir, model_config):
            reviews = train.load_data(config, data_dir)
        metrics = train.train_and_evaluate(
            model_config, strategy, save_path=output_dir, reviews=reviews, verbose=verbose
        )
        print(train.format_metrics(metrics))
        results.append(metrics)
    wall_seconds = time.perf_counter() - start
    write_results(results, config, output_dir, data_dir, wall_seconds)
    return results


def write_results(results, config, output_dir, data_dir, wall_seconds):
    rows = [_row(metrics) for metrics in results]
    table = _markdown_table(rows)
    print(table)
    print(f"wall time {wall_seconds / 60:.1f} min; results in {output_dir}/")
    (output_dir / "results.md").write_text(table + "\n")
    with open(output_dir / "results.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    run_info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "data_dir": str(data_dir) if data_dir else "keras.datasets.imdb",
        "wall_seconds": wall_seconds,
        "config": dataclasses.asdict(config),
        "results": results,
    }
    (output_dir / "results.json").write_text(json.dumps(run_info, indent=1))
    plot_curves(results, output_dir / "curves.png", averaged=config.weight_averaging > 0)


def plot_curves(results, path, averaged=False):
    """Loss and accuracy per epoch: solid = training, dashed = validation.

    averaged: validation used the running weight average (train.EpochWeightAverage),
    while the training curve is measured on the weights being trained.
    """
    validation = "validation (averaged weights)" if averaged else "validation"
    figure, axes = pyplot.subplots(1, 2, figsize=(11, 4))
    for metrics, color in zip(results, ("tab:red", "tab:blue", "tab:green")):
        history = metrics["history"]
        epochs = range(1, len(history["loss"]) + 1)
        for axis, key in zip(axes, ("loss", "accuracy")):
            axis.plot(epochs, history[key], color=color, label=f"{metrics['rnn']} train")
            axis.plot(epochs, history[f"val_{key}"], color=color, linestyle="--",
                      label=f"{metrics['rnn']} {validation}")
            axis.plot(metrics["best_epoch"], history[f"val_{key}"][metrics["best_epoch"] - 1],
                      "o", color=color)
    for axis, key in zip(axes, ("binary cross-entropy", "accuracy")):
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    figure.suptitle("IMDB sentiment: Embedding -> RNN(128) -> Dense (dot: restored best epoch)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def _row(metrics):
    return {
        "model": metrics["rnn"],
        "parameters": metrics["parameters"],
        "test_accuracy": round(metrics["test_accuracy"], 4),
        "test_loss": round(metrics["test_loss"], 4),
        "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
        "seconds_per_epoch": round(metrics["seconds_per_epoch"], 1),
    }


def _markdown_table(rows):
    lines = [
        "| model | parameters | test accuracy | test loss | best epoch (of run) | s / epoch |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['parameters']:,} | {row['test_accuracy']:.2%} | "
            f"{row['test_loss']:.4f} | {row['best_epoch']} ({row['epochs_run']}) | "
            f"{row['seconds_per_epoch']:.0f} |"
        )
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise UserInputError(f"unexpected arguments {argv[1:]}; see --help")
    if FLAGS["rnn"].present:
        raise UserInputError("--rnn: compare trains all three; use imdb_sentiment.train for one")
    if FLAGS["save_path"].present:
        raise UserInputError("--save_path: compare saves its models in --output_dir")
    config = train.config_from_flags()
    strategy = train.get_strategy(FLAGS.num_gpus)
    compare(config, strategy, FLAGS.output_dir, data_dir=FLAGS.data_dir)


if __name__ == "__main__":
    define_flags()
    common.cli.run(main)
