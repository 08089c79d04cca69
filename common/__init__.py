"""What the three tutorials share: the strategy, the training loop, the run folder, the CLI.

Importing `common` first sets two TensorFlow options that must be set before
TensorFlow itself is imported, then imports TensorFlow without its start-up
lines."""

import os
import subprocess
import sys

# TensorFlow's C++ INFO lines; warnings and errors still show. Set before TensorFlow
# is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

# TensorFlow's default CPU allocator returns large buffers to the system when a
# step frees them, and the next step takes the page faults again: thousands per
# PTB training window. TensorFlow's BFC allocator keeps and reuses its buffers
# (docs/performance.md).
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

# What TensorFlow 2.21 prints on every start, whatever TF_CPP_MIN_LOG_LEVEL says
# (its logging starts before it reads that): each line says nothing about the run,
# and six of them stood above every one-line error. (CUDA error 303: no driver.)
START_UP_NOISE = (r"All log messages before absl::InitializeLog|oneDNN custom operations are on"
                  r"|Could not find cuda drivers|failed call to cuInit: .*\(303\)")

# Copies its stdin to its stderr, less the lines that match argv[1].
_FILTER = """
import re, sys
noise = re.compile(sys.argv[1])
for line in sys.stdin.buffer:
    if not noise.search(line.decode(errors="replace")):
        sys.stderr.buffer.write(line)
        sys.stderr.buffer.flush()
"""


def _import_tensorflow_quietly():
    """Imports TensorFlow and lists the physical devices (which prints more of the
    same) with stderr passing through a filter that drops the lines above. The
    filter is a process of its own, so that if TensorFlow aborts the process
    while it loads, its last words still reach the terminal."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    quiet = subprocess.Popen([sys.executable, "-c", _FILTER, START_UP_NOISE],
                             stdin=subprocess.PIPE)
    saved_stderr = os.dup(2)
    os.dup2(quiet.stdin.fileno(), 2)
    try:
        import tensorflow
        tensorflow.config.list_physical_devices()
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        quiet.stdin.close()
        quiet.wait()


_import_tensorflow_quietly()
