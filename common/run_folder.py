"""One run folder per run: what every trainer writes, and what resuming needs.

    runs/ptb/small/                  (--save_path)
        settings.json     the settings the run was started with
        checkpoint/       the training state after the last completed epoch
        metrics.json      {"tutorial", "settings", "commit", "machine", "history": [per epoch],
                           then the test metrics ("test_perplexity" or "test_accuracy", ...)}
        history.csv       the same per-epoch history as a table
        model.keras       the final model
        *.png             figures
        tensorboard/      TensorBoard's event files
        .lock             whose process has the folder open (common/folder_lock.py)

Every trainer runs the same protocol, one call at each point:

    run = run_folder.open_run(save_path, "ptb", settings, restart, strategy)
    ... the data, the model ...
    epochs_done, history = run.resume(model)      # (0, []) for a new run
    for each epoch: history.append(...); run.end_epoch(history)   # record, then checkpoint
    run.finish(history, test_perplexity=...)       # the test results; the folder released

Without a --save_path, `open_run` gives a NoRunFolder, whose calls write nothing.

The same command again resumes after the last completed epoch and ends with
exactly the numbers of an uninterrupted run: the checkpoint holds the weights,
the optimizer, every random stream the model draws from (Keras' seed
generators: dropout masks) and the epoch count, and the trainers derive their
shuffling from (seed, epoch), so nothing restarts. Other settings into the same
folder are refused, naming them. Every file is written atomically
(common/files.py), so a crash never leaves half a file. One process at a time
opens a folder (common/folder_lock.py).

Under several workers (MultiWorkerMirroredStrategy) only the chief writes the
run folder. The other workers write the same files into a scratch folder of
their own, removed when they exit: TensorFlow advises that every worker save,
since saving can take part in collective operations. To resume, every worker
reads the chief's folder, which must then be on a filesystem all of them see.
"""

import atexit
import contextlib
import json
import os
import pathlib
import shutil
import tempfile

import keras
import tensorflow as tf

from common import callbacks
from common import checkpoint
from common import files
from common import folder_lock
from common import machine
from common import source
from common.cli import RunFailure
from common.cli import UserInputError

SETTINGS = "settings.json"
METRICS = "metrics.json"
MODEL = "model.keras"  # the trained model, written by each trainer


# ----------------------------------------------------------------------------
# The run folder


class RunFolder:
    """The folder of one run, guarded against mixing two runs' settings.

    settings: a JSON-able dict (the trainer's config and its data). A folder that
    holds a run with other settings is refused; restart=True deletes that run,
    but only in `begin()`, once the new run's data and model are ready, so that
    a typo in another flag never costs the old run.
    """

    def __init__(self, path, tutorial, settings, restart=False, strategy=None, lock=True,
                 own_files=()):
        self.path = pathlib.Path(path)
        # What --restart may delete: the files every run writes, and the tutorial's own.
        self.own_files = RUN_FILES | set(own_files)
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
                       if not self._written_by_runs(entry)]
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
                if entry.name == folder_lock.LOCK or not self._written_by_runs(entry):
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
            files.write_json(self.file(SETTINGS),
                             dict(tutorial=self.tutorial, settings=self.settings))

    def file(self, name):
        return self.path / name

    def close(self):
        """The run is over: other processes may open the folder."""
        folder_lock.release(self.path)

    def read_metrics(self):
        """metrics.json of the run to resume, as a dict; {} before the first epoch ends."""
        path = self.resume_from / METRICS
        try:
            metrics = files.read_json(path.read_text())
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
        files.write_json(self.file(METRICS), {**metrics, **results})
        files.write_text(self.file("history.csv"), files.history_as_csv(history))

    # The protocol every trainer follows (module docstring).

    def resume(self, model, extra=None):
        """(epochs done, their history) of the run in the folder; (0, []) for a new one.

        Restores `model`'s training state (weights, optimizer, random streams;
        `extra`: more variables by name) from the checkpoint. Call once the data
        and model are ready: on --restart the old run is deleted here, before
        anything is restored. The history is cut to the checkpoint's epochs:
        metrics.json is written just before the checkpoint, so after a crash
        between the two it is one ahead.
        """
        self.begin()
        wait_for_all_workers(self.strategy)  # so that none resumes from what the chief deletes
        self.state = checkpoint.TrainingState(model, self.file("checkpoint"),
                                              self.resume_from / "checkpoint", extra)
        epochs_done = self.state.restore()
        history = self.read_metrics().get("history", [])
        if epochs_done > len(history):
            raise UserInputError(f"{self.resume_from / METRICS}: records {len(history)} epochs "
                                 f"but the checkpoint {epochs_done}; it is damaged: use "
                                 "--restart to start the run over")
        if history and not epochs_done:
            print(f"note: {self.path}: no checkpoint to resume from (checkpoint/ is missing "
                  "or empty), so the run starts over from epoch 1", flush=True)
        if epochs_done:
            print(f"Resuming {self.path} after epoch {epochs_done}.", flush=True)
        return epochs_done, history[:epochs_done]

    def end_epoch(self, history, training_weights=contextlib.nullcontext):
        """Records the epoch that ends `history`: metrics.json and history.csv, then
        the checkpoint. `training_weights`: a context manager that puts the weights
        training goes on from into the model while it is saved (when a callback has
        swapped in averaged weights)."""
        self.write_metrics(history)
        with training_weights():
            self.state.save(len(history))

    def finish(self, history, test_scalars=None, **results):
        """The run's results in metrics.json beside its history, `test_scalars` in
        TensorBoard too; then the run is over and other processes may open the folder."""
        self.write_metrics(history, **results)
        if test_scalars:
            callbacks.log_test_metrics(self.file("tensorboard"), len(history), test_scalars)
        self.close()

    def tensorboard(self):
        """Keras' TensorBoard callback into tensorboard/ (callbacks.tensorboard)."""
        return callbacks.tensorboard(self.file("tensorboard"), self.settings)

    def save_model(self, model, name):
        files.save_model(model, self.file(name))

    def write_json(self, name, data):
        files.write_json(self.file(name), data)

    def write_text(self, name, text):
        files.write_text(self.file(name), text)

    def save_figure(self, name, draw):
        """The figure that draw() returns, as the file `name`."""
        files.save_figure(draw(), self.file(name))

    def load_weights(self, model, name):
        """The weights saved as `name` (the best epoch's model) into `model`."""
        checkpoint.load_saved_weights(model, self.resume_from / name)

    def _written_by_runs(self, entry):
        return (entry.name in self.own_files or entry.suffix == ".png"
                or entry.name.startswith(".partial-")
                # imdb_sentiment.compare's folder holds each model's run folder
                or (entry.is_dir() and (entry / SETTINGS).is_file()))


class NoRunFolder:
    """A run that keeps nothing on disk (no --save_path): RunFolder's calls, doing nothing."""

    path = None

    def resume(self, model, extra=None):
        return 0, []

    def end_epoch(self, history, training_weights=None):
        pass

    def finish(self, history, test_scalars=None, **results):
        pass

    def tensorboard(self):
        return keras.callbacks.Callback()  # a callback that does nothing

    def save_model(self, model, name):
        pass

    def write_json(self, name, data):
        pass

    def write_text(self, name, text):
        pass

    def save_figure(self, name, draw):
        pass  # nothing drawn

    def load_weights(self, model, name):
        raise RunFailure(f"no run folder to load {name} from; give --save_path")


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


# What every trainer writes into a run folder (and *.png); --restart deletes these,
# the tutorial's own files (RunFolder's own_files) and nothing else.
RUN_FILES = {SETTINGS, METRICS, "history.csv", "checkpoint", MODEL, "tensorboard",
             folder_lock.LOCK}


def _check_writable(path):
    """A UserInputError now, rather than an OSError after an epoch of training."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not (existing.is_dir() or existing == path) or not os.access(existing, os.W_OK):
        raise UserInputError(f"--save_path={path}: cannot write there ({existing} is not a "
                             "writable folder); choose another --save_path")


def open_run(save_path, tutorial, settings, restart=False, strategy=None, own_files=()):
    """The RunFolder at save_path, or a NoRunFolder when save_path is None (nothing saved).

    On a worker other than the chief, a scratch folder that resumes from
    save_path (see the module docstring).
    """
    if not save_path:
        return NoRunFolder()
    if settings.get("data_path"):  # as settings.json records it (data_setting)
        settings = dict(settings, data_path=data_setting(settings["data_path"]))
    # Part of the settings: a run goes on in the precision it started in.
    settings = dict(settings, dtype_policy=keras.mixed_precision.global_policy().name)
    strategy = strategy or tf.distribute.get_strategy()
    # Every worker runs the folder's checks, so that a refused run stops them all;
    # the chief, or the only process, locks the folder.
    chief = strategy.extended.should_checkpoint
    folder = RunFolder(save_path, tutorial, settings, restart, strategy, lock=chief,
                       own_files=own_files)
    if chief:
        return folder
    scratch = tempfile.mkdtemp(prefix=f"{tutorial}-worker-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    run = RunFolder(scratch, tutorial, settings, strategy=strategy, lock=False,
                    own_files=own_files)
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
# A finished run


def load_finished_run(save_path, tutorial, how_to_train):
    """(model.keras, settings) of the finished `tutorial` run in folder save_path.

    Anything else is a one-line UserInputError: no run there, a run of another
    tutorial, no model.keras yet (`how_to_train` says what to do), a damaged file.
    """
    folder = pathlib.Path(save_path)
    settings = saved_settings(folder, tutorial) if folder.is_dir() else None
    model_file = folder / MODEL
    if settings is None or not model_file.is_file():
        raise UserInputError(f"--save_path={folder}: no model.keras there; {how_to_train}")
    try:
        model = keras.saving.load_model(model_file)
    except Exception as error:  # Keras raises many types for a broken archive
        raise UserInputError(f"{model_file}: not a loadable Keras model "
                             f"({type(error).__name__}); train again with --restart")
    return model, settings
