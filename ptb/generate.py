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

import itertools
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
    return list(generate_words(lm, prime, length, temperature, top_k, seed))


def generate_words(lm, prime=None, length=50, temperature=1.0, top_k=None, seed=0):
    """`generate`, one word at a time as each is drawn (the arguments checked now)."""
    if not 0 < temperature < math.inf:  # nan too
        raise cli.UserInputError(f"--temperature={temperature}: must be a number above 0")
    if length < 1:
        raise cli.UserInputError(f"--length={length}: must be at least 1")
    language_model.check_top_k(top_k, len(lm.words))
    log_probs, state = lm.sentence_start()
    if prime is not None:
        ids, _ = language_model.encode_context(lm, prime, "--prime")
        log_probs, state = lm.next_log_probs(ids, state)

    def words(log_probs, state):
        rng = np.random.default_rng(seed)
        for _ in range(length):
            word = sample(log_probs, temperature, top_k, rng)
            yield lm.words[word]
            log_probs, state = lm.next_log_probs([word], state)
    return words(log_probs, state)


def sample(log_probs, temperature, top_k, rng):
    """One word id drawn from softmax(log_probs / temperature), among the top_k only if given."""
    # The best word first brought to 0: a tiny temperature then sends the others to
    # -inf, never the best one to inf (and inf - inf to nan).
    with np.errstate(over="ignore"):  # -inf for the others is the intended answer
        scaled = (log_probs - log_probs.max()) / temperature
    if top_k is not None:
        cutoff = np.partition(scaled, -top_k)[-top_k]
        scaled = np.where(scaled >= cutoff, scaled, -np.inf)
    probabilities = np.exp(scaled)
    return int(rng.choice(len(probabilities), p=probabilities / probabilities.sum()))


def print_as_made(words, out=sys.stdout):
    """Prints `words` as they come, laid out as `as_text` lays them out."""
    printed, line_started, new_lines = False, False, 0
    for word in words:
        if word == language_model.END_OF_SENTENCE:
            new_lines += printed
            line_started = False
            continue
        out.write("\n" * new_lines if new_lines else " " if line_started else "")
        out.write(word)
        out.flush()
        printed, line_started, new_lines = True, True, 0
    out.write("\n")


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
    words = generate_words(lm, FLAGS.prime, FLAGS.length, FLAGS.temperature, FLAGS.top_k,
                           FLAGS.seed)
    prime_words = []
    if FLAGS.prime is not None:
        prime_ids, unknown = lm.encode(FLAGS.prime)
        if unknown:
            print(f"note: read as {language_model.UNKNOWN}: {', '.join(unknown)}", file=sys.stderr)
        prime_words = [lm.words[i] for i in prime_ids]  # the prime as the model read it
    print_as_made(itertools.chain(prime_words, words))


if __name__ == "__main__":
    define_flags()
    cli.run(main)
