"""Pieces shared by the three tutorials: the distribution strategy and CLI errors."""

import os

# TensorFlow's C++ start-up INFO lines (oneDNN, CUDA probing) drown the tutorial's
# own output; warnings and errors still show. Set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
