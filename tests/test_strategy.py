"""common/strategy.py: one test per branch; absent hardware is skipped, not faked.

Several devices are tested on logical CPU devices and several workers with
worker processes on localhost, each in a fresh Python (device setup is fixed
once TensorFlow starts).
"""

import json
import os
import socket
import subprocess
import sys

import pytest
import tensorflow as tf

from common import strategy as strategy_lib
from common.cli import UserInputError
from tests.conftest import ROOT

GPUS = tf.config.list_logical_devices("GPU")


def run_python(code, env=None, timeout=180):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.skipif(bool(GPUS), reason="the CPU branch needs a machine without GPUs")
def test_cpu_gives_the_default_strategy():
    strategy = strategy_lib.get_strategy()
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1


def test_more_gpus_than_exist_is_a_clear_error():
    with pytest.raises(ValueError, match=rf"--num_gpus={len(GPUS) + 1} .* \({len(GPUS)} visible\)"):
        strategy_lib.get_strategy(num_gpus=len(GPUS) + 1)


@pytest.mark.skipif(len(GPUS) != 1, reason="needs exactly one GPU")
def test_one_gpu_gives_one_device_strategy():
    strategy = strategy_lib.get_strategy()
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)


@pytest.mark.skipif(len(GPUS) < 2, reason="needs two GPUs")
def test_several_gpus_give_mirrored_strategy():
    strategy = strategy_lib.get_strategy()
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == len(GPUS)


def test_several_devices_mirror_and_reduce_on_logical_cpus():
    result = run_python("""
import common, json, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from common import strategy as strategy_lib
from common.cli import UserInputError
strategy = strategy_lib.strategy_for_devices([d.name for d in tf.config.list_logical_devices("CPU")])
ids = strategy.run(lambda: tf.distribute.get_replica_context().replica_id_in_sync_group + 1)
total = strategy.reduce("SUM", ids, axis=None)
print(json.dumps([type(strategy).__name__, strategy.num_replicas_in_sync, int(total)]))
""")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1]) == ["MirroredStrategy", 2, 3]


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_tf_config_with_two_workers_gives_multi_worker_strategy():
    cluster = {"worker": [f"localhost:{free_port()}", f"localhost:{free_port()}"]}
    code = """
import common, json, tensorflow as tf
from common import strategy as strategy_lib
from common.cli import UserInputError
strategy = strategy_lib.get_strategy()
ones = strategy.run(lambda: tf.constant(1.0))
print(json.dumps([isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy),
                  strategy.num_replicas_in_sync, float(strategy.reduce("SUM", ones, axis=None))]))
"""
    workers = [subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})})
        for index in range(2)]
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err[-2000:]
        assert json.loads(out.splitlines()[-1]) == [True, 2, 2.0]


@pytest.mark.parametrize("tf_config", [
    "{not json",
    '{"task": {"type": "worker", "index": 0}}',  # no cluster
    '{"cluster": {"worker": ["localhost:1", "localhost:2"]}}',  # no task for this process
    '{"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 2}}',
])
def test_malformed_tf_config_is_a_clear_error(monkeypatch, tf_config):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(UserInputError, match=r"TF_CONFIG=.*: not valid JSON with a 'cluster' "
                                              r"and this process's 'task'"):
        strategy_lib.get_strategy()


@pytest.mark.skipif(not os.environ.get("TPU_NAME"), reason="needs a TPU (set TPU_NAME)")
def test_tpu_address_gives_tpu_strategy():
    strategy = strategy_lib.get_strategy(tpu_address=os.environ["TPU_NAME"])
    assert isinstance(strategy, tf.distribute.TPUStrategy)
