"""Shared test fixtures and helpers.

Tests that need the real datasets take the `data_dir` fixture. It reads the
folder from $RNN_TUTORIALS_DATA (.ci/run sets it). Unset, those tests are
skipped, with a reason that names the variable and the layout; under CI (CI
set), or when it names a missing folder, they fail.

Entry points are run as a user runs them, `python -m <module> ...`, with
`run_module` (or, for many short command lines, `forked`: each its own process,
forked once TensorFlow is imported); `assert_one_line_error` checks the one error
path every entry point shares (one line on stderr, exit status 2, no traceback).
"""

import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import common  # noqa: E402,F401  (quiets TensorFlow's start-up logs)

DATA_ENV = "RNN_TUTORIALS_DATA"
DATA_LAYOUT = ("ptb/ptb.{train,valid,test}.txt, fashion-mnist/*-ubyte.gz, "
               "mnist-test/t10k-*-ubyte.gz, imdb/aclImdb_v1.tar.gz")


@pytest.fixture(scope="session")
def data_dir():
    value = os.environ.get(DATA_ENV)
    if not value:
        if os.environ.get("CI"):
            pytest.fail(f"${DATA_ENV} is not set; CI must run the real-data tests.")
        pytest.skip(f"real data: set {DATA_ENV} to a folder holding {DATA_LAYOUT}")
    path = pathlib.Path(value)
    if not path.is_dir():
        pytest.fail(f"${DATA_ENV}={value} is not a folder")
    return path


def module_command(module, *args):
    return [sys.executable, "-m", module, *map(str, args)]


def run_module(module, *args, stdin=None, env=None, timeout=600):
    """Runs `python -m module args...` from the repository root; the CompletedProcess."""
    return subprocess.run(module_command(module, *args), cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


class ForkedRuns:
    """run_module for many short command lines (bad input, mostly): each runs as a
    process of its own, forked from one Python that imported TensorFlow once
    (tests/fork_server.py), with its own stdin (empty unless given), stdout, stderr,
    environment and exit status. Calls run one at a time."""

    def __init__(self, folder):
        self.folder, self.count = pathlib.Path(folder), 0
        with open(self.folder / "server.stderr", "w") as server_stderr:
            self.server = subprocess.Popen(module_command("tests.fork_server"), cwd=ROOT,
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=server_stderr, bufsize=0)

    def run(self, module, *args, stdin=None, env=None, timeout=300):
        """As run_module(module, *args, ...): the CompletedProcess."""
        self.count += 1
        files = {name: self.folder / f"{self.count}.{name}"
                 for name in ("stdin", "stdout", "stderr")}
        files["stdin"].write_text(stdin or "")
        request = dict(module=module, args=list(map(str, args)), env={**os.environ, **(env or {})},
                       **{name: str(path) for name, path in files.items()})
        self.server.stdin.write((json.dumps(request) + "\n").encode())
        pid = self._answer(120)["pid"]
        try:
            returncode = self._answer(timeout)["returncode"]
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            self._answer(60)
            raise
        return subprocess.CompletedProcess(module_command(module, *args), returncode,
                                           files["stdout"].read_text(), files["stderr"].read_text())

    def _answer(self, timeout):
        ready, _, _ = select.select([self.server.stdout], [], [], timeout)
        if not ready:
            raise subprocess.TimeoutExpired(module_command("tests.fork_server"), timeout)
        line = self.server.stdout.readline()
        assert line, f"the fork server ended: {(self.folder / 'server.stderr').read_text()[-2000:]}"
        return json.loads(line)

    def close(self):
        self.server.stdin.close()
        self.server.wait(timeout=60)


@pytest.fixture(scope="session")
def forked(tmp_path_factory):
    """The suite's ForkedRuns; its server starts on first use."""
    runs = ForkedRuns(tmp_path_factory.mktemp("forked"))
    yield runs
    runs.close()


def assert_one_line_error(result, expected):
    """Exit status 2, no traceback, and stderr's last line is `error: ...expected...`."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and expected in last_line, result.stderr[-2000:]


def read_metrics(run_folder):
    return json.loads((pathlib.Path(run_folder) / "metrics.json").read_text())


def timing_free(history):
    """The per-epoch history without the wall-clock entries, which vary run to run."""
    timings = ("seconds", "words_per_second", "examples_per_second")
    return [{key: value for key, value in epoch.items() if key not in timings}
            for epoch in history]


def killed_and_rerun_like_uninterrupted(command_for, tmp_path, epochs, whole_folder=None):
    """Runs command_for(folder) whole (or takes `whole_folder`, a finished run of the
    same command), and again SIGKILLed after its first epoch and then re-run; asserts
    the two histories are equal and returns both metrics."""
    killed_folder = tmp_path / "killed"
    if whole_folder is None:
        whole_folder = tmp_path / "whole"
        uninterrupted = run_module(*command_for(whole_folder)[2:])
        assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]
    epochs_before_kill = kill_after_first_epoch(command_for(killed_folder), killed_folder)
    assert 1 <= epochs_before_kill < epochs  # else the kill came too late to test anything
    resumed = run_module(*command_for(killed_folder)[2:])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"after epoch {epochs_before_kill}" in resumed.stdout
    whole, killed = read_metrics(whole_folder), read_metrics(killed_folder)
    assert timing_free(killed["history"]) == timing_free(whole["history"])
    assert len(whole["history"]) == epochs
    return whole, killed


# The PTB run that tests stop (SIGKILL, SIGTERM) and resume: the `test` preset on
# real PTB, two epochs of 300 windows. `uninterrupted_ptb_run` runs it once, whole.
PTB_STOPPED_RUN = ("--model=test", "--epochs=2", "--steps_per_epoch=300")


def ptb_stopped_run_command(data_dir, save_path):
    return module_command("ptb.ptb_word_lm", f"--data_path={data_dir / 'ptb'}", *PTB_STOPPED_RUN,
                          f"--save_path={save_path}")


@pytest.fixture(scope="session")
def uninterrupted_ptb_run(data_dir, tmp_path_factory):
    """The run folder of ptb_stopped_run_command, run to its end without a stop."""
    folder = tmp_path_factory.mktemp("uninterrupted_ptb") / "run"
    result = run_module(*ptb_stopped_run_command(data_dir, folder)[2:])
    assert result.returncode == 0, result.stderr[-2000:]
    return folder


def epochs_in_checkpoint(run_folder):
    import tensorflow as tf  # here: only these tests need it

    latest = tf.train.latest_checkpoint(str(pathlib.Path(run_folder) / "checkpoint"))
    return int(tf.train.load_variable(latest, "epochs_done/.ATTRIBUTES/VARIABLE_VALUE"))


def kill_after_first_epoch(command, run_folder, timeout=300):
    """Starts `command`, SIGKILLs it once its first epoch is checkpointed; returns the
    number of epochs its latest checkpoint then holds (a real, unannounced stop)."""
    checkpoint_index = pathlib.Path(run_folder) / "checkpoint" / "checkpoint"
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not checkpoint_index.exists():
        if process.poll() is not None:
            raise AssertionError(f"ended before its first checkpoint: {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("no checkpoint within the time limit")
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return epochs_in_checkpoint(run_folder)


def tensorboard_summaries(log_dir):
    """{"<subfolder>/<tag>": [(step, value), ...]} of the event files under a run's
    tensorboard/ folder: scalars as floats, text as str."""
    import tensorflow as tf
    summaries = {}
    for event_file in sorted(pathlib.Path(log_dir).glob("*/events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor)
                item = array.item().decode() if array.dtype == object else float(array)
                summaries.setdefault(f"{event_file.parent.name}/{value.tag}", []).append(
                    (event.step, item))
    return summaries
