"""What the three tutorials share: the strategy, the training loop, the run folder, the CLI.

Importing `common` first sets two TensorFlow options that must be set before
TensorFlow itself is imported."""

import os

# TensorFlow's C++ start-up INFO lines (oneDNN, CUDA probing) drown the tutorial's
# own output; warnings and errors still show. Set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

# TensorFlow's default CPU allocator returns large buffers to the system when a
# step frees them, and the next step takes the page faults again: thousands per
# PTB training window. TensorFlow's BFC allocator keeps and reuses its buffers
# (docs/performance.md).
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
