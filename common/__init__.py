"""Pieces shared by the three tutorials: the distribution strategy and CLI errors."""

import os

# TensorFlow's C++ start-up INFO lines (oneDNN, CUDA probing) drown the tutorial's
# own output; warnings and errors still show. Set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

# TensorFlow's default CPU allocator returns large buffers to the system when a
# step frees them, and the next step takes the page faults again. The PTB `small`
# training step (AMD EPYC Zen 3, 2026-11-23) took 15,272 page faults and 54 ms of
# system CPU time per window that way; with TensorFlow's BFC allocator, which keeps
# and reuses its buffers, none and 1 ms (docs/RESULTS.md). Also before the import.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
