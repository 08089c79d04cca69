"""How likely is each sentence? Scores text with a trained PTB language model.

    python -m ptb.score --save_path runs/ptb/small ptb.test.txt
    echo "the company said it expects higher profits ." | python -m ptb.score --save_path ...

Scoring is the use of a language model the RNN tutorials name first: the part
of a speech or translation system that prefers fluent output. Each line of the
input is a sentence; the output is a table, one row per line:

    log_prob   the sentence's log-probability in nats (its words and its <eos>)
    perplexity exp(-log_prob / words): per word, as the trainer reports it
    words      how many words were predicted (the <eos> counts)
    least_expected  the word the model found least likely, with its probability

then how many words were outside the vocabulary (read as <unk>), and last
`perplexity P over N words`.

By default the input is one stream, the state carried across lines, exactly as
the trainer evaluates the test set: scoring ptb.test.txt prints the trainer's
own test perplexity, and the very first word is not scored (nothing precedes
it). (Exactly so for text in PTB's form: every line ends in a newline, every
word is in the vocabulary. The trainer's reader drops unknown words, where the
scorer reads them as <unk>.) --reset_each_sentence scores each line on its own, from the state after
an <eos>, so every word of it is scored and the order of lines does not matter.
"""

import dataclasses
import math
import pathlib
import sys

import common  # noqa: F401  (first: quiets TensorFlow's start-up logs)
from absl import flags
import numpy as np

from common import cli
from ptb import engine
from ptb import language_model
from ptb import ptb_word_lm


@dataclasses.dataclass(frozen=True)
class SentenceScore:
    text: str
    log_prob: float  # nats, summed over the scored words
    words: int  # words scored, its <eos> included
    least_expected: str  # the scored word of lowest probability ("" when none was scored)
    least_probability: float

    @property
    def perplexity(self):
        return math.exp(-self.log_prob / self.words) if self.words else float("nan")


def score_sentences(lm, sentences, reset_each_sentence=False):
    """(one SentenceScore per sentence, the words read as <unk>).

    sentences: strings, one sentence each (an <eos> is added to each). See the
    module docstring for the two modes.
    """
    eos = lm.word_to_id[language_model.END_OF_SENTENCE]
    encoded, unknown = [], []
    for sentence in sentences:
        ids, sentence_unknown = lm.encode(sentence)
        encoded.append(np.append(ids, eos).astype(np.int32))
        unknown += sentence_unknown
    if reset_each_sentence:
        # Each from a fresh state after <eos>: that <eos> is read, not scored.
        # Without XLA: it would compile again for every new sentence length.
        log_probs = [engine.stream_log_probs(lm.model, lm.config, np.append(eos, ids),
                                             compiled=False) for ids in encoded]
    else:
        # One stream; the first word has no log-probability, the others belong to
        # the sentence they end in.
        stream = engine.stream_log_probs(lm.model, lm.config, np.concatenate(encoded))
        ends = np.cumsum([len(ids) for ids in encoded]) - 1
        log_probs = np.split(stream, ends[:-1])
    scores = []
    for sentence, ids, sentence_log_probs in zip(sentences, encoded, log_probs):
        scored_ids = ids[len(ids) - len(sentence_log_probs):]
        least = int(np.argmin(sentence_log_probs)) if len(sentence_log_probs) else None
        scores.append(SentenceScore(
            text=sentence, log_prob=float(np.sum(sentence_log_probs)),
            words=len(sentence_log_probs),
            least_expected="" if least is None else lm.words[scored_ids[least]],
            least_probability=float("nan") if least is None else
            math.exp(sentence_log_probs[least])))
    return scores, unknown


def total_perplexity(scores):
    """(perplexity, words) over all the scored words: exp of the mean negative log-probability."""
    words = sum(score.words for score in scores)
    return ptb_word_lm.perplexity(-sum(score.log_prob for score in scores) / words), words


# ----------------------------------------------------------------------------
# Command line

FLAGS = flags.FLAGS


def define_flags():
    language_model.define_save_path_flag()
    flags.DEFINE_boolean("reset_each_sentence", False, "Score each line on its own from the "
                         "state after <eos>, instead of one stream as the trainer evaluates.")


def read_sentences(argv):
    """The lines of the file named in argv (stdin when none or '-')."""
    if len(argv) > 2:
        raise cli.UserInputError(f"one file to score, not {len(argv) - 1} "
                                 f"({' '.join(argv[1:])}); use - for stdin")
    name = argv[1] if len(argv) == 2 else "-"
    source = "stdin" if name == "-" else name
    try:
        data = sys.stdin.buffer.read() if name == "-" else pathlib.Path(name).read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise cli.UserInputError(f"{source}: cannot read it ({reason}); give a UTF-8 text "
                                 "file with one sentence per line, or - for stdin")
    if not text.split():
        raise cli.UserInputError(f"{source}: no words to score; give one sentence per line")
    return text.splitlines()


def main(argv):
    lm = language_model.load_from_flags()
    sentences = read_sentences(argv)
    scores, unknown = score_sentences(lm, sentences, FLAGS.reset_each_sentence)
    print("log_prob\tperplexity\twords\tleast_expected\tsentence")
    for score in scores:
        least = f"{score.least_expected} (p={score.least_probability:.2g})" if score.words else "-"
        print(f"{score.log_prob:.2f}\t{score.perplexity:.2f}\t{score.words}\t{least}\t"
              f"{score.text}")
    perplexity, words = total_perplexity(scores)
    examples = f": {', '.join(sorted(set(unknown))[:10])}" if unknown else ""
    print(f"{len(unknown):,} of the words were outside the vocabulary and read as "
          f"{language_model.UNKNOWN}{examples}{' ...' if len(set(unknown)) > 10 else ''}")
    if len(unknown) == sum(len(sentence.split()) for sentence in sentences):
        # Only <unk> and <eos> were scored: a number here would say nothing of the text.
        print("no perplexity: every word was outside the vocabulary (in PTB, words are lower "
              "case and numbers are N)")
        return
    print(f"perplexity {perplexity:.2f} over {words:,} words")


if __name__ == "__main__":
    define_flags()
    cli.run(main, takes_arguments=True)
