"""Reads a word-level corpus into word ids and cuts it into training windows.

Same semantics as the TensorFlow tutorial's reader: every newline becomes an
`<eos>` token, words are split on whitespace, and the vocabulary is built from
the training file (most frequent first, ties broken alphabetically). Beyond
PTB, a corpus folder may hold its three files in any of three layouts:

    ptb.train.txt      ptb.valid.txt      ptb.test.txt       PTB (simple-examples/data)
    train.txt          valid.txt          test.txt           plain (PyTorch's example)
    wiki.train.tokens  wiki.valid.tokens  wiki.test.tokens   WikiText-2 / -103

`vocab_size` keeps only that many words, `<eos>` and the most frequent; the
rest, and any word of the validation or test text outside the vocabulary, are
read as `<unk>`, which joins the vocabulary if the training text has none. On
PTB nothing is outside: its 10,000 words are the tutorial's.

    corpus = read_corpus(data_path)           # .train, .valid, .test ids; .words
    dataset = corpus.windows("train", batch_size=20, num_steps=20)  # ptb_producer
"""

import collections
import dataclasses
import os
import pathlib
import tarfile

import numpy as np
import keras
import tensorflow as tf

from common import cli
from common import data as common_data
from common.cli import UserInputError

PTB_URL = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
SPLITS = ("train", "valid", "test")
# Layout name -> the file name of each split.
LAYOUTS = {
    "PTB": "ptb.{}.txt",
    "plain": "{}.txt",
    "WikiText": "wiki.{}.tokens",
}
END_OF_SENTENCE = "<eos>"
UNKNOWN = "<unk>"


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A corpus folder read into word ids."""

    folder: str
    layout: str  # a key of LAYOUTS
    words: tuple  # the vocabulary, id -> word
    train: np.ndarray  # int32 word ids
    valid: np.ndarray
    test: np.ndarray
    unknown: dict  # split -> how many of its words were read as <unk> (not being in `words`)
    training_words: int  # distinct words of the training text

    @property
    def vocab_size(self):
        return len(self.words)

    def windows(self, split, batch_size, num_steps):
        """The `split`'s windows (ptb_producer), a text too short for them named by
        its file."""
        return ptb_producer(getattr(self, split), batch_size, num_steps,
                            name=os.path.join(self.folder, LAYOUTS[self.layout].format(split)))

    def unigram_perplexity(self, split):
        """The perplexity of `split` under the training text's word frequencies (each
        count plus one, so that no word is impossible): what a model that ignores
        context scores, the bar any language model should beat."""
        counts = np.bincount(self.train, minlength=self.vocab_size) + 1.0
        log_probs = np.log(counts / counts.sum())
        return float(np.exp(-log_probs[getattr(self, split)].mean()))

    def describe(self):
        """What the folder holds, in a few lines, as the trainer prints it."""
        names = ", ".join(LAYOUTS[self.layout].format(split) for split in SPLITS)
        lines = [f"Data: {self.folder} ({self.layout} layout: {names})",
                 "  words (with <eos>): " + ", ".join(
                     f"{split} {len(getattr(self, split)):,}" for split in SPLITS),
                 f"  vocabulary: {self.vocab_size:,} words (of {self.training_words:,} "
                 "in the training text)"]
        for split in SPLITS:
            if self.unknown[split]:
                share = self.unknown[split] / len(getattr(self, split))
                lines.append(f"  {split}: {self.unknown[split]:,} words ({share:.2%}) outside "
                             f"the vocabulary, read as {UNKNOWN}")
        return "\n".join(lines)


def _word_lines(filename):
    """The words of each line of `filename`, the line's end read as <eos> (the
    tutorial's text.replace("\\n", " <eos> ").split()), a line at a time."""
    line_number = 0
    try:
        with open(filename, encoding="utf-8", newline="\n") as file:
            for line_number, line in enumerate(file, 1):
                words = line.split()
                if line.endswith("\n"):
                    words.append(END_OF_SENTENCE)
                yield words
    except FileNotFoundError:
        raise UserInputError(f"{filename}: file not found; --data_path must hold the "
                             "training, validation and test text")
    except UnicodeDecodeError:
        raise UserInputError(f"{filename}: not UTF-8 text (line {line_number + 1}); give "
                             "plain-text files (for PTB those of simple-examples.tgz).")
    except OSError as error:  # a folder, no permission, an I/O error
        raise UserInputError(f"{filename}: cannot read it ({error.strerror}); check --data_path.")


def count_words(filename):
    """How often each word of `filename` occurs (<eos> for each line's end)."""
    counts = collections.Counter()
    for words in _word_lines(filename):
        counts.update(words)
    if not counts:
        raise UserInputError(f"{filename}: the file is empty; give it the text of its split.")
    return counts


def build_vocab(counts, vocab_size=None, unseen_held_out=False):
    """Maps each counted training word to an id: most frequent first, then alphabetical.

    `<unk>` joins (with no training count, last) when `unseen_held_out` says the
    validation or test text has words the training text lacks. With
    `vocab_size`, if there are more words than that, `<eos>` and the
    vocab_size - 2 most frequent others are kept and `<unk>` stands for the
    rest, counted as their total.
    """
    if vocab_size is not None and vocab_size < 2:
        raise UserInputError(f"--vocab_size={vocab_size}: must be at least 2 (<eos>, <unk>)")
    counts = dict(counts)
    needs_unknown = unseen_held_out and UNKNOWN not in counts
    if vocab_size is not None and len(counts) + needs_unknown > vocab_size:
        always = [word for word in (END_OF_SENTENCE,) if word in counts]
        others = [word for word in _by_count_then_word(counts)
                  if word not in (END_OF_SENTENCE, UNKNOWN)]
        kept = {word: counts[word] for word in always + others[:vocab_size - 1 - len(always)]}
        kept[UNKNOWN] = sum(counts.values()) - sum(kept.values())  # every word not kept
        counts = kept
    elif needs_unknown:
        counts[UNKNOWN] = 0
    return {word: index for index, word in enumerate(_by_count_then_word(counts))}


def _by_count_then_word(counts):
    return sorted(counts, key=lambda word: (-counts[word], word))


def file_to_word_ids(filename, word_to_id):
    """(ids, unknown): the ids of the file's words, and how many of them are
    outside the vocabulary; those become `<unk>`, or are dropped (the tutorial's
    reader) if the vocabulary has no `<unk>`."""
    ids = np.fromiter((word_to_id.get(word, -1) for words in _word_lines(filename)
                       for word in words), dtype=np.int32)
    outside = ids < 0
    unknown = int(outside.sum())
    if unknown == len(ids):
        raise UserInputError(f"{filename}: none of its words is in the training text's "
                             "vocabulary; is it the same corpus?")
    if UNKNOWN in word_to_id:
        return np.where(outside, word_to_id[UNKNOWN], ids).astype(np.int32), unknown
    return ids[~outside], unknown


def read_corpus(data_path=None, vocab_size=None):
    """Reads the corpus folder `data_path` (PTB, downloaded, when None) into a Corpus."""
    if data_path is None:
        data_path = download_ptb()
    layout, paths = find_layout(data_path)
    counts = {split: count_words(paths[split]) for split in SPLITS}
    unseen_held_out = any(word not in counts["train"]
                          for split in ("valid", "test") for word in counts[split])
    word_to_id = build_vocab(counts["train"], vocab_size, unseen_held_out)
    ids, unknown = {}, {}
    for split in SPLITS:
        ids[split], unknown[split] = file_to_word_ids(paths[split], word_to_id)
    return Corpus(str(data_path), layout, tuple(sorted(word_to_id, key=word_to_id.get)),
                  ids["train"], ids["valid"], ids["test"], unknown, len(counts["train"]))


def ptb_raw_data(data_path=None, vocab_size=None):
    """The tutorial's reader: (train_ids, valid_ids, test_ids, vocab_size) of the
    corpus at `data_path` (PTB, downloaded, when None); see `read_corpus`."""
    corpus = read_corpus(data_path, vocab_size)
    return corpus.train, corpus.valid, corpus.test, corpus.vocab_size


def find_layout(data_path):
    """(layout, {split: file}) of the first layout of LAYOUTS whose three files are
    all in the folder `data_path`; one line naming what is missing otherwise."""
    folder = pathlib.Path(data_path)
    if not folder.is_dir():
        raise UserInputError(f"--data_path={data_path}: no such folder; point it at the "
                             f"folder of the corpus ({_layouts_in_words()})")
    partial = None
    for layout, pattern in LAYOUTS.items():
        paths = {split: str(folder / pattern.format(split)) for split in SPLITS}
        present = [split for split in SPLITS if os.path.exists(paths[split])]
        if len(present) == len(SPLITS):
            return layout, paths
        if present and partial is None:
            partial = layout, [pattern.format(split) for split in SPLITS if split not in present]
    if partial:
        layout, missing = partial
        raise UserInputError(f"--data_path={data_path}: {', '.join(missing)}: file not found; "
                             f"the {layout} layout needs all three of its files")
    raise UserInputError(f"--data_path={data_path}: holds no corpus; "
                         f"it needs {_layouts_in_words()}")


def _layouts_in_words():
    return " or ".join(pattern.format("{train,valid,test}") for pattern in LAYOUTS.values())


def download_ptb():
    """Downloads simple-examples.tgz into the Keras cache; returns its data/ folder."""
    try:
        archive = keras.utils.get_file("simple-examples.tgz", PTB_URL)
    except Exception as error:  # urllib raises many kinds; all mean "no download"
        raise UserInputError(
            f"could not download the PTB data from {PTB_URL} "
            f"({cli.download_failure_reason(error)}); "
            "if you are offline, pass --data_path=DIR with the ptb.*.txt files."
        )
    data_dir = os.path.join(os.path.dirname(archive), "simple-examples", "data")
    if not os.path.isdir(data_dir):
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("./simple-examples/data/")
                       or m.name.startswith("simple-examples/data/")]
            tar.extractall(os.path.dirname(archive), members=members, filter="data")
    return data_dir


def epoch_size(num_ids, batch_size, num_steps):
    """Number of [batch_size, num_steps] windows in one epoch over `num_ids` ids."""
    return ((num_ids // batch_size) - 1) // num_steps


def ptb_producer(raw_data, batch_size, num_steps, name="data"):
    """Cuts `raw_data` into windows for truncated backpropagation through time.

    The ids are laid row-wise into `batch_size` contiguous streams; window i is
    columns [i*num_steps, (i+1)*num_steps) of every row. So row r of one window
    continues row r of the previous one, which is why the LSTM state is carried
    from window to window. For 15 ids, batch_size 3, num_steps 2:

        ids:     4 3 2 1 0 | 5 6 1 1 1 | 1 0 3 4 1
        rows:    [4 3 | 2 1 | 0]       window 0: x = 4 3   y = 3 2
                 [5 6 | 1 1 | 1]                  5 6       6 1
                 [1 0 | 3 4 | 1]                  1 0       0 3
                                       window 1: x = 2 1   y = 1 0 ...

    Returns:
      A tf.data.Dataset of (x, y) int32 pairs of shape [batch_size, num_steps],
      in order, one epoch long, where y is x shifted one word ahead; the next
      window is prepared while a step runs.
    """
    raw_data = np.asarray(raw_data, dtype=np.int32)
    num_windows = epoch_size(len(raw_data), batch_size, num_steps)
    if num_windows <= 0:
        raise UserInputError(
            f"{name}: {len(raw_data)} words are too few for batch_size={batch_size} "
            f"x num_steps={num_steps} (the preset's); give a longer text."
        )
    row_length = len(raw_data) // batch_size
    rows = raw_data[: batch_size * row_length].reshape(batch_size, row_length)
    used = num_windows * num_steps
    # [num_windows, batch, steps]: window i is a column slice of every row.
    inputs = rows[:, :used].reshape(batch_size, num_windows, num_steps).transpose(1, 0, 2)
    targets = rows[:, 1 : used + 1].reshape(batch_size, num_windows, num_steps).transpose(1, 0, 2)
    windows = tf.data.Dataset.from_tensor_slices((inputs, targets))
    return common_data.without_autotune(windows.prefetch(tf.data.AUTOTUNE))
