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

import faulthandler
import json
import os
import subprocess
import sys

import tensorflow as tf

from common.cli import UserInputError


# A worker that waits for the others longer than this gives up (--worker_timeout).
WORKER_TIMEOUT = 600


def get_strategy(num_gpus=None, tpu_address=None, worker_timeout=WORKER_TIMEOUT):
    """Returns the distribution strategy for this machine (see module docstring).

    Args:
      num_gpus: how many of the visible GPUs to use; None uses all of them, 0
        forces the CPU. Asking for more than exist is a UserInputError (a
        ValueError), as is a malformed TF_CONFIG.
      tpu_address: a TPU name or grpc address; "local" for a TPU VM.
      worker_timeout: seconds a worker waits for the others to join (TF_CONFIG).
    """
    if tpu_address:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return _log_choice(tf.distribute.TPUStrategy(resolver), "TPUStrategy")

    if _num_tasks_in_tf_config() > 1:
        return _log_choice(_join_workers(worker_timeout), "MultiWorkerMirroredStrategy")

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


def _join_workers(timeout):
    """MultiWorkerMirroredStrategy once every task of TF_CONFIG has joined, or one line
    naming the tasks that cannot be reached after `timeout` seconds, exit status 1.

    TensorFlow waits for the other tasks inside C++ holding Python's lock, with no
    timeout of its own that ends the wait (its coordination service's register
    timeout did not, with TensorFlow 2.21) and without running Python's signal
    handlers, so neither a timer nor Ctrl-C in this process can end it. Two
    helpers outside Python's lock do: faulthandler's watchdog thread ends the
    process with status 1 after `timeout` seconds, writing into a pipe, and a
    small watcher process on the pipe's other end then prints the one line (it
    also ends the wait on Ctrl-C, which reaches it too). Once the workers have
    met, both stand down. A task that dies later is detected by the coordination
    service's heartbeats: the next collective operation fails, naming it (cli.run).
    """
    tf_config = json.loads(os.environ["TF_CONFIG"])
    task = tf_config["task"]
    peers = [(job, index, address) for job in ("chief", "worker")
             for index, address in enumerate(tf_config["cluster"].get(job, []))
             if (job, index) != (task["type"], int(task["index"]))]
    print(f"Waiting up to {timeout:.0f} s (--worker_timeout) for "
          + ", ".join(f"{job} {index} ({address})" for job, index, address in peers), flush=True)
    read_end, write_end = os.pipe()
    watcher = subprocess.Popen(
        [sys.executable, "-c", _WATCHER, str(os.getpid()), f"{timeout:.0f}", json.dumps(peers)],
        stdin=read_end)
    os.close(read_end)
    dump = os.fdopen(write_end, "w")
    faulthandler.dump_traceback_later(timeout, exit=True, file=dump)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    finally:
        faulthandler.cancel_dump_traceback_later()
        dump.close()  # the watcher reads end of file and stands down
        watcher.wait()
    return strategy


# Run by _join_workers: prints the one line when the worker gives up (its watchdog's
# dump arrives on stdin), or ends it on Ctrl-C; stands down at end of file.
_WATCHER = """
import json, os, signal, socket, sys
pid, timeout, peers = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])

def unreachable():
    missing = []
    for job, index, address in peers:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
        except OSError:
            missing.append(f"{job} {index} ({address})")
    return ", ".join(missing) or "none: they started, but did not all join"

def interrupted(signum, frame):
    print("\\ninterrupted while waiting for the other workers", file=sys.stderr, flush=True)
    os.kill(pid, signal.SIGKILL)
    sys.exit(130)

signal.signal(signal.SIGINT, interrupted)
if sys.stdin.buffer.read(1):  # the watchdog's dump: the worker gave up
    print(f"error: TF_CONFIG: the workers did not all join within {timeout} s "
          f"(--worker_timeout); not reachable: {unreachable()}; start every worker "
          "with the same command and its own task index", file=sys.stderr, flush=True)
"""


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
