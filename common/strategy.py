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

import contextlib
import faulthandler
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import tensorflow as tf

from common.cli import RunFailure
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


def _join_workers(timeout):
    """MultiWorkerMirroredStrategy once every task of TF_CONFIG has joined, or one line
    naming the tasks that cannot be reached after `timeout` seconds, exit status 1.

    TensorFlow waits for the other tasks inside C++ holding Python's lock (no other
    Python thread runs meanwhile), without running Python's signal handlers, with
    no timeout of its own that ends the wait on task 0 (its coordination service's
    register timeout did not, with TensorFlow 2.21), and with its own SIGTERM
    handler installed (its preemption notifier, which only logs "SIGTERM caught").
    So the tasks first meet in Python (`_meet`): each listens on its own port and
    waits until every other task's port takes a connection. That wait is where a
    worker whose peers have not started spends its time, and Ctrl-C, SIGTERM and
    the timeout end it as they end a run: one line, exit status 130, 143 or 1.

    TensorFlow's own wait then only follows once every task is up, and lasts
    seconds. For the rare case where it lasts (a port held by another program,
    two tasks given different clusters), `_join_in_tensorflow` keeps a watchdog
    outside Python's lock. A task that dies later is detected by the coordination
    service's heartbeats: the next collective operation fails, naming it (cli.run).
    """
    tf_config = json.loads(os.environ["TF_CONFIG"])
    task = tf_config["task"]
    own_address = tf_config["cluster"][task["type"]][int(task["index"])]
    peers = [(job, index, address) for job in ("chief", "worker")
             for index, address in enumerate(tf_config["cluster"].get(job, []))
             if (job, index) != (task["type"], int(task["index"]))]
    print(f"Waiting up to {timeout:.0f} s (--worker_timeout) for {_names(peers)}", flush=True)
    started = time.monotonic()
    _meet(own_address, peers, timeout)
    # What is left of --worker_timeout, for TensorFlow's own wait.
    return _join_in_tensorflow(peers, timeout, max(timeout - (time.monotonic() - started), 1))


def _meet(own_address, peers, timeout):
    """Returns once every peer's address has taken a connection, while this task
    listens on its own port so that the peers see it too; a RunFailure naming the
    peers not reached after `timeout` seconds.

    A task leaves as soon as it has reached every other, and TensorFlow takes its
    port over moments later; a peer that probes in between retries. Interrupted,
    it says so (cli.run prints it; exit status 130, or 143 for SIGTERM)."""
    listener = _listen(own_address)
    deadline = time.monotonic() + timeout
    try:
        while peers:
            peers = [peer for peer in peers if not _reachable(peer[2])]
            if peers and time.monotonic() >= deadline:
                raise RunFailure(
                    f"TF_CONFIG: the workers did not all join within {timeout:.0f} s "
                    f"(--worker_timeout); not reachable: {_names(peers)}; start every "
                    "worker with the same command and its own task index")
            if peers:
                time.sleep(0.2)
    except KeyboardInterrupt as interruption:  # Ctrl-C, or cli's SIGTERM
        raise type(interruption)(
            "interrupted while waiting for the other workers of TF_CONFIG; nothing was "
            "trained: start every worker again with the same command") from None
    finally:
        listener.close()


def _listen(address):
    """A socket listening on the port of `address` (a UserInputError if it is taken)."""
    port = int(address.rpartition(":")[2])
    # On every interface, as TensorFlow's server listens: IPv6 and IPv4 where it can.
    ways = [dict(family=socket.AF_INET6, dualstack_ipv6=True)] * socket.has_dualstack_ipv6()
    for way in ways + [{}]:
        try:
            return socket.create_server(("", port), backlog=64, **way)
        except OSError as error:
            failure = error
    raise UserInputError(
        f"TF_CONFIG: this task's address {address}: cannot listen on port {port} "
        f"({os.strerror(failure.errno)}); end what holds it (a worker still running?) "
        "or give this task another port")


def _reachable(address):
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
        return True
    except OSError:
        return False


def _names(tasks):
    return ", ".join(f"{job} {index} ({address})" for job, index, address in tasks)


def _join_in_tensorflow(peers, timeout, seconds_left):
    """MultiWorkerMirroredStrategy(), with a watchdog for TensorFlow's wait.

    During the wait:
    - faulthandler's watchdog, a thread outside Python's lock, ends the process
      with status 1 after `seconds_left` seconds, writing into a pipe;
    - Ctrl-C (SIGINT) has its default action back: the kernel ends the process
      at once, as killed by SIGINT (a shell's $? is 130). SIGTERM is taken by
      TensorFlow's handler meanwhile; cli's is put back once the wait is over.
    - a small watcher process, in a session of its own so that the terminal's
      Ctrl-C does not reach it, reads the pipe's other end and prints the one line
      for either ending (the watchdog's dump, or end of file with no word from
      the worker). Once the workers have met, the worker tells it to stand down,
      and it ends, saying nothing.
    """
    read_end, write_end = os.pipe()
    watcher = subprocess.Popen(
        [sys.executable, "-c", _WATCHER, f"{timeout:.0f}", json.dumps(peers)],
        stdin=read_end, start_new_session=True)
    handlers = {}
    try:
        os.close(read_end)
        handlers = _default_signal_actions((signal.SIGINT, signal.SIGTERM))
        faulthandler.dump_traceback_later(seconds_left, exit=True, file=write_end)
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    finally:
        faulthandler.cancel_dump_traceback_later()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)  # over TensorFlow's SIGTERM handler too
        with contextlib.suppress(OSError):  # (a watcher killed by someone else)
            os.write(write_end, _STAND_DOWN)  # also when TensorFlow raised: its error tells
        os.close(write_end)
        watcher.wait()
    return strategy


def _default_signal_actions(signums):
    """Gives each signal of `signums` its default action (ending the process), unless
    it is ignored or this is not the main thread; returns the handlers it replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    replaced = {}
    for signum in signums:
        handler = signal.getsignal(signum)
        if handler not in (signal.SIG_IGN, None):
            replaced[signum] = signal.signal(signum, signal.SIG_DFL)
    return replaced


# What the worker writes to the watcher once the workers have met (or TensorFlow
# raised): no faulthandler dump begins so.
_STAND_DOWN = b"\0joined"

# Run by _join_in_tensorflow: reads the pipe to its end, then prints the one line if the
# worker gave up (its watchdog's dump) or was ended by a signal (nothing written).
_WATCHER = """
import json, signal, socket, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker's signals are not for it
timeout, peers = sys.argv[1], json.loads(sys.argv[2])

def unreachable():
    missing = []
    for job, index, address in peers:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
        except OSError:
            missing.append(f"{job} {index} ({address})")
    return ", ".join(missing) or "none: they started, but did not all join"

said = sys.stdin.buffer.read()
if not said:  # the worker ended without a word: Ctrl-C or a signal
    print("\\ninterrupted while waiting for the other workers of TF_CONFIG; nothing was "
          "trained: start every worker again with the same command", file=sys.stderr)
elif not said.startswith(STAND_DOWN):  # the watchdog's dump: the worker gave up
    print(f"error: TF_CONFIG: the workers did not all join within {timeout} s "
          f"(--worker_timeout); not reachable: {unreachable()}; start every worker "
          "with the same command and its own task index", file=sys.stderr)
""".replace("STAND_DOWN", repr(_STAND_DOWN))


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
