"""What the three tutorials share: the strategy, the training loop, the run folder, the CLI.

Importing `common` first sets two TensorFlow options that must be set before
TensorFlow itself is imported, then imports TensorFlow without its start-up
lines."""

import os
import re
import sys
import tempfile

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
# and six of them stood above every one-line error.
START_UP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on"
    r"|Could not find cuda drivers|failed call to cuInit")


def _import_tensorflow_quietly():
    """Imports TensorFlow and lists the physical devices (which prints more of the same) with
    the start-up lines above dropped from stderr, and every other line kept."""
    if "tensorflow" in sys.modules:
        return
    saved_stderr = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
            tensorflow.config.list_physical_devices()
        finally:
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not START_UP_NOISE.search(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


_import_tensorflow_quietly()
