"""The machine a run was measured on, as recorded in metrics.json and printed by benchmarks."""

import os
import platform

import tensorflow as tf


def describe_cpu():
    """The CPU model and its widest vector extension, e.g. 'AMD EPYC (AVX2, no AVX-512)'."""
    model, cpu_flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    cpu_flags = set(value.split())
                if model and cpu_flags:
                    break
    except OSError:  # not Linux: the model name from platform is all there is
        return model
    if "avx512f" in cpu_flags:
        extensions = "AVX-512"
    elif "avx2" in cpu_flags:
        extensions = "AVX2, no AVX-512"
    else:
        extensions = "no AVX2"
    return f"{model} ({extensions})"


def describe_machine():
    gpus = tf.config.list_logical_devices("GPU")
    return f"{describe_cpu()}, {os.cpu_count()} cores" + (f", {len(gpus)} GPU(s)" if gpus else "")
