"""One run folder per run: what every trainer writes, and what resuming needs.

    runs/ptb/small/                  (--save_path)
        settings.json     the settings the run was started with
        checkpoint/       the training state after the last completed epoch
        metrics.json      {"tutorial", "settings", "commit", "machine", "history": [per epoch],
                           then the test metrics ("test_perplexity" or "test_accuracy", ...)}
        history.csv       the same per-epoch history as a table
        model.keras       the final model
        *.png             figures
        .lock             whose process has the folder open (common/folder_lock.py)

The same command again resumes after the last completed epoch and ends with
exactly the numbers of an uninterrupted run: the checkpoint holds the weights,
the optimizer, every random stream the model draws from (Keras' seed
generators: dropout masks) and the epoch count, and the trainers derive their
shuffling from (seed, epoch), so nothing restarts. Other settings into the same
folder are refused, naming them. Every file is written atomically: to a
temporary name first, then renamed, so a crash never leaves half a file. One
process at a time opens a folder (common/folder_lock.py).

Under several workers (MultiWorkerMirroredStrategy) only the chief writes the
run folder. The other workers write the same files into a scratch folder of
their own, removed when they exit: TensorFlow advises that every worker save,
since saving can take part in collective operations. To resume, every worker
reads the chief's folder, which must then be on a filesystem all of them see.
"""

import atexit
import contextlib
import csv
import io
import json
import math
import os
import pathlib
import re
import shutil
import tempfile

import keras
import tensorflow as tf

from common import folder_lock
from common import machine
from common import source
from common.cli import RunFailure
from common.cli import UserInputError

SETTINGS = "settings.json"
METRICS = "metrics.json"


# ----------------------------------------------------------------------------
# Atomic files


def atomic_write(path, write):
    """Calls write(temporary_path), then renames it to `path` (atomic on POSIX).

    A write that fails (a full disk, a lost permission) leaves the previous version
    of `path` as it was and no temporary file, and ends the run in one line.
    """
    path = pathlib.Path(path)
    # Same suffix, so that writers that pick a format by suffix (Keras, matplotlib) agree.
    partial = path.with_name(f".partial-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(partial)
        os.replace(partial, path)
    except OSError as error:
        with contextlib.suppress(OSError):  # its folder may be what failed
            partial.unlink(missing_ok=True)
        raise write_failure(path, error) from None


def failure_reason(error):
    """Why a write failed, in a few words: an OSError's reason, or the last clause
    of TensorFlow's message ("...; No space left on device [Op:SaveV2]")."""
    return getattr(error, "strerror", None) or re.sub(
        r"\s*\[Op:\w+\]$", "", str(error).strip().splitlines()[-1]).rsplit("; ", 1)[-1]


def write_failure(path, error):
    """The one-line RunFailure for a file the run could not write."""
    reason = failure_reason(error)
    return RunFailure(f"{path}: cannot write it ({reason}); what the run saved before is "
                      "kept: make room, or fix the path or its permission, and run the same "
                      "command again to resume")


def write_text(path, text):
    atomic_write(path, lambda partial: partial.write_text(text))


def write_json(path, data):
    """Strict JSON, which every parser reads: a number that is not finite is written as
    null, and a top-level dict gets "non_finite": {where: "inf" or "nan"} beside it."""
    non_finite = {}
    data = _finite_or_null(data, "", non_finite)
    if non_finite and isinstance(data, dict):
        data = dict(data, non_finite=non_finite)
    write_text(path, json.dumps(data, indent=1, allow_nan=False) + "\n")


def _with_non_finite(data):
    """`data` read back from write_json: its nulls that stood for inf or nan restored."""
    for where, value in (data.pop("non_finite", None) or {}).items():
        parent, key = None, None
        node = data
        for part in re.findall(r"[^.\[\]]+|\[\d+\]", where):
            parent, key = node, int(part[1:-1]) if part.startswith("[") else part
            node = node[key]
        parent[key] = float(value)
    return data


def _finite_or_null(value, where, non_finite):
    if isinstance(value, float) and not math.isfinite(value):
        non_finite[where] = str(value)
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item, f"{where}.{key}".lstrip("."), non_finite)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item, f"{where}[{index}]", non_finite)
                for index, item in enumerate(value)]
    return value


def save_figure(figure, path):
    atomic_write(path, lambda partial: figure.savefig(partial, dpi=100))


def save_model(model, path):
    atomic_write(path, lambda partial: model.save(partial))


# ----------------------------------------------------------------------------
# The run folder


class RunFolder:
    """The folder of one run, guarded against mixing two runs' settings.

    settings: a JSON-able dict (the trainer's config and its data). A folder that
    holds a run with other settings is refused; restart=True deletes that run,
    but only in `begin()`, once the new run's data and model are ready, so that
    a typo in another flag never costs the old run.
    """

    def __init__(self, path, tutorial, settings, restart=False, strategy=None, lock=True):
        self.path = pathlib.Path(path)
        self.resume_from = self.path  # another worker's folder resumes from the chief's
        self.strategy = strategy or tf.distribute.get_strategy()
        self.tutorial = tutorial
        self.commit = None
        self.settings = json.loads(json.dumps(settings))  # tuples -> lists, as stored
        _check_writable(self.path)
        if lock:  # before anything is read: one process at a time decides about the folder
            folder_lock.acquire(self.path)
        try:
            saved = saved_settings(self.path, tutorial)
        except UserInputError:
            # A damaged settings.json still marks a run folder: --restart may clear it.
            if not (restart and self.file(SETTINGS).is_file()):
                raise
            saved = "damaged"
        self.restart = restart and saved is not None
        if self.restart:
            foreign = [entry.name for entry in sorted(self.path.iterdir())
                       if not _written_by_runs(entry)]
            if foreign:
                raise UserInputError(
                    f"--save_path={self.path}: --restart deletes a run's own files only, and "
                    f"this folder also holds {foreign[0]!r}; move that away, or use a new "
                    "--save_path")
        if saved is not None and not restart and _differences(saved, self.settings):
            raise UserInputError(
                f"--save_path={self.path}: holds a run with other settings "
                f"({_differences(saved, self.settings)}); use a new --save_path, or "
                "--restart to delete that run and start over")

    def begin(self):
        """Deletes the old run on --restart, then records settings.json.

        Called once the data and model are ready to train: a folder holds a run
        once something of it is saved, not when bad input stopped it early.
        """
        if self.restart:
            for entry in self.path.iterdir():
                if entry.name == folder_lock.LOCK or not _written_by_runs(entry):
                    continue  # held by this process; not the run's
                try:
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
                except OSError as error:
                    raise RunFailure(f"{entry}: cannot delete it for --restart "
                                     f"({error.strerror}); delete it yourself, or use a new "
                                     "--save_path") from None
            self.restart = False
        if not self.file(SETTINGS).is_file():
            write_json(self.file(SETTINGS), dict(tutorial=self.tutorial, settings=self.settings))

    def file(self, name):
        return self.path / name

    def close(self):
        """The run is over: other processes may open the folder."""
        folder_lock.release(self.path)

    def read_metrics(self):
        """metrics.json of the run to resume, as a dict; {} before the first epoch ends."""
        path = self.resume_from / METRICS
        try:
            metrics = _with_non_finite(json.loads(path.read_text()))
            history = metrics.get("history", [])
            if not all(isinstance(epoch, dict) for epoch in history):
                raise ValueError("history")
            return metrics
        except FileNotFoundError:
            return {}
        except (ValueError, AttributeError, TypeError, OSError) as error:
            raise UserInputError(f"{path}: unreadable ({type(error).__name__}); it is damaged: "
                                 "use --restart to start the run over")

    def write_metrics(self, history, **results):
        """metrics.json (history and results, one schema for all tutorials), history.csv."""
        self.begin()
        if self.commit is None:  # the commit the run started from, kept across resumes
            self.commit = self.read_metrics().get("commit") or source.source_commit()
        metrics = dict(tutorial=self.tutorial, settings=self.settings, commit=self.commit,
                       machine=machine.describe_machine(),
                       replicas=self.strategy.num_replicas_in_sync,
                       history=history)
        write_json(self.file(METRICS), {**metrics, **results})
        write_text(self.file("history.csv"), history_as_csv(history))


def saved_settings(path, tutorial):
    """The settings of the `tutorial` run in folder `path`; None for a new or empty folder."""
    path = pathlib.Path(path)
    settings_file = path / SETTINGS
    if not settings_file.is_file():
        leftovers = [p for p in path.iterdir() if not p.name.startswith(".partial-")
                     and p.name != folder_lock.LOCK] if path.is_dir() else []
        if path.exists() and (not path.is_dir() or leftovers):
            raise UserInputError(f"--save_path={path}: exists and is not a run folder (no "
                                 f"{SETTINGS}); choose a new or empty folder")
        return None
    try:
        saved = json.loads(settings_file.read_text())
        saved_tutorial, settings = saved["tutorial"], saved["settings"]
    except (ValueError, KeyError, TypeError, OSError):
        raise UserInputError(f"{settings_file}: unreadable; it is damaged: use --restart to "
                             "start the run over, or a new --save_path")
    if saved_tutorial != tutorial:
        raise UserInputError(f"--save_path={path}: holds a {saved_tutorial} run, not "
                             f"{tutorial}; use a new --save_path")
    return settings


# What the trainers write into a run folder; --restart deletes these and nothing else.
RUN_FILES = {SETTINGS, METRICS, "history.csv", "checkpoint", "model.keras", "tensorboard",
             "vocabulary.json", "evaluation.json", "results.md", "results.csv", folder_lock.LOCK}


def _written_by_runs(entry):
    return (entry.name in RUN_FILES or entry.suffix == ".png" or entry.name.startswith(".partial-")
            # imdb_sentiment.compare's folder holds each model's run folder
            or (entry.is_dir() and (entry / SETTINGS).is_file()))


def _check_writable(path):
    """A UserInputError now, rather than an OSError after an epoch of training."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not (existing.is_dir() or existing == path) or not os.access(existing, os.W_OK):
        raise UserInputError(f"--save_path={path}: cannot write there ({existing} is not a "
                             "writable folder); choose another --save_path")


def open_run(save_path, tutorial, settings, restart=False, strategy=None):
    """The RunFolder at save_path, or None when save_path is None (nothing saved).

    On a worker other than the chief, a scratch folder that resumes from
    save_path (see the module docstring).
    """
    if not save_path:
        return None
    # Part of the settings: a run goes on in the precision it started in.
    settings = dict(settings, dtype_policy=keras.mixed_precision.global_policy().name)
    strategy = strategy or tf.distribute.get_strategy()
    # Every worker runs the folder's checks, so that a refused run stops them all;
    # the chief, or the only process, locks the folder.
    chief = strategy.extended.should_checkpoint
    folder = RunFolder(save_path, tutorial, settings, restart, strategy, lock=chief)
    if chief:
        return folder
    scratch = tempfile.mkdtemp(prefix=f"{tutorial}-worker-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    run = RunFolder(scratch, tutorial, settings, strategy=strategy, lock=False)
    run.resume_from = pathlib.Path(save_path)
    return run


def wait_for_all_workers(strategy):
    """Returns once every worker has called it (a collective sum of ones)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        strategy.reduce(tf.distribute.ReduceOp.SUM,
                        strategy.run(tf.function(lambda: tf.ones([]))), axis=None)


def data_setting(data_path):
    """How settings.json records the data: its absolute path, or None (downloaded)."""
    return os.path.abspath(data_path) if data_path else None


def history_as_csv(history):
    columns = list(dict.fromkeys(key for epoch in history for key in epoch))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return text.getvalue()


def _differences(saved, wanted):
    """The settings that differ, as "name saved -> wanted", or "" if none do. A
    setting that a run folder lacks (the package gained it later) matches when
    it is off (None or False): the run was made without it."""
    def differs(name):
        if name not in saved and (wanted.get(name) is None or wanted.get(name) is False):
            return False
        return saved.get(name) != wanted.get(name)

    return ", ".join(f"{name} {saved.get(name)!r} -> {wanted.get(name)!r}"
                     for name in sorted(set(saved) | set(wanted)) if differs(name))


# ----------------------------------------------------------------------------
# The training state: everything an exact resume needs


class TrainingState:
    """Weights, optimizer, random streams and epochs done, in `run/checkpoint/`.

    Why not Keras' BackupAndRestore: it saves weights and optimizer but not the
    seed generators, so dropout masks restart after a resume (without them the
    resume tests in tests/test_mnist_lstm.py fail). tf.train.Checkpoint(model=...)
    saves a Keras 3 model's weights only through the optimizer and misses the
    seed generators too, so the model's variables are listed explicitly. `extra` adds
    other variables (e.g. a weight average). The best model and the history are
    written by common/callbacks.py's BestModel and EpochCheckpoint, atomically,
    where Keras' ModelCheckpoint and CSVLogger write in place.
    """

    def __init__(self, run, model, extra=None):
        self.run = run
        self.epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            model_variables=list(model.variables), optimizer=model.optimizer,
            epochs_done=self.epochs_done, **(extra or {}))
        self.manager = None

    def restore(self):
        """Loads the latest checkpoint, if any; returns the number of epochs done.

        Call after `run.begin()`: the folder is read as it is then (after a
        --restart, empty). Checkpoints restore under any strategy, whatever
        the number of replicas that wrote them.
        """
        if not self.run:
            return 0
        folder = self.run.resume_from / "checkpoint"
        latest = None
        try:  # a damaged index or data file fails in many ways, all of them one line here
            self.manager = tf.train.CheckpointManager(
                self.checkpoint, self.run.file("checkpoint"), max_to_keep=1)
            latest = tf.train.latest_checkpoint(str(folder))
            if latest:
                self.checkpoint.restore(latest).assert_existing_objects_matched()
        except Exception as error:
            raise UserInputError(
                f"{latest or folder}: cannot resume from it ({type(error).__name__}); it is "
                "damaged or from another version; use --restart to start the run over")
        return int(self.epochs_done)

    def save(self, epochs_done):
        self.epochs_done.assign(epochs_done)
        if not self.manager:
            return
        try:
            self.manager.save()  # "latest" moves to the new checkpoint once it is complete
        except (tf.errors.OpError, OSError) as error:
            # The latest complete checkpoint stays; the unfinished one goes.
            for unfinished in pathlib.Path(self.manager.directory).glob("*_temp*"):
                shutil.rmtree(unfinished, ignore_errors=True)
            raise write_failure(pathlib.Path(self.manager.directory), error) from None


def resume(run, state):
    """(epochs done, their history) of the run in the folder; (0, []) for a new one.

    The history is cut to the checkpoint's epochs: metrics.json is written just
    before the checkpoint, so after a crash between the two it is one ahead.
    """
    if run:
        run.begin()  # on --restart, the old run goes here, before anything is restored
        wait_for_all_workers(run.strategy)  # so that none resumes from what the chief deletes
    epochs_done = state.restore()
    if not run:
        return 0, []
    history = run.read_metrics().get("history", [])
    if epochs_done > len(history):
        raise UserInputError(f"{run.resume_from / METRICS}: records {len(history)} epochs but "
                             f"the checkpoint {epochs_done}; it is damaged: use --restart to "
                             "start the run over")
    if history and not epochs_done:
        print(f"note: {run.path}: no checkpoint to resume from (checkpoint/ is missing or "
              f"empty), so the run starts over from epoch 1", flush=True)
    if epochs_done:
        print(f"Resuming {run.path} after epoch {epochs_done}.", flush=True)
    return epochs_done, history[:epochs_done]


# ----------------------------------------------------------------------------
# A finished run


def load_saved_weights(model, path):
    """The weights of the model saved at `path` (the best epoch's) into `model`."""
    try:
        model.load_weights(path)
    except Exception as error:  # missing, damaged: Keras raises many types
        raise UserInputError(f"{path}: cannot load the best epoch's model "
                             f"({type(error).__name__}); use --restart to train again")


def load_finished_run(save_path, tutorial, how_to_train):
    """(model.keras, settings) of the finished `tutorial` run in folder save_path.

    Anything else is a one-line UserInputError: no run there, a run of another
    tutorial, no model.keras yet (`how_to_train` says what to do), a damaged file.
    """
    folder = pathlib.Path(save_path)
    settings = saved_settings(folder, tutorial) if folder.is_dir() else None
    model_file = folder / "model.keras"
    if settings is None or not model_file.is_file():
        raise UserInputError(f"--save_path={folder}: no model.keras there; {how_to_train}")
    try:
        model = keras.saving.load_model(model_file)
    except Exception as error:  # Keras raises many types for a broken archive
        raise UserInputError(f"{model_file}: not a loadable Keras model "
                             f"({type(error).__name__}); train again with --restart")
    return model, settings
