"""MNIST and Fashion-MNIST: download with Keras, or read IDX / npz files offline.

Both datasets ship as four IDX files with the same names (Fashion-MNIST is a
drop-in replacement for MNIST):

    train-images-idx3-ubyte.gz   60,000 x 28 x 28 uint8
    train-labels-idx1-ubyte.gz   60,000 uint8, 0..9
    t10k-images-idx3-ubyte.gz    10,000 x 28 x 28 uint8
    t10k-labels-idx1-ubyte.gz    10,000 uint8, 0..9

An IDX file is a 4-byte magic number (0, 0, type code 0x08 = uint8, number of
dimensions), one big-endian int32 per dimension, then the raw bytes:

    00 00 08 03 | 00 00 ea 60 | 00 00 00 1c | 00 00 00 1c | 60000*28*28 pixels

Keras' own `mnist.npz` (x_train, y_train, x_test, y_test) is read too.
Every problem with a file is a UserInputError that names the file.

    splits = load_data(config, data_path)      # train / validation / test arrays
    batches = training_batches(splits["train"], config, first_epoch)
"""

import gzip
import pathlib
import zlib

import numpy as np

from common import data as common_data
from common import cli
from common.cli import UserInputError

DATASETS = ("mnist", "fashion_mnist")
CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion_mnist": [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ],
}
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_UINT8 = 0x08


def load_data(config, data_path=None):
    """Returns {"train", "validation", "test"}: (images, labels) pairs, plus "class_names".

    Images are float32 [N, 28, 28] in [0, 1] (one row per time step), labels
    int32 [N]. The validation split is the tail of the training examples.
    """
    test = load_test_data(config, data_path)  # first: it checks --split_test_file
    if config.split_test_file:
        images, labels = load_split(config.dataset, "test", data_path)
        train = images[: config.split_test_file], labels[: config.split_test_file]
    else:
        train = load_split(config.dataset, "train", data_path)
    if config.max_examples:
        train = tuple(array[: config.max_examples] for array in train)
    num_validation = int(round(len(train[0]) * config.validation_fraction))
    if not 0 < num_validation < len(train[0]):
        raise UserInputError(
            f"--validation_fraction={config.validation_fraction}: cannot split "
            f"{len(train[0])} training examples; use at least 10 (see --max_examples, "
            "--split_test_file)"
        )
    split = len(train[0]) - num_validation
    return {
        "train": (train[0][:split], train[1][:split]),
        "validation": (train[0][split:], train[1][split:]),
        "test": test,
        "class_names": CLASS_NAMES[config.dataset],
    }


def load_test_data(config, data_path=None):
    """The test (images, labels) of `load_data`, without reading the training files."""
    images, labels = load_split(config.dataset, "test", data_path)
    if config.split_test_file:
        # Stand-in for machines with only the t10k files: the test file is cut
        # in two; training uses its head, testing its tail.
        if not 0 < config.split_test_file < len(images):
            raise UserInputError(
                f"--split_test_file={config.split_test_file}: must be between 1 and "
                f"{len(images) - 1} (the test file has {len(images)} examples)"
            )
        images, labels = images[config.split_test_file :], labels[config.split_test_file :]
    if config.max_examples:
        images, labels = images[: config.max_examples], labels[: config.max_examples]
    return images, labels


def training_batches(train, config, first_epoch=0):
    """Shuffled (and shifted) training batches from `first_epoch` to the last; a
    resumed run draws exactly what an uninterrupted one would (common/data.py)."""
    augment = None
    if config.max_shift:
        augment = lambda images, seed: random_shift(images, config.max_shift, seed)  # noqa: E731
    return common_data.shuffled_epochs(*train, config.batch_size, config.seed, first_epoch,
                                       config.epochs, augment)


def random_shift(images, max_shift, seed):
    """Moves each image of a batch [B, H, W] by -max_shift..max_shift pixels in each direction.

    Zero-pads by max_shift on every side, then cuts one H x W window per image
    at a random offset (drawn statelessly from `seed`), with two batched gathers
    (cheap on a CPU).
    """
    import tensorflow as tf  # only needed here; keeps `read_idx` usable without TensorFlow

    height, width = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [max_shift, max_shift], [max_shift, max_shift]])
    offsets = tf.random.stateless_uniform(
        [tf.shape(images)[0], 2], seed, 0, 2 * max_shift + 1, tf.int32)
    rows = offsets[:, :1] + tf.range(height)  # [B, H]: the padded rows each image keeps
    columns = offsets[:, 1:] + tf.range(width)  # [B, W]
    images = tf.gather(padded, rows, axis=1, batch_dims=1)  # [B, H, W + 2 * max_shift]
    return tf.gather(images, columns, axis=2, batch_dims=1)


def load_split(dataset, split, data_path=None):
    """Returns (images, labels) of one split: float32 [N, 28, 28] in [0, 1], int32 [N].

    Args:
      dataset: "mnist" or "fashion_mnist".
      split: "train" or "test".
      data_path: folder with the IDX files (`.gz` or uncompressed) or
        `mnist.npz`; None downloads the canonical files with keras.datasets.
    """
    if dataset not in DATASETS:
        raise UserInputError(
            f"--dataset={dataset}: unknown dataset; use one of {', '.join(DATASETS)}"
        )
    if split not in IDX_FILES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    if data_path is None:
        images, labels, sources = _download(dataset, split)
    else:
        images, labels, sources = _read_folder(pathlib.Path(data_path), dataset, split)
    _check(images, labels, *sources)
    return (images.astype(np.float32) / 255.0), labels.astype(np.int32)


def read_idx(path):
    """Reads one IDX file of uint8 values (gzip-compressed or not) into an array."""
    path = pathlib.Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        raise UserInputError(f"{path}: file not found; check --data_path")
    except (OSError, EOFError, zlib.error) as error:
        raise UserInputError(
            f"{path}: cannot read ({error}); the file is damaged or truncated, "
            "download it again"
        )
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise UserInputError(f"{path}: not an IDX file (bad magic number); check --data_path")
    if raw[2] != _IDX_UINT8:
        raise UserInputError(
            f"{path}: IDX type code 0x{raw[2]:02x}, expected 0x08 (uint8); "
            "this is not an MNIST-style file"
        )
    num_dims = raw[3]
    header_size = 4 + 4 * num_dims
    if len(raw) < header_size:
        raise UserInputError(f"{path}: truncated IDX header; download the file again")
    shape = tuple(int(n) for n in np.frombuffer(raw, ">i4", num_dims, offset=4))
    expected = int(np.prod(shape))
    if len(raw) - header_size != expected:
        raise UserInputError(
            f"{path}: header says shape {shape} ({expected} bytes) but the file has "
            f"{len(raw) - header_size} data bytes; the file is truncated or damaged, "
            "download it again"
        )
    return np.frombuffer(raw, np.uint8, offset=header_size).reshape(shape)


def _read_folder(folder, dataset, split):
    if not folder.is_dir():
        raise UserInputError(f"--data_path={folder}: not a folder")
    images_name, labels_name = IDX_FILES[split]
    images_path = _find(folder, images_name)
    labels_path = _find(folder, labels_name)
    if images_path and labels_path:
        return read_idx(images_path), read_idx(labels_path), (images_path, labels_path)
    npz_path = folder / "mnist.npz"
    if npz_path.is_file():
        return (*_read_npz(npz_path, split), (npz_path, npz_path))
    missing = labels_name if images_path else images_name
    raise UserInputError(
        f"{folder / (missing + '.gz')}: file not found; --data_path must hold the "
        f"{dataset} IDX files ({', '.join(IDX_FILES[split])}, .gz or not) or mnist.npz"
    )


def _find(folder, name):
    """The path of `name.gz` or `name` in folder, or None."""
    for candidate in (folder / (name + ".gz"), folder / name):
        if candidate.is_file():
            return candidate
    return None


def _read_npz(path, split):
    try:
        with np.load(path) as arrays:
            return arrays[f"x_{split}"], arrays[f"y_{split}"]
    except KeyError as error:
        raise UserInputError(
            f"{path}: missing array {error}; expected Keras' mnist.npz with "
            "x_train, y_train, x_test, y_test"
        )
    except (OSError, ValueError, EOFError, zlib.error) as error:
        raise UserInputError(f"{path}: cannot read ({error}); download it again")


def _download(dataset, split):
    import keras  # only needed here; keeps `read_idx` usable without TensorFlow

    module = keras.datasets.mnist if dataset == "mnist" else keras.datasets.fashion_mnist
    try:
        train, test = module.load_data()
    except Exception as error:  # network problems surface as many exception types
        raise UserInputError(
            f"--dataset={dataset}: download failed ({cli.download_failure_reason(error)}); "
            "check the network or pass --data_path with the IDX files"
        )
    images, labels = train if split == "train" else test
    source = f"keras.datasets.{dataset}"
    return images, labels, (source, source)


def _check(images, labels, images_source, labels_source):
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise UserInputError(
            f"{images_source}: images have shape {list(images.shape)}, "
            "expected [N, 28, 28]; this is not MNIST-style data"
        )
    if images.dtype != np.uint8:
        raise UserInputError(
            f"{images_source}: images are {images.dtype}, expected uint8 pixels 0..255"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise UserInputError(
            f"{labels_source}: labels have shape {list(labels.shape)} but there are "
            f"{len(images)} images; the image and label files do not belong together"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise UserInputError(
            f"{labels_source}: labels range over {labels.min()}..{labels.max()}, "
            f"expected 0..{NUM_CLASSES - 1}"
        )
