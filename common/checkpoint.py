"""The training state in a run folder's checkpoint/: everything an exact resume needs."""

import pathlib
import shutil

import tensorflow as tf

from common import files
from common.cli import UserInputError


class TrainingState:
    """Weights, optimizer, random streams and epochs done, in a checkpoint folder.

    Why not Keras' BackupAndRestore: it saves weights and optimizer but not the
    seed generators, so dropout masks restart after a resume (without them the
    resume tests in tests/test_mnist_lstm.py fail). tf.train.Checkpoint(model=...)
    saves a Keras 3 model's weights only through the optimizer and misses the
    seed generators too, so the model's variables are listed explicitly. `extra` adds
    other variables (e.g. a weight average). The best model and the history are
    written by the run folder and common/callbacks.py's BestModel, atomically,
    where Keras' ModelCheckpoint and CSVLogger write in place.
    """

    def __init__(self, model, folder, resume_from=None, extra=None):
        self.folder = pathlib.Path(folder)
        self.resume_from = pathlib.Path(resume_from or folder)
        self.epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            model_variables=list(model.variables), optimizer=model.optimizer,
            epochs_done=self.epochs_done, **(extra or {}))
        self.manager = None

    def restore(self):
        """Loads the latest checkpoint, if any; returns the number of epochs done.

        Checkpoints restore under any strategy, whatever the number of replicas
        that wrote them; `resume_from` is read (another worker's folder reads the
        chief's), `folder` written.
        """
        latest = None
        try:  # a damaged index or data file fails in many ways, all of them one line here
            self.manager = tf.train.CheckpointManager(
                self.checkpoint, str(self.folder), max_to_keep=1)
            latest = tf.train.latest_checkpoint(str(self.resume_from))
            if latest:
                self.checkpoint.restore(latest).assert_existing_objects_matched()
        except Exception as error:
            raise UserInputError(
                f"{latest or self.resume_from}: cannot resume from it "
                f"({type(error).__name__}); it is damaged or from another version; use "
                "--restart to start the run over")
        return int(self.epochs_done)

    def save(self, epochs_done):
        self.epochs_done.assign(epochs_done)
        try:
            self.manager.save()  # "latest" moves to the new checkpoint once it is complete
        except (tf.errors.OpError, OSError) as error:
            # The latest complete checkpoint stays; the unfinished one goes.
            for unfinished in pathlib.Path(self.manager.directory).glob("*_temp*"):
                shutil.rmtree(unfinished, ignore_errors=True)
            raise files.write_failure(pathlib.Path(self.manager.directory), error) from None


def load_saved_weights(model, path):
    """The weights of the model saved at `path` (the best epoch's) into `model`."""
    try:
        model.load_weights(path)
    except Exception as error:  # missing, damaged: Keras raises many types
        raise UserInputError(f"{path}: cannot load the best epoch's model "
                             f"({type(error).__name__}); use --restart to train again")
