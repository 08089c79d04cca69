"""Generates text word by word with a trained PTB language model.

    python -m ptb.generate --save_path runs/ptb/small --prime "the company said" --seed 1

The second use of a language model that the RNN tutorials name: each next word
is drawn from the model's distribution given every word before it (the state is
carried, as in training), and fed back in. The text starts as a sentence does,
after an <eos>, then reads --prime; `<eos>` prints as a new line.

--temperature divides the log-probabilities before sampling: below 1 the text
gets safer and more repetitive, above 1 more surprising. --top_k samples only
among the k most likely words. The same --seed gives the same text.
"""

import math
import sys

import common  # noqa: F401  (first: quiets TensorFlow's start-up logs)
from absl import flags
import numpy as np

from common import cli
from ptb import language_model


def generate(lm, prime=None, length=50, temperature=1.0, top_k=None, seed=0):
    """The `length` words sampled after `prime` (a string; None starts a fresh
    sentence), as a list of vocabulary words."""
    if not 0 < temperature < math.inf:  # nan too
        raise cli.UserInputError(f"--temperature={temperature}: must be a number above 0")
    if length < 1:
        raise cli.UserInputError(f"--length={length}: must be at least 1")
    language_model.check_top_k(top_k, len(lm.words))
    log_probs, state = lm.sentence_start()
    if prime is not None:
        ids, _ = language_model.encode_context(lm, prime, "--prime")
        log_probs, state = lm.next_log_probs(ids, state)
    rng = np.random.default_rng(seed)
    words = []
    for _ in range(length):
        word = sample(log_probs, temperature, top_k, rng)
        words.append(lm.words[word])
        log_probs, state = lm.next_log_probs([word], state)
    return words


def sample(log_probs, temperature, top_k, rng):
    """One word id drawn from softmax(log_probs / temperature), among the top_k only if given."""
    scaled = log_probs / temperature
    if top_k is not None:
        cutoff = np.partition(scaled, -top_k)[-top_k]
        scaled = np.where(scaled >= cutoff, scaled, -np.inf)
    probabilities = np.exp(scaled - scaled.max())
    return int(rng.choice(len(probabilities), p=probabilities / probabilities.sum()))


def as_text(words):
    """Words joined by spaces, one sentence per line."""
    sentences = " ".join(words).split(language_model.END_OF_SENTENCE)
    return "\n".join(sentence.strip() for sentence in sentences).strip("\n")


FLAGS = flags.FLAGS


def define_flags():
    language_model.define_save_path_flag()
    flags.DEFINE_string("prime", None, "Words to start from (default: a new sentence).")
    flags.DEFINE_integer("length", 50, "How many words to generate.")
    flags.DEFINE_float("temperature", 1.0, "Divides the log-probabilities; must be above 0.")
    flags.DEFINE_integer("top_k", None, "Sample among the k most likely words only.")
    flags.DEFINE_integer("seed", 0, "Random seed: the same seed gives the same text.")


def main(argv):
    del argv  # cli.run refuses stray arguments
    lm = language_model.load_from_flags()
    words = generate(lm, FLAGS.prime, FLAGS.length, FLAGS.temperature, FLAGS.top_k, FLAGS.seed)
    if FLAGS.prime is not None:
        prime_ids, unknown = lm.encode(FLAGS.prime)
        if unknown:
            print(f"note: read as {language_model.UNKNOWN}: {', '.join(unknown)}", file=sys.stderr)
        words = [lm.words[i] for i in prime_ids] + words  # the prime as the model read it
    print(as_text(words))


if __name__ == "__main__":
    define_flags()
    cli.run(main)
