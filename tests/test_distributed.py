"""Every trainer under several replicas and several workers, on this CPU-only machine.

Two replicas are two logical CPU devices (MirroredStrategy), and two workers
are two processes on 127.0.0.1 (TF_CONFIG, MultiWorkerMirroredStrategy).
Device setup is fixed once TensorFlow starts, so each case runs in fresh
Python processes (tests/worker_run.py). GPU branches skip where none exists.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ROOT, assert_one_line_error, read_metrics, timing_free
from tests.test_ptb_training import write_tiny_corpus

GPUS = tf.config.list_logical_devices("GPU")


def run_python(code, timeout=600):
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def worker_command(out, *args):
    return [sys.executable, "-m", "tests.worker_run", str(out), *map(str, args)]


def run_worker(out, *args, timeout=600):
    return subprocess.run(worker_command(out, *args), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def close(a, b, rel):
    """The two nested structures (dicts, lists, numbers) are equal to `rel`."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rel) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == pytest.approx(b, rel=rel)
    return a == b


TWO_CPUS = """
import json, dataclasses
import common, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
ONE, TWO = tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
"""


# ----------------------------------------------------------------------------
# PTB: each replica carries the state of its own rows


PTB_ON_ONE_AND_TWO = TWO_CPUS + """
from ptb import ptb_word_lm
config = {config}
results = [ptb_word_lm.train_and_evaluate(config, "{data}", strategy, seed=1,
                                          steps_per_epoch={steps})
           for strategy in (ONE, TWO)]
for r in results:
    for epoch in r["history"]:
        del epoch["seconds"], epoch["words_per_second"]
print(json.dumps(results))
"""


@pytest.mark.parametrize("tied", [False, True])
def test_ptb_each_step_on_two_replicas_equals_one_device_to_float32_rounding(tied):
    """What several replicas reproduce: each training step, from the same weights,
    state and window, to float32 rounding (the replicas add in another order).
    Tied, the embedding's gradient joins its rows' part and the output's dense part.

    Two replicas always take the plain Keras path; one device is shown on that
    path and on the CPU fast path, which computes the same step another way."""
    result = run_python(TWO_CPUS + """
import keras
import numpy as np
from ptb import benchmark, fast_cpu, ptb_word_lm
config = dataclasses.replace(ptb_word_lm.PRESETS["small"], vocab_size=40, hidden_size=32,
                             num_steps=5, learning_rate=0.2, max_grad_norm=1.0, tied=TIED)
rng = np.random.default_rng(0)
windows = [(tf.constant(rng.integers(0, 40, (20, 5)), tf.int32),
            tf.constant(rng.integers(0, 40, (20, 5)), tf.int32)) for _ in range(3)]
trainers = {"one, plain": benchmark.build_trainer(config, ONE, fast_cpu.PLAIN),
            "one, fast": benchmark.build_trainer(config, ONE, fast_cpu.FAST),
            "two, plain": benchmark.build_trainer(config, TWO)}
start = trainers["one, plain"].model.get_weights()
steps = {}
for name, trainer in trainers.items():
    steps[name] = []
    for inputs, targets in windows:  # each step from the same weights and state
        trainer.model.set_weights(start)
        loss, _ = trainer.train_step(inputs, targets, trainer.initial_state())
        steps[name].append([float(loss)] + [w.tolist() for w in trainer.model.get_weights()])
print(json.dumps(steps))
""".replace("TIED", str(tied)))
    reference = result["one, plain"]
    for name in ("two, plain", "one, fast"):
        for step, wanted in zip(result[name], reference):
            assert step[0] == pytest.approx(wanted[0], rel=1e-6), name  # the loss
            for weights, wanted_weights in zip(step[1:], wanted[1:]):
                np.testing.assert_allclose(weights, wanted_weights, rtol=1e-5, atol=1e-7,
                                           err_msg=name)


def test_ptb_small_config_on_two_replicas_equals_one_device(tmp_path):
    """A whole run agrees only as closely as two float32 runs do: here two epochs
    of 35 windows on a tiny corpus, at learning rate 0.2, to relative 1e-4.

    At 1.0 this model's training is chaotic after ~15 windows, and the rounding
    differences of the two runs (the replicas add in another order, and one
    device takes the CPU fast path) grow past that (docs/distributed.md).
    Clipping at 1.0 is active."""
    data_path = write_tiny_corpus(tmp_path)
    config = ('dataclasses.replace(ptb_word_lm.PRESETS["small"], vocab_size=40, hidden_size=32, '
              'num_steps=5, learning_rate=0.2, max_grad_norm=1.0, epochs=2, epochs_at_full_lr=1)')
    one, two = run_python(PTB_ON_ONE_AND_TWO.format(config=config, data=data_path, steps=None))
    assert len(one["history"]) == 2
    assert close(two, one, rel=1e-4), (one, two)


def test_ptb_test_preset_on_two_replicas_equals_one_device(data_dir):
    """The `test` preset on real PTB over 300 windows of its epoch, to relative 1e-4."""
    one, two = run_python(PTB_ON_ONE_AND_TWO.format(
        config='ptb_word_lm.PRESETS["test"]', data=data_dir / "ptb", steps=300))
    assert close(two, one, rel=1e-4), (one, two)
    assert one["test_perplexity"] < 5000  # it trained: uniform guessing scores 10,000


def test_ptb_rows_stay_on_their_replica_from_window_to_window():
    """Replica r always takes rows r*n .. r*n + n - 1, so the state it gets back is
    the one its rows left: each replica's state equals those rows of one device's."""
    result = run_python(TWO_CPUS + """
import keras
import numpy as np
from ptb import benchmark, ptb_word_lm
config = dataclasses.replace(ptb_word_lm.PRESETS["test"], vocab_size=50, hidden_size=6,
                             batch_size=6, num_steps=5, init_scale=1.0)
rng = np.random.default_rng(0)
windows = [(rng.integers(0, 50, (6, 5)), rng.integers(0, 50, (6, 5))) for _ in range(3)]
states = {}
for name, strategy in (("one", ONE), ("two", TWO)):
    trainer = benchmark.build_trainer(config, strategy)
    if name == "two":
        trainer.model.set_weights(weights)
    weights = trainer.model.get_weights()
    state, states[name] = trainer.initial_state(), []
    for inputs, targets in windows:
        _, state = trainer.eval_step(tf.constant(inputs), tf.constant(targets), state)
        # [replica][layer part] -> rows of that replica
        states[name].append([[part.numpy().tolist() for part in replica_state]
                             for replica_state in zip(*[strategy.experimental_local_results(s)
                                                        for s in state])])
print(json.dumps(states))
""")
    assert len(result["one"]) == len(result["two"]) == 3
    for one, two in zip(result["one"], result["two"]):  # window by window
        (whole,) = one  # one device: one replica with all 6 rows
        assert len(two) == 2
        for replica, replica_state in enumerate(two):
            for part, rows in enumerate(replica_state):  # h and c
                np.testing.assert_allclose(
                    rows, np.asarray(whole[part])[3 * replica:3 * replica + 3], rtol=1e-5, atol=1e-6)


def test_ptb_checkpoints_move_between_one_and_two_replicas(tmp_path):
    """Stopped in its third epoch on 2 replicas, resumed on 1 (and the reverse): the
    numbers of an uninterrupted run, to float32 tolerance."""
    data_path = write_tiny_corpus(tmp_path)
    result = run_python(TWO_CPUS + f"""
from ptb import ptb_word_lm
config = dataclasses.replace(ptb_word_lm.PRESETS["small"], vocab_size=40, hidden_size=16,
                             num_steps=5, learning_rate=0.2, epochs=3, epochs_at_full_lr=1)
from ptb import record
epoch_start = record.RunRecord.epoch_start

def stop_in_third_epoch(self, epoch, *args):
    if epoch == 2:
        raise KeyboardInterrupt("stopped")
    return epoch_start(self, epoch, *args)

def train(strategy, folder):
    return ptb_word_lm.train_and_evaluate(config, "{data_path}", strategy,
                                          save_path="{tmp_path}/" + folder, seed=1)

results = dict(whole=train(ONE, "whole"))
for first, then, name in ((TWO, ONE, "2-then-1"), (ONE, TWO, "1-then-2")):
    record.RunRecord.epoch_start = stop_in_third_epoch
    try:
        train(first, name)
    except KeyboardInterrupt:
        pass
    record.RunRecord.epoch_start = epoch_start
    results[name] = train(then, name)
for r in results.values():
    for epoch in r["history"]:
        del epoch["seconds"], epoch["words_per_second"]
print(json.dumps(results))
""")
    whole = result.pop("whole")
    for name, resumed in result.items():
        assert close(resumed, whole, rel=1e-4), (name, resumed, whole)
        replicas = read_metrics(tmp_path / name)["replicas"]
        assert replicas == (1 if name == "2-then-1" else 2)


# ----------------------------------------------------------------------------
# MNIST and IMDB on two mirrored replicas


def test_mnist_on_two_replicas_equals_one_device(data_dir):
    """No dropout or shifts: two replicas draw their masks differently from one device."""
    one, two = run_python(TWO_CPUS + f"""
from mnist_lstm import train
config = dataclasses.replace(train.Config(), dataset="fashion_mnist", max_examples=1000,
                             epochs=2, batch_size=64, dropout=0.0, max_shift=0)
results = [train.train_and_evaluate(config, strategy, "{data_dir / 'fashion-mnist'}", verbose=0)
           for strategy in (ONE, TWO)]
print(json.dumps([dict(history=[{{k: v for k, v in e.items()
                                 if k not in ("seconds", "examples_per_second")}}
                                for e in r["history"]],
                       test_accuracy=r["test_accuracy"], replicas=r["replicas"])
                  for r in results]))
""")
    assert (one["replicas"], two["replicas"]) == (1, 2)
    two["replicas"] = 1
    assert close(two, one, rel=1e-4), (one, two)


def test_imdb_on_two_replicas_equals_one_device(data_dir):
    """A smaller model than the default (its 256-word reviews and 128 units took half
    a minute here): the same layers, the same mirrored training."""
    one, two = run_python(TWO_CPUS + f"""
from imdb_sentiment import data, train
config = dataclasses.replace(train.DEFAULTS, rnn="gru", max_examples=400, epochs=2,
                             batch_size=32, dropout=0.0, word_dropout=0.0, vocab_size=2000,
                             sequence_length=64, embedding_dim=16, units=32)
reviews = data.load_data(config, "{data_dir / 'imdb'}")
results = [train.train_and_evaluate(config, strategy, reviews=reviews, verbose=0)
           for strategy in (ONE, TWO)]
print(json.dumps([dict(history=[{{k: v for k, v in e.items()
                                 if k not in ("seconds", "examples_per_second")}}
                                for e in r["history"]],
                       test_accuracy=r["test_accuracy"], test_loss=r["test_loss"])
                  for r in results]))
""")
    assert close(two, one, rel=1e-4), (one, two)


# ----------------------------------------------------------------------------
# Several workers on localhost


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_two_workers(out, module, flags, timeout=480):
    """Starts two workers of one cluster; returns their CompletedProcess-like results."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = [subprocess.Popen(
        worker_command(out, module, *flags), cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})})
        for index in range(2)]
    outputs = []
    try:
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=timeout)
            outputs.append((worker.returncode, stdout, stderr))
    finally:
        for worker in workers:
            worker.kill()
    for returncode, _, stderr in outputs:
        assert returncode == 0, stderr[-3000:]
    return outputs


@pytest.mark.parametrize("module, flags", [
    # A tiny corpus: real PTB's validation and test text, read in lockstep, took most
    # of this case's time and nothing here depends on them.
    ("ptb.ptb_word_lm", ["--data_path={tiny}", "--model=test", "--steps_per_epoch=30",
                         "--epochs=2"]),
    # Dropout off, so that one process can give the same numbers (below).
    ("mnist_lstm.train", ["--data_path={data}/fashion-mnist", "--dataset=fashion_mnist",
                          "--max_examples=600", "--epochs=2", "--dropout=0"]),
    ("imdb_sentiment.train", ["--data_path={data}/imdb", "--rnn=gru", "--max_examples=200",
                              "--epochs=2", "--dropout=0", "--word_dropout=0"]),
], ids=["ptb", "mnist", "imdb"])
def test_two_workers_train_alike_and_only_the_chief_writes(data_dir, tmp_path, module, flags):
    tiny = tmp_path / "tiny"
    if any("{tiny}" in flag for flag in flags):
        tiny.mkdir()
        write_tiny_corpus(tiny)
    flags = [flag.format(data=data_dir, tiny=tiny) for flag in flags]
    save_path = tmp_path / "run"
    outputs = run_two_workers(tmp_path, module, flags + [f"--save_path={save_path}"])
    assert "MultiWorkerMirroredStrategy with 2 replica(s)" in outputs[0][1]
    chief_paths = json.loads((tmp_path / "0.json").read_text())
    other_paths = json.loads((tmp_path / "1.json").read_text())
    # Both save as often; only the chief's saves go into the run folder.
    assert len(chief_paths) == len(other_paths) >= 1
    assert all(path.startswith(str(save_path)) for path in chief_paths)
    assert not any(path.startswith(str(save_path)) for path in other_paths)
    for index in range(len(chief_paths)):  # the same weights on both workers
        chief, other = np.load(tmp_path / f"0-{index}.npz"), np.load(tmp_path / f"1-{index}.npz")
        for name in chief.files:
            np.testing.assert_array_equal(chief[name], other[name])
    metrics = read_metrics(save_path)
    assert metrics["replicas"] == 2 and len(metrics["history"]) == 2
    # The workers together train on each global batch once, as one process does.
    alone = run_worker(tmp_path / "alone-out", module, *flags, f"--save_path={tmp_path / 'alone'}")
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert close(timing_free(metrics["history"]),
                 timing_free(read_metrics(tmp_path / "alone")["history"]), rel=1e-4)


@pytest.mark.parametrize("lost, signum, detected_by", [
    (1, signal.SIGKILL, "its connection breaks"),
    # Frozen: its connections stay open, only its heartbeats stop (TensorFlow's
    # heartbeat timeout: 10 s). Worker 0 runs the coordination service, which
    # names a frozen worker 1 the same way; a frozen worker 0 leaves the others'
    # heartbeats to it unanswered.
    (0, signal.SIGSTOP, "heartbeats to the coordination service"),
    # It ends as a run ends on SIGTERM (TensorFlow's own SIGTERM handler, which
    # only logs it, is replaced once the workers have met).
    (1, signal.SIGTERM, "its connection breaks"),
], ids=["worker-1-killed", "worker-0-frozen", "worker-1-sigterm"])
def test_a_worker_lost_mid_run_ends_the_other_in_one_line(data_dir, tmp_path, lost, signum,
                                                          detected_by):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    logs = [(open(tmp_path / f"{index}.out", "w"), open(tmp_path / f"{index}.err", "w"))
            for index in range(2)]
    workers = [subprocess.Popen(
        [sys.executable, "-m", "ptb.ptb_word_lm", f"--data_path={data_dir / 'ptb'}",
         "--model=test", "--epochs=1", "--steps_per_epoch=2000",  # progress every 200
         f"--save_path={tmp_path / 'run'}"],
        cwd=ROOT, stdout=out, stderr=err,
        env={**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})})
        for index, (out, err) in enumerate(logs)]
    other = workers[1 - lost]
    try:
        deadline = time.monotonic() + 300
        while "windows |" not in (tmp_path / f"{1 - lost}.out").read_text():  # training
            assert other.poll() is None, (tmp_path / f"{1 - lost}.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "no progress line within 300 s"
            time.sleep(0.1)
        workers[lost].send_signal(signum)
        lost_at = time.monotonic()
        other.wait(timeout=120)
        took = time.monotonic() - lost_at
        if signum == signal.SIGTERM:
            workers[lost].wait(timeout=60)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
        for files in logs:
            for file in files:
                file.close()
    stderr = (tmp_path / f"{1 - lost}.err").read_text()
    assert other.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        f"error: worker {lost} (/job:worker/task:{lost}) of TF_CONFIG stopped responding "
        "during the run; the run folder keeps the last completed epoch: start every "
        "worker again with the same command to resume")
    assert took < (30 if signum == signal.SIGSTOP else 10), f"{took:.1f} s ({detected_by})"
    if signum == signal.SIGTERM:
        stderr = (tmp_path / f"{lost}.err").read_text()
        assert workers[lost].returncode == 143, stderr[-3000:]
        assert stderr.strip().splitlines()[-1].startswith("interrupted; run the same command")


# ----------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("module, flags, expected", [
    ("ptb.ptb_word_lm", ["--model=test", "--data_path=unused"],
     "--model: the global batch of 20 does not divide among 3 replicas"),
    ("mnist_lstm.train", ["--batch_size=128", "--data_path=unused"],
     "--batch_size: the global batch of 128 does not divide among 3 replicas"),
    ("imdb_sentiment.train", ["--batch_size=64", "--data_path=unused"],
     "--batch_size: the global batch of 64 does not divide among 3 replicas"),
], ids=["ptb", "mnist", "imdb"])
def test_a_batch_the_replicas_cannot_share_is_a_one_line_error(tmp_path, module, flags, expected):
    """Three logical CPUs stand in for three GPUs."""
    result = run_worker(tmp_path, "--logical_cpus=3", module, *flags,
                        f"--save_path={tmp_path / 'run'}", timeout=180)
    assert_one_line_error(result, expected)


# ----------------------------------------------------------------------------
# Mixed precision


@pytest.mark.skipif(not GPUS, reason="mixed_float16 and its loss scaling need a GPU")
def test_mixed_precision_on_a_gpu_scales_the_loss():
    from common import training
    try:
        assert training.use_mixed_precision(True) == "mixed_float16"
    finally:
        training.use_mixed_precision(False)


def test_apply_gradients_clips_the_whole_batch_gradient_on_two_replicas():
    """Keras' own global_clipnorm would clip each replica's share; this clips the sum."""
    result = run_python(TWO_CPUS + """
import keras
from common import training
with TWO.scope():
    weight = keras.Variable([0.0, 0.0])
    optimizer = keras.optimizers.SGD(1.0, global_clipnorm=training.global_clipnorm(1.0))
    optimizer.build([weight])

@tf.function
def step():
    def replica_step():
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        # Replica 0's share [3, 0], replica 1's [0, 4]: the whole gradient [3, 4], norm 5.
        grad = tf.where(tf.equal(replica, 0), tf.constant([3.0, 0.0]), tf.constant([0.0, 4.0]))
        training.apply_gradients(optimizer, [grad], [weight])
    TWO.run(replica_step)

step()
print(json.dumps(weight.numpy().tolist()))
""")
    # One step of SGD at rate 1 on [3, 4] clipped to norm 1: [-0.6, -0.8].
    np.testing.assert_allclose(result, [-0.6, -0.8], rtol=1e-6)


@pytest.mark.skipif(bool(GPUS), reason="a GPU takes mixed_float16")
def test_mixed_precision_on_a_cpu_trains_in_bfloat16(tmp_path, monkeypatch):
    """bfloat16 products, float32 weights and logits; perplexity close to float32's;
    the test stream read in float32, as the tools read the saved model. The CPU is
    made to report bfloat16 dot products, so that this runs on any CPU."""
    from common import machine
    from common import training
    from ptb import ptb_word_lm
    from ptb import reader
    from tests.test_ptb_training import TINY, write_tiny_corpus

    monkeypatch.setattr(machine, "bfloat16_dot_products", lambda: ["AVX512_BF16"])
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    data_path = write_tiny_corpus(tmp_path)
    float32 = ptb_word_lm.train_and_evaluate(TINY, data_path, seed=1)
    try:
        assert training.use_mixed_precision(True) == "mixed_bfloat16"
        mixed = ptb_word_lm.train_and_evaluate(TINY, data_path, seed=1,
                                               save_path=tmp_path / "run")
        # The plain path (a GRU, several replicas) computes in Keras' mixed_bfloat16.
        model = ptb_word_lm.build_model(TINY, num_steps=TINY.num_steps)
        assert model.get_layer("lstm_0").compute_dtype == "bfloat16"
        assert model.get_layer("softmax").compute_dtype == "float32"
        assert all(weight.dtype == "float32" for weight in model.weights)
    finally:
        training.use_mixed_precision(False)
    assert read_metrics(tmp_path / "run")["settings"]["dtype_policy"] == "mixed_bfloat16"
    assert mixed["test_perplexity"] == pytest.approx(float32["test_perplexity"], rel=0.05)
    assert mixed["test_perplexity"] != float32["test_perplexity"]  # not float32 after all
    saved = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert {layer.compute_dtype for layer in saved.layers
            if not isinstance(layer, keras.layers.InputLayer)} == {"float32"}
    test_ids = reader.read_corpus(data_path, None).test
    assert ptb_word_lm.evaluate_stream(saved, TINY, test_ids) == (
        pytest.approx(mixed["test_perplexity"], rel=1e-6))


@pytest.mark.skipif(bool(GPUS), reason="a GPU takes mixed_float16")
def test_mixed_precision_is_refused_where_bfloat16_would_be_slower(tmp_path, monkeypatch):
    """A CPU without bfloat16 dot products, or with oneDNN turned off: one line, exit 2,
    before any data is read or folder made."""
    from common import machine
    from common import training
    from common.cli import UserInputError

    monkeypatch.setattr(machine, "bfloat16_dot_products", lambda: [])
    try:
        with pytest.raises(UserInputError, match=r"^--mixed_precision: this CPU \(.*\) has "
                                                 r"no bfloat16 dot products \(AVX512_BF16 or "
                                                 r"AMX\)"):
            training.use_mixed_precision(True)
        monkeypatch.setattr(machine, "bfloat16_dot_products", lambda: ["AVX512_BF16"])
        monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
        with pytest.raises(UserInputError, match="TF_ENABLE_ONEDNN_OPTS=0 turns off oneDNN"):
            training.use_mixed_precision(True)
        assert keras.mixed_precision.global_policy().name == "float32"
    finally:
        training.use_mixed_precision(False)
    for module in ("ptb.ptb_word_lm", "mnist_lstm.train", "imdb_sentiment.train"):
        run = tmp_path / module
        result = run_worker(tmp_path / "out", "--bfloat16_cpu=no", module, "--mixed_precision",
                            f"--save_path={run}", "--data_path=/nonexistent")
        assert_one_line_error(result, "--mixed_precision: this CPU (")
        assert not run.exists()
