"""The one place where a trainer decides how to use the machine's accelerators.

    strategy = get_strategy()
    with strategy.scope():
        model = build_model(config)     # everything that creates variables

`get_strategy` always returns a `tf.distribute.Strategy`, chosen in this order:

    tpu_address given                       -> TPUStrategy
    TF_CONFIG names several tasks           -> MultiWorkerMirroredStrategy
    several GPUs (or devices) to use        -> MirroredStrategy
    one GPU                                 -> OneDeviceStrategy("/gpu:0")
    otherwise (CPU)                         -> the default strategy

and prints what it chose with the number of replicas. Batch sizes given to a
strategy are global: each replica gets batch_size / num_replicas_in_sync.
"""

import json
import os

import tensorflow as tf

from common.cli import UserInputError


def get_strategy(num_gpus=None, tpu_address=None):
    """Returns the distribution strategy for this machine (see module docstring).

    Args:
      num_gpus: how many of the visible GPUs to use; None uses all of them, 0
        forces the CPU. Asking for more than exist is a UserInputError (a
        ValueError), as is a malformed TF_CONFIG.
      tpu_address: a TPU name or grpc address; "local" for a TPU VM.
    """
    if tpu_address:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return _log_choice(tf.distribute.TPUStrategy(resolver), "TPUStrategy")

    if _num_tasks_in_tf_config() > 1:
        return _log_choice(tf.distribute.MultiWorkerMirroredStrategy(),
                           "MultiWorkerMirroredStrategy")

    gpus = tf.config.list_logical_devices("GPU")
    if num_gpus is None:
        num_gpus = len(gpus)
    if num_gpus < 0:
        raise UserInputError(f"--num_gpus={num_gpus}: must be 0 (the CPU) or more")
    if num_gpus > len(gpus):
        raise UserInputError(
            f"--num_gpus={num_gpus} asks for more GPUs than this machine has "
            f"({len(gpus)} visible); use --num_gpus={len(gpus)} or leave it unset."
        )
    return strategy_for_devices([gpu.name for gpu in gpus[:num_gpus]])


def strategy_for_devices(device_names):
    """The strategy for a list of local device names (GPUs, or CPUs in tests)."""
    if len(device_names) > 1:
        return _log_choice(tf.distribute.MirroredStrategy(device_names), "MirroredStrategy")
    if len(device_names) == 1:
        return _log_choice(tf.distribute.OneDeviceStrategy(device_names[0]),
                           f"OneDeviceStrategy({device_names[0]})")
    return _log_choice(tf.distribute.get_strategy(), "the default strategy (CPU)")


def is_one_cpu_replica(strategy):
    """True when `strategy` runs one replica and no GPU is visible: then XLA may
    compile a whole training step, fusing an RNN's many small per-step operations.

    Not on GPUs, where Keras' LSTM and GRU run cuDNN kernels that XLA cannot
    compile, and not with several replicas: there the step reads variables
    mirrored on other devices, which a compiled step cannot reach.
    """
    return strategy.num_replicas_in_sync == 1 and not tf.config.list_logical_devices("GPU")


def _num_tasks_in_tf_config():
    """Number of chief + worker tasks that TF_CONFIG describes (0 if unset)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        tf_config = json.loads(raw)
        cluster = tf_config["cluster"]
        num_tasks = sum(len(cluster.get(job, [])) for job in ("chief", "worker"))
        task = tf_config.get("task", {})
        if num_tasks > 1 and not (task.get("type") in cluster and
                                  0 <= int(task.get("index", -1)) < len(cluster[task["type"]])):
            raise ValueError("task")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserInputError(
            f"TF_CONFIG={raw[:60]!r}: not valid JSON with a 'cluster' and this process's "
            "'task' (type and index); fix it, or unset it to train on this machine alone."
        )
    return num_tasks


def _log_choice(strategy, name):
    # Printed, not logged at INFO: absl's INFO level would also let through a line
    # from TensorFlow for every checkpoint written.
    print(f"Distribution strategy: {name} with {strategy.num_replicas_in_sync} "
          "replica(s) in sync.", flush=True)
    return strategy
