"""IMDB movie reviews as padded token ids, from one of two real sources.

    load_data(config)                       keras.datasets.imdb (downloads, pre-tokenised)
    load_data(config, ".../aclImdb")        the raw Large Movie Review Dataset (offline):
    load_data(config, ".../aclImdb_v1.tar.gz")  the folder, or the tarball itself
    training_batches(reviews, config, first_epoch)   shuffled batches, resumable

Raw reviews are standardised (lower case, `<br />` markup and punctuation removed)
and turned into ids by a Keras `TextVectorization` layer whose vocabulary is adapted
on the training reviews only (not validation, not test). Both sources end in the
same id layout, so a model trained on either reads text the same way:

    0 = padding    1 = out-of-vocabulary    2, 3, ... = words, most frequent first

Every review is cut or padded to `sequence_length` ids. With padding="pre" (the
default) the zeros go in front and long reviews lose their beginning:

    short review  ->  [ 0  0  0  0  0  0 | 12 845  7  33 ]   the RNN reads real
    long review   ->  [ ...cut... | 91  4 17 ... 560  9  2 ]   words last

A recurrent layer's final state is what the classifier sees, so what it reads last
matters. With padding="post" (zeros last) a SimpleRNN has to carry the review across
up to 200 padding steps and forgets it: with "post" it stays near chance on the
raw reviews (docs/engineering-log.md). Masking the
padding instead would also work, but cuDNN only accepts right-padded masks and
masking costs time on a CPU.
"""

import dataclasses
import pathlib
import re
import string
import tarfile
import zlib

import numpy as np
import tensorflow as tf
import keras

from common import data as common_data
from common import cli
from common.cli import UserInputError

PADDING_CHOICES = ("pre", "post")
_SPLITS = ("train", "test")
_CLASSES = (("neg", 0), ("pos", 1))  # folder name, label
_PUNCTUATION = re.escape(string.punctuation)


@dataclasses.dataclass(frozen=True)
class Reviews:
    """Token ids (int32, [n, sequence_length]) and labels (0 neg, 1 pos)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    vocabulary: list  # vocabulary[id] is the word; [0] = "" (padding), [1] = "[UNK]"


def standardize(text):
    """Lower case, `<br />` line breaks to spaces, punctuation removed (string tensor)."""
    text = tf.strings.lower(text)
    text = tf.strings.regex_replace(text, r"<br\s*/?>", " ")
    return tf.strings.regex_replace(text, f"[{_PUNCTUATION}]", "")


def pad(token_ids, sequence_length, padding="pre"):
    """Lists of ids -> int32 array [n, sequence_length]; cuts on the same side it pads."""
    if padding not in PADDING_CHOICES:
        raise UserInputError(f"--padding={padding}: choose one of {', '.join(PADDING_CHOICES)}")
    return keras.utils.pad_sequences(
        token_ids, maxlen=sequence_length, padding=padding, truncating=padding, dtype="int32"
    )


def load_data(config, data_path=None):
    """Returns `Reviews`: train/validation from the training set, test untouched.

    Reads config.vocab_size, sequence_length, padding, validation_fraction, seed
    and max_examples: only the first N training and N test reviews, half of each
    class, for quick runs and tests. The validation split is a seeded shuffle of
    the training reviews.
    """
    max_examples = config.max_examples
    if max_examples is not None and max_examples < 4:
        raise UserInputError(f"--max_examples={max_examples}: use at least 4 (2 per class)")
    if data_path is None:
        train, test, vocabulary = _keras_imdb(config.vocab_size, max_examples)
        (x_train, y_train), (x_val, y_val) = _split(*train, config.validation_fraction, config.seed)
        x_test, y_test = test
    else:
        raw = read_raw_reviews(data_path)
        train = _first_per_class(*raw["train"], max_examples)
        x_test, y_test = _first_per_class(*raw["test"], max_examples)
        (x_train, y_train), (x_val, y_val) = _split(*train, config.validation_fraction, config.seed)
        vectorizer = keras.layers.TextVectorization(
            max_tokens=config.vocab_size, standardize=standardize, ragged=True
        )
        vectorizer.adapt(common_data.without_autotune(
            tf.data.Dataset.from_tensor_slices(x_train).batch(1024)))
        vocabulary = vectorizer.get_vocabulary()
        x_train, x_val, x_test = (
            vectorizer(tf.constant(list(texts))).to_list() for texts in (x_train, x_val, x_test)
        )
    x_train, x_val, x_test = (pad(x, config.sequence_length, config.padding)
                              for x in (x_train, x_val, x_test))
    return Reviews(x_train, y_train, x_val, y_val, x_test, y_test, list(vocabulary))


def training_batches(reviews, config, first_epoch=0):
    """Shuffled training batches from `first_epoch` to the last; a resumed run draws
    exactly what an uninterrupted one would (common/data.py)."""
    return common_data.shuffled_epochs(reviews.x_train, reviews.y_train.astype("float32"),
                                       config.batch_size, config.seed, first_epoch, config.epochs)


def evaluation_batches(x, y, config):
    """Validation or test batches, in stored order."""
    return common_data.in_order(x, y.astype("float32"), config.batch_size)


def read_raw_reviews(data_path):
    """{"train": (texts, labels), "test": (texts, labels)} from aclImdb, sorted by file.

    data_path: an `aclImdb` folder, a folder holding one or `aclImdb_v1.tar.gz`, or
    the tarball itself (read once, in a single pass, never extracted).
    """
    path = pathlib.Path(data_path)
    if path.is_dir() and not (path / "train").is_dir():
        if (path / "aclImdb").is_dir():
            path = path / "aclImdb"
        elif (path / "aclImdb_v1.tar.gz").is_file():
            path = path / "aclImdb_v1.tar.gz"
    if path.is_dir():
        files = [file for split in _SPLITS for name, _ in _CLASSES
                 for file in (path / split / name).glob("*.txt")]
        try:
            reviews = {str(file.relative_to(path)): file.read_bytes() for file in files}
        except OSError as error:  # a folder named *.txt, no permission, an I/O error
            raise UserInputError(f"{error.filename}: cannot read it ({error.strerror}); "
                                 "check --data_path")
    elif path.is_file():
        reviews = _read_tarball(path)
    else:
        raise UserInputError(
            f"--data_path={data_path}: no such file or folder; give the aclImdb folder "
            "or aclImdb_v1.tar.gz"
        )
    result = {}
    for split in _SPLITS:
        texts, labels = [], []
        for name, label in _CLASSES:
            prefix = f"{split}/{name}/"
            members = sorted((m for m in reviews if m.startswith(prefix)), key=_review_number)
            texts += [reviews[m].decode("utf-8", errors="replace") for m in members]
            labels += [label] * len(members)
            if not members:
                raise UserInputError(
                    f"--data_path={data_path}: no reviews in {split}/{name}/; expected the "
                    "aclImdb layout {train,test}/{pos,neg}/*.txt"
                )
        result[split] = (np.array(texts, dtype=object), np.array(labels, dtype=np.int32))
    return result


def _read_tarball(path):
    """{"train/pos/0_9.txt": bytes, ...} from aclImdb_v1.tar.gz in one sequential pass."""
    pattern = re.compile(r"(?:^|/)((?:train|test)/(?:pos|neg)/[^/]+\.txt)$")
    reviews = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                match = pattern.search(member.name)
                if member.isfile() and match:
                    reviews[match.group(1)] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        reason = " ".join(str(error).split())  # tarfile's message spans several lines
        raise UserInputError(
            f"--data_path={path}: not a readable tar archive ({reason}); download "
            "aclImdb_v1.tar.gz again or point at the extracted aclImdb folder"
        )
    return reviews


def _review_number(member):
    """'train/pos/123_9.txt' -> (123, name): numeric order, as the dataset numbers them."""
    stem = member.rsplit("/", 1)[-1].split("_")[0]
    return (int(stem) if stem.isdigit() else -1, member)


def _first_per_class(x, y, max_examples):
    """The first max_examples // 2 negative and the rest positive, in stored order."""
    if max_examples is None:
        return x, y
    negative = np.flatnonzero(y == 0)[: max_examples // 2]
    positive = np.flatnonzero(y == 1)[: max_examples - max_examples // 2]
    keep = np.concatenate([negative, positive])
    return x[keep], y[keep]


def _split(x, y, validation_fraction, seed):
    """Seeded shuffle, then the last validation_fraction of it is the validation set."""
    if not 0 < validation_fraction < 1:
        raise UserInputError(f"validation_fraction={validation_fraction}: must be in (0, 1)")
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order]
    n_val = max(1, int(round(len(y) * validation_fraction)))
    return (x[:-n_val], y[:-n_val]), (x[-n_val:], y[-n_val:])


def _keras_imdb(vocab_size, max_examples):
    """keras.datasets.imdb, re-numbered to the TextVectorization layout above.

    Keras numbers words from 4 (1 = start marker, 2 = out-of-vocabulary); dropping
    the start marker and shifting by 2 gives the same layout as the raw-text path.
    """
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.imdb.load_data(
            num_words=vocab_size, start_char=None, oov_char=2, index_from=3
        )
        word_index = keras.datasets.imdb.get_word_index()
    except Exception as error:  # no network, proxy, corrupt cache: all end here
        raise UserInputError(
            f"keras.datasets.imdb: could not load ({cli.download_failure_reason(error)}); "
            "pass --data_path with the aclImdb folder or aclImdb_v1.tar.gz to work offline"
        )
    # Keras keeps ids below num_words: word ranks 1 .. vocab_size - 4.
    words_by_rank = sorted(word_index, key=word_index.get)
    vocabulary = ["", "[UNK]"] + words_by_rank[: vocab_size - 4]
    x_train, y_train = _first_per_class(_renumber(x_train), y_train, max_examples)
    x_test, y_test = _first_per_class(_renumber(x_test), y_test, max_examples)
    return (x_train, y_train.astype(np.int32)), (x_test, y_test.astype(np.int32)), vocabulary


def _renumber(reviews):
    """Keras ids -> our layout, as a 1-D object array of lists (one per review)."""
    result = np.empty(len(reviews), dtype=object)
    for row, review in enumerate(reviews):
        result[row] = [max(i - 2, 1) for i in review]
    return result
