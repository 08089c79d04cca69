"""A trained language model as a tool: what `score`, `generate`, `next_word` and
`export` share.

    lm = language_model.load("runs/ptb/small")   # a run folder of ptb_word_lm
    ids, unknown = lm.encode("you say")
    log_probs, state = lm.next_log_probs(ids)    # over the vocabulary, for the next word

Text is read as the corpus files are: split on white space, a line ends in
`<eos>`; a word that is not in the vocabulary is tried in lower case (PTB is
lower case, but for its number token N), and if still not found becomes
`<unk>`, and `encode` says which did. A new sentence starts from the zero state with an `<eos>`
read: close to, not the same as, the state after a sentence in the training
stream, which carries everything before it.
"""

import dataclasses
import json
import pathlib

from absl import flags
import keras
import numpy as np
import tensorflow as tf

from common import cli
from common import run_folder
from ptb import engine
from ptb import ptb_word_lm
from ptb import record
from ptb.reader import END_OF_SENTENCE, UNKNOWN


@dataclasses.dataclass(frozen=True)
class LanguageModel:
    model: keras.Model  # the trained weights, batch 1, windows of any length
    config: ptb_word_lm.Config
    words: tuple  # id -> word

    @property
    def word_to_id(self):
        return {word: index for index, word in enumerate(self.words)}

    def encode(self, text):
        """(ids, unknown): the ids of the text's words, `<unk>` for the words
        outside the vocabulary, which `unknown` lists."""
        word_to_id = self.word_to_id
        # PTB is lower case but for N, its token for numbers: "The" is "the", "N" stays.
        written = text.split()
        words = [word if word in word_to_id else word.lower() for word in written]
        unknown = [original for original, word in zip(written, words) if word not in word_to_id]
        if unknown and UNKNOWN not in word_to_id:
            raise cli.UserInputError(f"{', '.join(unknown)}: not in the vocabulary, which has "
                                     f"no {UNKNOWN} to stand for them")
        return np.array([word_to_id.get(word, word_to_id.get(UNKNOWN)) for word in words],
                        dtype=np.int32), unknown

    def sentence_start(self):
        """The state after an `<eos>`, and the log-probabilities of a sentence's first word."""
        return self.next_log_probs([self.word_to_id[END_OF_SENTENCE]])

    def next_log_probs(self, ids, state=None):
        """(log p(word) for every word of the vocabulary, state) after reading
        `ids` from `state` (the zero state when None)."""
        if state is None:
            state = engine.zero_state(self.model, 1)
        ids = np.asarray(ids, dtype=np.int32)[None, :]
        log_probs, state = _next_log_probs(self.model, ids, state)
        return log_probs.numpy()[0].astype(np.float64), state


@tf.function(reduce_retracing=True)
def _next_log_probs(model, ids, state):
    logits, *state = model([ids, *state], training=False)
    return tf.nn.log_softmax(logits[:, -1]), state


def load_trained_model(save_path):
    """The batch-1 model that a finished run saved in its folder, and its Config."""
    model, settings = run_folder.load_finished_run(
        save_path, "ptb", "train with python -m ptb.ptb_word_lm --save_path first")
    # Runs from before --rnn_cell existed lack that field: theirs is the default.
    config = ptb_word_lm.Config(**{field.name: settings[field.name]
                                   for field in dataclasses.fields(ptb_word_lm.Config)
                                   if field.name in settings})
    return model, config


def load(save_path):
    """The model that `python -m ptb.ptb_word_lm --save_path=save_path` trained."""
    folder = pathlib.Path(save_path)
    model, config = load_trained_model(folder)
    vocabulary = folder / record.VOCABULARY
    try:
        words = tuple(json.loads(vocabulary.read_text()))
    except (OSError, ValueError) as error:
        raise cli.UserInputError(
            f"--save_path={folder}: {record.VOCABULARY} missing or unreadable "
            f"({type(error).__name__}); run the trainer's command again: a finished run adds it")
    if len(words) != config.vocab_size or END_OF_SENTENCE not in words:
        raise cli.UserInputError(f"{vocabulary}: not the model's vocabulary of "
                                 f"{config.vocab_size} words with {END_OF_SENTENCE}; train "
                                 "again with --restart")
    return LanguageModel(model, config, words)


def define_save_path_flag():
    """--save_path, as every tool that reads a trained model takes it."""
    flags.DEFINE_string("save_path", None, "The run folder of a trained model "
                        "(python -m ptb.ptb_word_lm --save_path).")


def load_from_flags():
    """The model in the run folder that --save_path (required) names."""
    if not flags.FLAGS.save_path:
        raise cli.UserInputError("--save_path: required; the run folder of a trained model")
    return load(flags.FLAGS.save_path)


def check_top_k(top_k, vocab_size):
    """--top_k must name between 1 and all the words."""
    if top_k is not None and not 1 <= top_k <= vocab_size:
        raise cli.UserInputError(f"--top_k={top_k}: must be between 1 and the vocabulary's "
                                 f"{vocab_size:,} words")


def encode_context(lm, text, flag):
    """The ids of `text`, which must hold at least one vocabulary word; `flag` names it
    in errors. Unknown words become `<unk>`; the caller reports them."""
    if not text or not text.strip():
        raise cli.UserInputError(f"{flag}: empty; give at least one word")
    ids, unknown = lm.encode(text)
    if len(unknown) == len(ids):
        raise cli.UserInputError(f"{flag}={text!r}: no word of it is in the vocabulary "
                                 f"(unknown: {', '.join(unknown)}); in PTB, words are lower "
                                 "case and numbers are N")
    return ids, unknown
