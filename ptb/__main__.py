"""`python -m ptb` says which commands there are; each is a module of its own."""
import sys

print("error: run python -m ptb.ptb_word_lm to train (see its --help); a trained run's "
      "tools: ptb.score, ptb.generate, ptb.next_word, ptb.export", file=sys.stderr)
sys.exit(2)  # a usage error, as every entry point ends one
