"""Trains SimpleRNN, LSTM and GRU on the same reviews with the same budget, compares.

Writes into the run folder --save_path (default runs/imdb_sentiment/compare):
    results.md, results.csv     the table
    metrics.json                the table with every model's history and the settings
    curves.png                  train and validation curves
    simple_rnn/, lstm/, gru/    each model's own run folder (as train.py writes it;
                                predict.py reads one); rerunning the same command
                                resumes whichever model was interrupted

Run:
    python -m imdb_sentiment.compare --data_path DIR   # aclImdb/ or aclImdb_v1.tar.gz

With --bidirectional the three are bidirectional, each in bidirectional_<rnn>/,
by default under runs/imdb_sentiment/compare_bidirectional.
"""

import csv
import dataclasses
import io
import os
import time

import common  # noqa: F401  (first: quiets TensorFlow's start-up logs)
from absl import flags
import matplotlib.figure  # drawn without pyplot: no display or backend needed
import matplotlib.ticker

from common import cli
from common import machine
from common import run_folder
from common import strategy as strategy_lib
from common import training
from imdb_sentiment import data
from imdb_sentiment import model as model_lib
from imdb_sentiment import train

FLAGS = flags.FLAGS

# What a comparison writes into its folder beside each model's run folder.
RESULTS = ("results.md", "results.csv", "curves.png")

COLUMNS = ("model", "parameters", "test_accuracy", "test_loss", "best_epoch", "epochs_run",
           "seconds_per_epoch")


def compare(config, strategy, save_path, data_path=None, restart=False, verbose=None):
    """Trains every recurrent layer with config; returns the list of their metrics."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k != "rnn"}
    settings.update(data_path=run_folder.data_setting(data_path))
    run = run_folder.RunFolder(save_path, "imdb_sentiment.compare", settings, restart,
                               strategy, lock=strategy.extended.should_checkpoint,
                               own_files=RESULTS)
    start = time.perf_counter()
    reviews = data.load_data(config, data_path)  # once, for all three
    run.begin()
    results = []
    for rnn in model_lib.RNN_LAYERS:
        model_config = dataclasses.replace(config, rnn=rnn)
        metrics = train.train_and_evaluate(
            model_config, strategy, data_path,
            save_path=os.path.join(save_path, model_lib.model_name(model_config)),
            reviews=reviews, verbose=verbose)
        print(train.format_metrics(metrics))
        results.append(metrics)
    write_results(run, results, time.perf_counter() - start,
                  averaged=config.weight_averaging > 0)
    run.close()
    return results


def write_results(run, results, wall_seconds, averaged):
    rows = [_row(metrics) for metrics in results]
    table = _markdown_table(rows)
    print(table)
    print(f"wall time {wall_seconds / 60:.1f} min; results in {run.path}/")
    run.write_text("results.md", table + "\n")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    run.write_text("results.csv", text.getvalue())
    run.write_json(run_folder.METRICS, dict(
        tutorial=run.tutorial, settings=run.settings, machine=machine.describe_machine(),
        wall_seconds=wall_seconds,  # of this command; a resumed run's earlier part is not in it
        training_seconds=sum(metrics["training_seconds"] for metrics in results),
        results=results))
    run.save_figure("curves.png", lambda: curves_figure(results, averaged=averaged))


def curves_figure(results, averaged=False):
    """Loss and accuracy per epoch: solid = training, dashed = validation.

    averaged: validation used the running weight average (train.EpochWeightAverage),
    while the training curve is measured on the weights being trained.
    """
    validation = "validation (averaged weights)" if averaged else "validation"
    figure = matplotlib.figure.Figure(figsize=(11, 4))
    axes = figure.subplots(1, 2)
    for metrics, color in zip(results, ("tab:red", "tab:blue", "tab:green")):
        history = {key: [epoch[key] for epoch in metrics["history"]]
                   for key in ("loss", "accuracy", "val_loss", "val_accuracy")}
        epochs = range(1, len(history["loss"]) + 1)
        for axis, key in zip(axes, ("loss", "accuracy")):
            axis.plot(epochs, history[key], color=color, label=f"{metrics['model']} train")
            axis.plot(epochs, history[f"val_{key}"], color=color, linestyle="--",
                      label=f"{metrics['model']} {validation}")
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
    return figure


def _row(metrics):
    return {
        "model": metrics["model"],
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
    del argv  # cli.run refuses stray arguments
    if FLAGS["rnn"].present:
        raise cli.UserInputError("--rnn: compare trains all three; use "
                                 "imdb_sentiment.train for one")
    config = train.config_from_flags()
    strategy = strategy_lib.get_strategy(num_gpus=FLAGS.num_gpus,
                                       worker_timeout=FLAGS.worker_timeout)
    training.use_mixed_precision(FLAGS.mixed_precision)
    save_path = cli.run_folder_path(
        "imdb_sentiment", "compare_bidirectional" if config.bidirectional else "compare")
    compare(config, strategy, save_path, data_path=FLAGS.data_path, restart=FLAGS.restart)


if __name__ == "__main__":
    train.define_flags(default_run_folder="runs/imdb_sentiment/compare[_bidirectional]")
    flags.adopt_module_key_flags(train)  # so that --help lists them
    cli.run(main)
