"""`python -m imdb_sentiment` says which commands there are; each is a module of its own."""
import sys

print("error: run python -m imdb_sentiment.train (one model), imdb_sentiment.compare (the "
      "three) or imdb_sentiment.predict (see each --help)", file=sys.stderr)
sys.exit(2)  # a usage error, as every entry point ends one
