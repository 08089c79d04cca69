"""Which word comes next? The most likely next words after a text.

    python -m ptb.next_word --save_path runs/ptb/small --top_k 5 "you say"

Prints the top-k words, most likely first, one per line as
`word<TAB>probability`. The text is read as the start of a sentence (after an
<eos>); "Deep Learning from Scratch 2" asks this after "you say" and gets
"goodbye" and "hello".
"""

import common  # noqa: F401  (first: quiets TensorFlow's start-up logs)
from absl import flags
import numpy as np

from common import cli
from ptb import language_model


def next_words(lm, text, top_k=10):
    """[(word, probability)] of the `top_k` most likely words after `text`, most likely first."""
    language_model.check_top_k(top_k, len(lm.words))
    ids, _ = language_model.encode_context(lm, text, "text")
    _, state = lm.sentence_start()
    log_probs, _ = lm.next_log_probs(ids, state)
    best = np.argsort(-log_probs, kind="stable")[:top_k]
    return [(lm.words[word], float(np.exp(log_probs[word]))) for word in best]


FLAGS = flags.FLAGS


def define_flags():
    language_model.define_save_path_flag()
    flags.DEFINE_integer("top_k", 10, "How many words to list.")


def main(argv):
    if len(argv) != 2:
        raise cli.UserInputError('give the text as one argument, e.g. "you say" (quoted)')
    lm = language_model.load_from_flags()
    for word, probability in next_words(lm, argv[1], FLAGS.top_k):
        print(f"{word}\t{probability:.6f}")


if __name__ == "__main__":
    define_flags()
    cli.run(main, takes_arguments=True)
