"""Runs one tutorial's entry point as one process of a multi-device or multi-worker test.

    python -m tests.worker_run OUT_FOLDER [--logical_cpus=2] [--bfloat16_cpu=yes|no] \
        MODULE [FLAGS...]

Before TensorFlow starts it can split the CPU into logical devices, which the
strategy helper then mirrors as it would as many GPUs. --bfloat16_cpu makes the
CPU report bfloat16 dot products or none, so that --mixed_precision on a CPU is
tried on any CPU (bfloat16 products are right everywhere, and fast only where
the CPU has them). It runs
MODULE's `main` with FLAGS as the command line would, and records, for the
test to compare, every model the run saves through common.files.save_model: in
OUT_FOLDER/<task>.json the paths saved to, and OUT_FOLDER/<task>-<n>.npz the
weights (task: this process's TF_CONFIG task index, or "local").
"""

import importlib
import json
import os
import pathlib
import sys


def main():
    out, args = pathlib.Path(sys.argv[1]), sys.argv[2:]
    out.mkdir(parents=True, exist_ok=True)
    logical_cpus = 1
    if args[0].startswith("--logical_cpus="):
        logical_cpus = int(args.pop(0).split("=")[1])
    bfloat16_cpu = None
    if args[0].startswith("--bfloat16_cpu="):
        bfloat16_cpu = args.pop(0).split("=")[1] == "yes"
        os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)  # read when TensorFlow starts

    import common  # noqa: F401  (quiets TensorFlow's start-up logs)
    import numpy as np
    import tensorflow as tf

    if logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)

    from common import cli
    from common import files
    from common import machine
    from common import strategy as strategy_lib

    if logical_cpus > 1:
        cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
        strategy_lib.get_strategy = lambda num_gpus=None, worker_timeout=None: (
            strategy_lib.strategy_for_devices(cpus))

    if bfloat16_cpu is not None:
        machine.bfloat16_dot_products = lambda: ["AVX512_BF16"] if bfloat16_cpu else []

    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", "local")
    saved_paths, save_model = [], files.save_model

    def recording_save_model(model, path):
        save_model(model, path)
        np.savez(out / f"{task}-{len(saved_paths)}.npz", *model.get_weights())
        saved_paths.append(str(pathlib.Path(path).resolve()))
        (out / f"{task}.json").write_text(json.dumps(saved_paths))

    files.save_model = recording_save_model
    module_name, *flags = args
    module = importlib.import_module(module_name)
    module.define_flags()
    sys.argv = [module_name, *flags]
    cli.run(module.main)


if __name__ == "__main__":
    main()
