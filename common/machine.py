"""The machine a run was measured on, as recorded in metrics.json and printed by benchmarks."""

import os
import platform

import tensorflow as tf


def _cpu_model_and_flags():
    """(model name, set of /proc/cpuinfo flags); no flags where that file is missing."""
    model, cpu_flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    cpu_flags = set(value.split())
                    break
    except OSError:  # not Linux: the model name from platform is all there is
        pass
    return model, cpu_flags


def bfloat16_dot_products():
    """The CPU's bfloat16 dot-product instructions, e.g. ["AVX512_BF16", "AMX"]:
    what makes bfloat16 matrix products faster than float32 ones. Empty on CPUs
    without them (AVX2 only, AVX-512 before Cooper Lake and Zen 4), where
    bfloat16 is converted to float32 and back, slower than float32 alone. Read
    from x86 Linux's /proc/cpuinfo; empty on other systems."""
    _, cpu_flags = _cpu_model_and_flags()
    names = {"avx512_bf16": "AVX512_BF16", "amx_bf16": "AMX"}
    return [name for flag, name in names.items() if flag in cpu_flags]


def describe_cpu():
    """The CPU model and its widest vector extension, e.g. 'AMD EPYC (AVX2, no
    AVX-512)' or 'AMD EPYC (AVX-512, AVX512_BF16)'."""
    model, cpu_flags = _cpu_model_and_flags()
    if not cpu_flags:
        return model
    if "avx512f" in cpu_flags:
        extensions = "AVX-512"
    elif "avx2" in cpu_flags:
        extensions = "AVX2, no AVX-512"
    else:
        extensions = "no AVX2"
    return f"{model} ({', '.join([extensions, *bfloat16_dot_products()])})"


def describe_machine():
    gpus = tf.config.list_logical_devices("GPU")
    return f"{describe_cpu()}, {os.cpu_count()} cores" + (f", {len(gpus)} GPU(s)" if gpus else "")
