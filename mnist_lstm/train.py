"""Row-by-row LSTM classifier for MNIST and Fashion-MNIST (many-to-one).

Reproduces the classic TensorFlow recurrent-network tutorial: each 28x28 image
is read as a sequence of 28 time steps, one row of 28 pixels per step; only the
LSTM's last output is kept and a dense softmax layer names the class.

    time step      0         1                27
    input        row 0     row 1     ...    row 27     (28 pixels each)
                   |         |                 |
                 [LSTM] -> [LSTM] -> ... -> [LSTM] -> h_27 -> Dense(10) -> softmax
                 (the state runs left to right; outputs of steps 0..26 are dropped)

Trained with Adam on cross-entropy, batch 128, 64 LSTM units (24,458 weights).
A validation split (the last 10% of the training examples) picks the best
epoch; the test set is used once, at the end, for the report and figures.

Its results, with the commands and machines: docs/results.md. Where only the
MNIST *test* file is at hand, `--split_test_file=8000` trains on its first 8,000
images and tests on its last 2,000: a stand-in, not the tutorial's setting.

Hyperparameters (the tutorial's names in brackets):
    units          LSTM hidden size [num_hidden]
    batch_size     global batch size, split across replicas [batch_size]
    learning_rate  Adam's peak step size [learning_rate]
    cosine_decay   the step size falls to 0 along a half cosine (the tutorial: constant)
    epochs         passes over the training split [training_steps / batches per epoch]
    dropout        share of the LSTM's inputs and last output zeroed in training
    max_shift      augmentation: training images move up to N pixels each way

How to run (from the repository root):

    python -m mnist_lstm.train                            # MNIST, downloads the data
    python -m mnist_lstm.train --dataset=fashion_mnist --data_path=DIR   # the four IDX .gz files
    python -m mnist_lstm.train --data_path=DIR --split_test_file=8000    # only t10k-*.gz
    python -m mnist_lstm.train --evaluate --save_path=runs/mnist_lstm/mnist   # report again
    python -m mnist_lstm.train --max_examples=2000 --epochs=2 --save_path=runs/quick  # quick check

A run keeps everything in its folder, --save_path (default
runs/mnist_lstm/<dataset>): the best epoch's `model.keras`, `metrics.json`,
`history.csv`, `curves.png`, `predictions.png`, `settings.json` and the
`checkpoint/` that the same command resumes from after an interruption.
"""

import dataclasses

import common  # noqa: F401  (first: quiets TensorFlow's start-up logs)
from absl import flags
import keras
import numpy as np

from common import callbacks
from common import cli
from common import data as common_data
from common import run_folder
from common import strategy as strategy_lib
from common import training
from common.layers import ReplicaDropout
from mnist_lstm import data
from mnist_lstm import report


@dataclasses.dataclass(frozen=True)
class Config:
    """Defaults: the tutorial's model and batch; training settings chosen by measured
    runs on Fashion-MNIST (docs/engineering-log.md)."""

    dataset: str = "mnist"  # "mnist" or "fashion_mnist"
    units: int = 64  # LSTM hidden size; 64 as in the tutorial
    batch_size: int = 128  # global batch (all replicas together), as in the tutorial
    learning_rate: float = 3e-3  # Adam's peak step size (the tutorial: 1e-3, constant)
    cosine_decay: bool = True  # step size falls along a half cosine to 0 by the last epoch
    epochs: int = 55  # passes over the training split
    # With 24k weights the LSTM overfits Fashion-MNIST well before the last epoch;
    # these two close most of the gap between training and validation accuracy.
    dropout: float = 0.1  # dropped share of the LSTM's inputs and of its last output
    max_shift: int = 1  # augmentation: training images move up to N pixels each way
    validation_fraction: float = 0.1  # last 10% of training examples pick the best epoch
    seed: int = 0  # initial weights, shuffling order, dropout and shifts
    max_examples: int | None = None  # only the first N train and N test examples (quick runs)
    split_test_file: int = 0  # >0: train on the first N test examples, test on the rest


def build_model(config):
    """The tutorial's model: LSTM over the 28 rows, last output -> dense softmax.

    The LSTM keeps Keras' defaults (tanh / sigmoid, bias, no recurrent dropout,
    not unrolled) so that on a GPU it runs as one fused cuDNN kernel. Dropout on
    its inputs, one mask for all 28 steps (what LSTM(dropout=...) does), comes
    before it, from a layer whose replicas draw masks of their own (common/layers.py).
    """
    rows = keras.Input(shape=data.IMAGE_SHAPE, name="image_rows")  # [batch, 28 steps, 28]
    x = ReplicaDropout(config.dropout, noise_shape=(None, 1, None), name="input_dropout")(rows)
    last_output = keras.layers.LSTM(config.units, name="lstm")(x)
    last_output = ReplicaDropout(config.dropout, name="dropout")(last_output)
    # float32 even under --mixed_precision: the softmax and the loss need its range.
    probabilities = keras.layers.Dense(data.NUM_CLASSES, activation="softmax", dtype="float32",
                                       name="classes")(last_output)
    return keras.Model(rows, probabilities, name="mnist_row_lstm")


# Cross-entropy per example, and whether its most probable class is the label.
LOSS = keras.losses.sparse_categorical_crossentropy
METRICS = {"accuracy": keras.metrics.sparse_categorical_accuracy}


def compile_model(model, config, steps_per_epoch):
    """Gives the model its optimizer, Adam; call inside `strategy.scope()`."""
    learning_rate = config.learning_rate
    if config.cosine_decay:
        # Keyed to the optimizer's step counter, which a resumed run restores.
        learning_rate = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.epochs * steps_per_epoch)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate))


# What --evaluate writes into a run folder beside the trainer's files.
EVALUATION = "evaluation.json"


def train_and_evaluate(config, strategy, data_path=None, save_path=None, restart=False,
                       extra_callbacks=(), verbose=None):
    """Trains (or resumes), then reports on the test set with the best epoch's model.

    save_path: the run folder (common/run_folder.py); None keeps nothing on disk.
    Returns the metrics dict that is also written to `metrics.json`.
    """
    training.check_global_batch(config.batch_size, strategy)
    settings = dict(dataclasses.asdict(config), data_path=data_path)
    run = run_folder.open_run(save_path, "mnist_lstm", settings, restart, strategy,
                              own_files=[EVALUATION])
    splits = data.load_data(config, data_path)
    keras.utils.set_random_seed(config.seed)  # initial weights and dropout
    train_images, train_labels = splits["train"]
    steps_per_epoch = common_data.batches_per_epoch(len(train_labels), config.batch_size)

    with strategy.scope():
        model = build_model(config)
        compile_model(model, config, steps_per_epoch)
        model.optimizer.build(model.trainable_variables)  # so that a checkpoint can fill it
    print(f"replicas in sync: {strategy.num_replicas_in_sync} | "
          f"parameters: {model.count_params():,} | train / validation / test examples: "
          f"{len(train_labels):,} / {len(splits['validation'][1]):,} / {len(splits['test'][1]):,}")

    first_epoch, history = run.resume(model)  # (0, []) for a new run
    best = callbacks.BestModel(run, run_folder.MODEL, "val_accuracy", history)
    if first_epoch < config.epochs:
        training.fit(
            model, strategy,
            # Shuffled as a function of (seed, epoch), so a resumed run sees the same order.
            data.training_batches(splits["train"], config, first_epoch),
            common_data.in_order(*splits["validation"], config.batch_size),
            loss=LOSS, metrics=METRICS,
            initial_epoch=first_epoch, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
            callbacks=[callbacks.EpochTimer(examples_per_epoch=len(train_labels)), best,
                       *extra_callbacks, run.tensorboard(),
                       callbacks.EpochCheckpoint(run, history)],
            verbose=callbacks.progress_verbosity() if verbose is None else verbose)

    best.best_weights_into(model)  # the test set sees the best epoch's weights
    metrics = report_on_test(model, config, splits["test"], run, strategy)
    best_index = int(np.argmax([epoch["val_accuracy"] for epoch in history]))
    training_seconds = sum(epoch["seconds"] for epoch in history)
    metrics.update(
        epochs_run=len(history),
        best_epoch=best_index + 1,
        best_validation_accuracy=history[best_index]["val_accuracy"],
        training_seconds=training_seconds,
        train_examples_per_second=len(train_labels) * len(history) / training_seconds,
    )
    run.save_figure("curves.png", lambda: report.training_curves(history, _title(config, metrics)))
    run.finish(history, test_scalars=dict(test_accuracy=metrics["test_accuracy"],
                                          test_loss=metrics["test_loss"]), **metrics)
    return dict(metrics, history=history)


def report_on_test(model, config, test, run, strategy=None, name="predictions"):
    """Predicts the test set once; prints the report, draws `<name>.png` into the run."""
    test_images, test_labels = test
    class_names = data.CLASS_NAMES[config.dataset]
    probabilities = training.predict(model, test_images, config.batch_size)
    metrics = report.metrics_from_predictions(probabilities, test_labels, class_names)
    metrics.update(parameters=model.count_params(),
                   replicas=strategy.num_replicas_in_sync if strategy else 1)
    print(report.format_report(metrics, class_names))
    run.save_figure(f"{name}.png", lambda: report.predictions_figure(
        test_images, test_labels, probabilities, class_names, title=_title(config, metrics)))
    return metrics


def evaluate_run(save_path, strategy, data_path=None):
    """Reports again on the test set with the model a finished run saved.

    The run's own settings.json says which data and split it was trained on
    (data_path, if given, says where that data is now). Writes `evaluation.json`
    and `evaluation.png` into the run folder.
    """
    with strategy.scope():
        model, settings = run_folder.load_finished_run(
            save_path, "mnist_lstm", "train one first (run without --evaluate)")
    run = run_folder.RunFolder(save_path, "mnist_lstm", settings, own_files=[EVALUATION])
    data_path = data_path or settings.pop("data_path")
    config = Config(**{field.name: settings[field.name] for field in dataclasses.fields(Config)})
    metrics = report_on_test(model, config, data.load_test_data(config, data_path), run,
                             strategy, name="evaluation")
    run.write_json(EVALUATION, metrics)
    run.close()
    print(f"wrote {run.file(EVALUATION)} and {run.file('evaluation.png')}")
    return metrics


def _title(config, metrics):
    return (f"{config.dataset}: LSTM({config.units}) over image rows, "
            f"test accuracy {metrics['test_accuracy']:.2%}")


# --- command line ---------------------------------------------------------------

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; called by the entry point only (absl flags
    are global, and the other tutorials define flags of the same names)."""
    defaults = Config()
    cli.define_run_flags(
        data_path_help="Folder with the four IDX .gz files (or Keras' mnist.npz); "
                       "unset: download with keras.datasets.",
        default_run_folder="runs/mnist_lstm/<dataset>", epochs_default=defaults.epochs,
        learning_rate_default=defaults.learning_rate,
        learning_rate_help="Adam's (peak) learning rate.",
        epochs_help="Passes over the training split.", max_examples=True)
    flags.adopt_module_key_flags(cli)  # so that --help lists the shared flags too
    # A string, not an enum, so that a typo gets our one-line error rather than absl's.
    flags.DEFINE_string("dataset", defaults.dataset, f"One of {', '.join(data.DATASETS)}.")
    flags.DEFINE_integer("units", defaults.units, "LSTM hidden size.", lower_bound=1)
    flags.DEFINE_float("dropout", defaults.dropout,
                       "Dropout rate on the LSTM's inputs and on its last output.")
    flags.DEFINE_integer("max_shift", defaults.max_shift,
                         "Augmentation: move each training image up to N pixels each way.")
    flags.DEFINE_integer("batch_size", defaults.batch_size, "Global batch size.", lower_bound=1)
    flags.DEFINE_bool("cosine_decay", defaults.cosine_decay,
                      "Decay the learning rate to 0 along a half cosine; --nocosine_decay "
                      "keeps it constant as in the tutorial.")
    flags.DEFINE_float("validation_fraction", defaults.validation_fraction,
                       "Share of training examples (the last ones) held out for validation.")
    flags.DEFINE_integer("split_test_file", defaults.split_test_file,
                         "If > 0, use only the test file: train on its first N examples, "
                         "test on the rest (for machines without the training files).")
    flags.DEFINE_bool("evaluate", False, "Report again on the test set with the model in "
                      "--save_path (its own settings); no training.")


def config_from_flags():
    config = Config(**{field.name: FLAGS[field.name].value
                       for field in dataclasses.fields(Config)})
    if config.dataset not in data.DATASETS:
        raise cli.UserInputError(
            f"--dataset={config.dataset}: unknown dataset; use one of {', '.join(data.DATASETS)}"
        )
    if not 0 <= config.dropout < 1:
        raise cli.UserInputError(f"--dropout={config.dropout}: must be in [0, 1)")
    if not 0 < config.validation_fraction < 1:
        raise cli.UserInputError(
            f"--validation_fraction={config.validation_fraction}: must be between 0 and 1"
        )
    for name in ("split_test_file", "max_shift"):
        if getattr(config, name) < 0:
            raise cli.UserInputError(f"--{name}={getattr(config, name)}: must be 0 (off) or more")
    return config


def main(argv):
    del argv  # cli.run refuses stray arguments
    config = config_from_flags()
    strategy = strategy_lib.get_strategy(num_gpus=FLAGS.num_gpus,
                                       worker_timeout=FLAGS.worker_timeout)
    training.use_mixed_precision(FLAGS.mixed_precision)
    save_path = cli.run_folder_path("mnist_lstm", config.dataset)
    if FLAGS.evaluate:
        given = [f"--{name}" for name in dataclasses.asdict(config) if FLAGS[name].present]
        if given:
            raise cli.UserInputError(f"{', '.join(given)}: --evaluate uses the settings of the "
                                     "run in --save_path; leave them out")
        evaluate_run(save_path, strategy, FLAGS.data_path)
        return
    metrics = train_and_evaluate(config, strategy, FLAGS.data_path, save_path,
                                 restart=FLAGS.restart)
    print(f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']} "
          f"(validation accuracy {metrics['best_validation_accuracy']:.2%}) | "
          f"training {metrics['training_seconds']:.0f} s, "
          f"{metrics['train_examples_per_second']:,.0f} examples/s | run folder {save_path}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
