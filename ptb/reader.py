"""Reads the Penn Treebank text into word ids and cuts it into training windows.

Same semantics as the TensorFlow tutorial's reader: every newline becomes an
`<eos>` token, words are split on whitespace, the vocabulary is built from the
training file (most frequent first, ties broken alphabetically), and words
outside it are dropped.

    train_ids, valid_ids, test_ids, vocab_size = ptb_raw_data(data_path)
    dataset = ptb_producer(train_ids, batch_size=20, num_steps=20)
"""

import collections
import os
import pathlib
import tarfile

import numpy as np
import keras
import tensorflow as tf

from common.cli import UserInputError

PTB_URL = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
SPLITS = ("train", "valid", "test")


def _read_words(filename):
    """The file's words, with each line ending in <eos>."""
    try:
        text = pathlib.Path(filename).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UserInputError(
            f"{filename}: file not found; --data_path must hold ptb.train.txt, "
            "ptb.valid.txt and ptb.test.txt (the data/ folder of simple-examples.tgz)."
        )
    except UnicodeDecodeError as error:
        raise UserInputError(
            f"{filename}: not UTF-8 text (byte {error.start}); use the plain-text "
            "PTB files from simple-examples.tgz."
        )
    except OSError as error:  # a folder, no permission, an I/O error
        raise UserInputError(f"{filename}: cannot read it ({error.strerror}); check --data_path.")
    words = text.replace("\n", " <eos> ").split()
    if not words:
        raise UserInputError(f"{filename}: the file is empty; re-download the PTB data.")
    return words


def build_vocab(filename):
    """Maps each word of `filename` to an id: most frequent first, then alphabetical."""
    counter = collections.Counter(_read_words(filename))
    by_count_then_word = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    return {word: index for index, (word, _) in enumerate(by_count_then_word)}


def file_to_word_ids(filename, word_to_id):
    """The ids of the file's words; words outside the vocabulary are dropped."""
    ids = [word_to_id[word] for word in _read_words(filename) if word in word_to_id]
    if not ids:
        raise UserInputError(
            f"{filename}: none of its words is in the training vocabulary; "
            "is it a PTB file?"
        )
    return np.array(ids, dtype=np.int32)


def ptb_raw_data(data_path=None):
    """Loads the PTB files from `data_path` (downloaded when None).

    Returns:
      (train_ids, valid_ids, test_ids, vocab_size): three int32 numpy arrays of
      word ids and the vocabulary size (10,000 for the real data). The mapping
      itself comes from `build_vocab(train_file)` or `ptb_vocabulary(data_path)`.
    """
    paths = _split_paths(data_path)
    word_to_id = build_vocab(paths["train"])
    train, valid, test = (file_to_word_ids(paths[split], word_to_id) for split in SPLITS)
    return train, valid, test, len(word_to_id)


def ptb_vocabulary(data_path=None):
    """(word_to_id, id_to_word) for the training file, for generation and scoring."""
    word_to_id = build_vocab(_split_paths(data_path)["train"])
    id_to_word = sorted(word_to_id, key=word_to_id.get)
    return word_to_id, id_to_word


def _split_paths(data_path):
    if data_path is None:
        data_path = download_ptb()
    if not os.path.isdir(data_path):
        raise UserInputError(
            f"--data_path={data_path}: no such folder; point it at the folder "
            "holding ptb.train.txt, ptb.valid.txt and ptb.test.txt."
        )
    return {split: os.path.join(data_path, f"ptb.{split}.txt") for split in SPLITS}


def download_ptb():
    """Downloads simple-examples.tgz into the Keras cache; returns its data/ folder."""
    try:
        archive = keras.utils.get_file("simple-examples.tgz", PTB_URL)
    except Exception as error:  # urllib raises many kinds; all mean "no download"
        raise UserInputError(
            f"could not download the PTB data from {PTB_URL} ({type(error).__name__}); "
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
      in order, one epoch long, where y is x shifted one word ahead.
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
    return tf.data.Dataset.from_tensor_slices((inputs, targets))
