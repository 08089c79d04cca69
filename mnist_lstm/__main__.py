"""`python -m mnist_lstm` says which command to run; the trainer is its own module."""
import sys

print("error: run python -m mnist_lstm.train (see its --help)", file=sys.stderr)
sys.exit(2)  # a usage error, as every entry point ends one
