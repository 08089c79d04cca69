"""Faults as a user meets them: nothing lost, nothing hung, nothing silent.

A second process into a running run's folder, a lock left by a killed run, a
loss that stops being finite, each kind of damaged run folder, a write the disk
refuses, a worker that never comes, SIGTERM. Each ends in one line (exit 2 for
bad input, 1 for a failure of the run), and what the run saved before resumes
to exactly the numbers of an uninterrupted run.
"""

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from common import files
from common import folder_lock
from common import run_folder
from common.cli import RunFailure
from common.cli import UserInputError
from common.training import NonFiniteLoss
from ptb import ptb_word_lm
from ptb import record
from tests.conftest import (ROOT, assert_one_line_error, epochs_in_checkpoint, module_command,
                            ptb_stopped_run_command, read_metrics, run_module, timing_free)
from tests.test_distributed import free_ports
from tests.test_ptb_training import TINY, write_tiny_corpus

CONFIG = dataclasses.replace(TINY, epochs=2)


def preset_command(data_path, save_path, *flags):
    """The PTB trainer's command line: the `test` preset, 2 epochs of 400 windows."""
    return module_command("ptb.ptb_word_lm", f"--data_path={data_path}", "--model=test",
                          "--epochs=2", "--steps_per_epoch=400", f"--save_path={save_path}",
                          *flags)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    """The tiny corpus's folder, shared: the trainer only reads it."""
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def finished_run(tiny_corpus, tmp_path_factory):
    """(folder, metrics) of CONFIG trained to its end on tiny_corpus, seed 1: each
    test that damages or resumes such a run works on a copy of it."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    return folder, ptb_word_lm.train_and_evaluate(CONFIG, tiny_corpus, save_path=folder, seed=1)


@pytest.fixture(scope="module")
def uninterrupted_seed_2(tiny_corpus):
    """The metrics of CONFIG trained on tiny_corpus, seed 2, without a run folder."""
    return ptb_word_lm.train_and_evaluate(CONFIG, tiny_corpus, seed=2)


def wait_for(path, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stderr.read()[-2000:]
        assert time.monotonic() < deadline, f"no {path} within {timeout} s"
        time.sleep(0.05)


# ----------------------------------------------------------------------------
# One process per run folder


def test_a_second_process_is_refused_and_a_dead_ones_lock_taken_over(data_dir, tmp_path, forked,
                                                                     tiny_corpus):
    data_path = data_dir / "ptb"
    save_path = tmp_path / "run"
    first = subprocess.Popen(preset_command(data_path, save_path, "--steps_per_epoch=20000"),
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    try:
        wait_for(save_path / "settings.json", first)
        second = forked.run(*preset_command(data_path, save_path, "--steps_per_epoch=20000")[2:])
        assert_one_line_error(second, f"--save_path={save_path}: in use by PID {first.pid} on ")
        restart = forked.run(*preset_command(data_path, save_path, "--restart")[2:])
        assert_one_line_error(restart, f"in use by PID {first.pid}")
    finally:
        first.kill()  # a real, unannounced stop: the lock file still names it
        first.wait()
    assert f"PID {first.pid}" in (save_path / folder_lock.LOCK).read_text()
    # A new run (--restart) on the tiny corpus: real PTB's validation and test took
    # most of this test's time.
    taken_over = run_module(*preset_command(tiny_corpus, save_path, "--restart", "--epochs=1",
                                            "--steps_per_epoch=50")[2:])
    assert taken_over.returncode == 0, taken_over.stderr[-2000:]
    assert f"taking over the lock of PID {first.pid}" in taken_over.stdout
    assert (save_path / folder_lock.LOCK).read_text() == ""  # ended normally: no holder


def test_restart_deletes_only_the_runs_own_files(tmp_path):
    run_folder.RunFolder(tmp_path, "ptb", {"epochs": 1}).begin()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match="also holds 'notes.txt'"):
        run_folder.RunFolder(tmp_path, "ptb", {"epochs": 2}, restart=True)
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "curves.png").write_bytes(b"figure")
    run_folder.RunFolder(tmp_path, "ptb", {"epochs": 2}, restart=True).begin()
    assert sorted(path.name for path in tmp_path.iterdir()) == [".lock", "settings.json"]


# ----------------------------------------------------------------------------
# A loss that stops being finite


@pytest.mark.parametrize("learning_rate, what", [
    (float("nan"), "the training loss is nan"),  # every weight NaN
    # Clipping keeps the loss finite, but far beyond any perplexity a float holds.
    (1e30, "its perplexity beyond a float's range"),
])
def test_a_diverging_loss_stops_training_and_keeps_the_last_good_epoch(
        tmp_path, monkeypatch, learning_rate, what, tiny_corpus, uninterrupted_seed_2):
    data_path, uninterrupted = tiny_corpus, uninterrupted_seed_2
    save_path = tmp_path / "run"
    schedule = ptb_word_lm.learning_rate_for_epoch
    # The second epoch at a learning rate that makes training diverge.
    monkeypatch.setattr(
        ptb_word_lm, "learning_rate_for_epoch",
        lambda config, epoch: learning_rate if epoch == 1 else schedule(config, epoch))
    with pytest.raises(NonFiniteLoss, match=rf"^epoch 2, window \d+ of \d+: .*{what}, so "
                                            "training stopped"):
        ptb_word_lm.train_and_evaluate(CONFIG, data_path, save_path=save_path, seed=2)
    assert [epoch["epoch"] for epoch in read_metrics(save_path)["history"]] == [1]
    assert epochs_in_checkpoint(save_path) == 1 and not (save_path / "model.keras").exists()
    monkeypatch.undo()
    resumed = ptb_word_lm.train_and_evaluate(CONFIG, data_path, save_path=save_path, seed=2)
    assert timing_free(resumed["history"]) == timing_free(uninterrupted["history"])
    assert resumed["test_perplexity"] == uninterrupted["test_perplexity"]


def test_a_learning_rate_that_diverges_ends_the_run_in_one_line(tmp_path):
    save_path = tmp_path / "run"
    result = run_module(*preset_command(write_tiny_corpus(tmp_path), save_path,
                                        "--learning_rate=1e30")[2:])
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: epoch 1, window ") and "so training stopped" in last_line
    assert "Epoch 1: learning rate 1e+30\n" in result.stdout  # not 31 digits
    assert "Test perplexity" not in result.stdout and not (save_path / "model.keras").exists()


def test_non_finite_flags_are_refused_and_diverging_numbers_stay_readable(tmp_path, forked):
    assert_one_line_error(
        forked.run(*preset_command(tmp_path, tmp_path / "run", "--learning_rate=inf")[2:]),
        "--learning_rate=inf: must be a finite number above 0")
    assert ptb_word_lm.perplexity(800.0) == float("inf")
    assert record.format_perplexity(3.9e176) == "3.9e+176"
    assert record.format_perplexity(114.2267) == "114.23"
    assert [record.format_learning_rate(rate) for rate in (1.0, 0.125, 0.8 ** 4, 1e30)] == [
        "1", "0.125", "0.4096", "1e+30"]
    files.write_json(tmp_path / "metrics.json", {"history": [{"loss": float("nan")}],
                                                 "test_perplexity": float("inf")})
    strict = json.loads((tmp_path / "metrics.json").read_text(),
                        parse_constant=lambda name: pytest.fail(f"{name} in strict JSON"))
    assert strict == {"history": [{"loss": None}], "test_perplexity": None,
                      "non_finite": {"history[0].loss": "nan", "test_perplexity": "inf"}}


# ----------------------------------------------------------------------------
# Damaged run folders


def damage_checkpoint_index(folder):
    (folder / "checkpoint" / "checkpoint").write_bytes(os.urandom(200))


def empty_checkpoint_index(folder):
    (folder / "checkpoint" / "checkpoint").write_text("")


def truncate_checkpoint_data(folder):
    (data,) = (folder / "checkpoint").glob("*.data-*")
    data.write_bytes(data.read_bytes()[:100])


def empty_metrics(folder):
    (folder / "metrics.json").write_text("{}")


def damage_settings(folder):
    (folder / "settings.json").write_text("{not json")


@pytest.mark.parametrize("damage, names", [
    (damage_checkpoint_index, "checkpoint: cannot resume from it"),
    (empty_checkpoint_index, "checkpoint: cannot resume from it"),
    (truncate_checkpoint_data, "checkpoint/ckpt-2: cannot resume from it"),
    (empty_metrics, "metrics.json: records 0 epochs but the checkpoint 2"),
    (damage_settings, "settings.json: unreadable"),
])
def test_each_damaged_file_is_named_and_restart_clears_it(tmp_path, damage, names, tiny_corpus,
                                                          finished_run):
    data_path, (finished_folder, finished) = tiny_corpus, finished_run
    save_path = tmp_path / "run"
    shutil.copytree(finished_folder, save_path)
    damage(save_path)
    with pytest.raises(UserInputError, match=f"{names}.*use --restart"):
        ptb_word_lm.train_and_evaluate(CONFIG, data_path, save_path=save_path, seed=1)
    restarted = ptb_word_lm.train_and_evaluate(CONFIG, data_path, save_path=save_path, seed=1,
                                               restart=True)
    assert restarted["test_perplexity"] == finished["test_perplexity"]


def test_a_missing_checkpoint_says_the_run_starts_over(tmp_path, capsys, tiny_corpus,
                                                       finished_run):
    data_path, save_path = tiny_corpus, tmp_path / "run"
    shutil.copytree(finished_run[0], save_path)
    shutil.rmtree(save_path / "checkpoint")
    capsys.readouterr()
    ptb_word_lm.train_and_evaluate(CONFIG, data_path, save_path=save_path, seed=1)
    assert "no checkpoint to resume from" in capsys.readouterr().out
    assert epochs_in_checkpoint(save_path) == 2


# ----------------------------------------------------------------------------
# Writes the disk refuses


def test_a_failed_checkpoint_write_keeps_the_last_good_one(tmp_path, monkeypatch):
    data_path = write_tiny_corpus(tmp_path)
    uninterrupted = ptb_word_lm.train_and_evaluate(CONFIG, data_path, seed=4)
    save_path = tmp_path / "run"
    save = tf.train.CheckpointManager.save

    def disk_full_in_epoch_2(manager, *args, **kwargs):
        if int(manager._checkpoint.epochs_done) == 2:
            pathlib.Path(manager.directory, "ckpt-2_temp").mkdir()  # as TensorFlow leaves it
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
        return save(manager, *args, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", disk_full_in_epoch_2)
    with pytest.raises(RunFailure, match="checkpoint: cannot write it .No space left on device."):
        ptb_word_lm.train_and_evaluate(CONFIG, data_path, save_path=save_path, seed=4)
    assert not list((save_path / "checkpoint").glob("*_temp*"))
    assert epochs_in_checkpoint(save_path) == 1
    monkeypatch.undo()
    resumed = ptb_word_lm.train_and_evaluate(CONFIG, data_path, save_path=save_path, seed=4)
    assert timing_free(resumed["history"]) == timing_free(uninterrupted["history"])
    assert resumed["test_perplexity"] == uninterrupted["test_perplexity"]


# ----------------------------------------------------------------------------
# Several workers, signals


def test_a_worker_whose_peer_never_comes_ends_in_one_line(tmp_path):
    tf_config = {"cluster": {"worker": ["127.0.0.1:24751", "127.0.0.1:24752"]},
                 "task": {"type": "worker", "index": 0}}
    start = time.monotonic()
    # The workers meet before any data is read.
    result = run_module(*preset_command(tmp_path, tmp_path / "run", "--worker_timeout=5")[2:],
                        env={"TF_CONFIG": json.dumps(tf_config)}, timeout=120)
    assert time.monotonic() - start < 60
    assert result.returncode == 1, result.stderr[-2000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: TF_CONFIG: the workers did not all join within 5 s")
    assert "not reachable: worker 1 (127.0.0.1:24752)" in last_line
    assert "Traceback" not in result.stderr


# As a terminal's shell starts a command: SIGINT not ignored, even where pytest itself
# was started in the background (which ignores it, for its children too).
FROM_A_TERMINAL = ("import runpy, signal; "
                   "signal.signal(signal.SIGINT, signal.default_int_handler); "
                   "runpy.run_module('ptb.ptb_word_lm', run_name='__main__', alter_sys=True)")


def start_worker_0(tmp_path, ports, *flags):
    """Worker 0 of a cluster of two on 127.0.0.1, in a process group of its own."""
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                 "task": {"type": "worker", "index": 0}}
    command = [sys.executable, "-c", FROM_A_TERMINAL,
               *preset_command(tmp_path, tmp_path / "run", *flags)[3:]]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            env={**os.environ, "TF_CONFIG": json.dumps(tf_config)})


def wait_until(condition, process, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


def proc_status(pid):
    """/proc/PID/status as a dict; {} once the process is gone."""
    try:
        lines = pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def children(pid):
    """The PIDs of the processes whose parent is `pid`."""
    found = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid ...: the comm may hold spaces, so split after it.
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass
    return found


def gone(pid):
    return proc_status(pid).get("State", "Z").startswith("Z")  # absent, or a zombie


def takes_connections(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def ends_as_signalled(process, signum, to_group):
    """Sends `signum`; stderr (to its end: that of the watcher too) and the seconds taken."""
    sent = time.monotonic()
    if to_group:  # as a terminal's Ctrl-C does
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    return stderr, time.monotonic() - sent


def assert_nothing_left_running(pids):
    for pid in pids:
        deadline = time.monotonic() + 5
        while not gone(pid):
            assert time.monotonic() < deadline, f"process {pid} still runs"
            time.sleep(0.05)


@pytest.mark.parametrize("signum, to_group", [
    (signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["sigint", "ctrl-c-to-the-group", "sigterm"])
def test_a_signal_ends_a_worker_waiting_for_its_peer_in_one_line(tmp_path, signum, to_group):
    """Worker 1 never comes: worker 0 waits in Python, listening on its own port."""
    ports = free_ports(2)
    worker = start_worker_0(tmp_path, ports)
    try:
        wait_until(lambda: takes_connections(ports[0]), worker, "worker 0 listening")
        helpers = children(worker.pid)
        stderr, took = ends_as_signalled(worker, signum, to_group)
    finally:
        worker.kill()
        worker.wait()
    assert worker.returncode == 128 + signum, (worker.returncode, stderr[-2000:])  # 130, 143
    assert took < 5, f"ended {took:.1f} s after the signal"
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("interrupted while waiting for the other workers of TF_CONFIG")
    assert sum("interrupted" in line for line in lines) == 1, stderr[-2000:]
    assert_nothing_left_running(helpers)


@pytest.mark.parametrize("ending", ["sigint", "timeout"])
def test_a_worker_held_in_tensorflows_wait_still_ends_in_one_line(tmp_path, ending):
    """Another program holds worker 1's port: worker 0 reaches it and goes on into
    TensorFlow's wait, which holds Python's lock; the watcher prints the line."""
    ports = free_ports(2)
    # Long enough to be seen in the wait (and signalled there); the timeout, sooner.
    worker_timeout = 10 if ending == "sigint" else 5
    with socket.create_server(("127.0.0.1", ports[1])):
        worker = start_worker_0(tmp_path, ports, f"--worker_timeout={worker_timeout}")
        try:
            def in_tensorflows_wait():  # SIGINT at its default action, the watcher started
                status = proc_status(worker.pid)
                return status and not int(status["SigCgt"], 16) >> (signal.SIGINT - 1) & 1 \
                    and children(worker.pid)
            wait_until(in_tensorflows_wait, worker, "worker 0 in TensorFlow's wait")
            helpers = children(worker.pid)
            if ending == "sigint":
                time.sleep(1)  # well inside the wait
                stderr, took = ends_as_signalled(worker, signal.SIGINT, to_group=False)
            else:
                _, stderr = worker.communicate(timeout=120)
        finally:
            worker.kill()
            worker.wait()
    assert "Traceback" not in stderr, stderr[-2000:]
    last_line = stderr.strip().splitlines()[-1]
    if ending == "sigint":
        assert worker.returncode == -signal.SIGINT, stderr[-2000:]  # killed by it: $? is 130
        assert took < 5, f"ended {took:.1f} s after the signal"
        assert last_line.startswith("interrupted while waiting for the other workers")
    else:
        assert worker.returncode == 1, stderr[-2000:]
        assert last_line.startswith("error: TF_CONFIG: the workers did not all join within "
                                    f"{worker_timeout} s (--worker_timeout); not reachable: "
                                    "none: they started, but did not all join")
    assert_nothing_left_running(helpers)


def test_sigterm_ends_a_run_as_ctrl_c_does_and_it_resumes(data_dir, tmp_path,
                                                          uninterrupted_ptb_run):
    save_path = tmp_path / "run"
    # Two epochs: the second (and its validation) is still seconds long when the
    # signal comes, within 0.05 s of the first epoch's checkpoint.
    command = ptb_stopped_run_command(data_dir, save_path)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    wait_for(save_path / "checkpoint" / "checkpoint", process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith("interrupted; run the same command again")
    resumed = run_module(*command[2:])
    assert resumed.returncode == 0 and "Resuming" in resumed.stdout, resumed.stderr[-2000:]
    # ... to the numbers of a run that was never interrupted.
    resumed_metrics, whole_metrics = read_metrics(save_path), read_metrics(uninterrupted_ptb_run)
    assert len(whole_metrics["history"]) == 2
    assert timing_free(resumed_metrics["history"]) == timing_free(whole_metrics["history"])
    assert resumed_metrics["test_perplexity"] == whole_metrics["test_perplexity"]


# A signal whose handler runs inside a destructor: Python prints "Exception ignored"
# and drops the KeyboardInterrupt. The garbage collector runs TensorFlow's
# destructors at any moment, so a real run meets this now and then.
SIGNAL_IN_A_DESTRUCTOR = """
import os, signal, sys, threading, time
from common import cli
# Python keeps SIGINT ignored if it starts so (a background job of a script); Ctrl-C's
# usual handler, as a terminal's program has it.
signal.signal(signal.SIGINT, signal.default_int_handler)

class SlowToDestroy:
    def __del__(self):
        end = time.monotonic() + 1
        while time.monotonic() < end:  # bytecode, where the signal's handler runs
            pass

def main(argv):
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIG%s)).start()
    SlowToDestroy()  # destroyed at once; the signal arrives while __del__ runs
    time.sleep(2)
    print("ran to the end")

cli.run(main)
"""


@pytest.mark.parametrize("name, status", [("INT", 130), ("TERM", 143)])
def test_a_signal_that_lands_in_a_destructor_still_ends_the_run(name, status):
    result = subprocess.run([sys.executable, "-c", SIGNAL_IN_A_DESTRUCTOR % name], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == status, result.stderr[-2000:]
    assert "ran to the end" not in result.stdout
    assert result.stderr.strip().splitlines() == [
        "interrupted; run the same command again (without --restart) to resume after the "
        "last completed epoch"], result.stderr[-2000:]
