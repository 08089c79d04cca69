"""Prints the probability that a review is positive, with a model trained by train/compare.

    python -m imdb_sentiment.predict --save_path runs/imdb_sentiment/lstm "A fine film."
    python -m imdb_sentiment.predict --save_path runs/imdb_sentiment/compare/gru --file reviews.txt
    echo "Dull and far too long." | python -m imdb_sentiment.predict --save_path ...

--save_path is a run folder written by train (or one model's folder inside
compare's): its `model.keras`, `vocabulary.json` and `settings.json` give the
model, the vocabulary and the padding it was trained with. Each argument is one
review; --file and stdin hold one review per line. Output: one line per review,
`probability<TAB>label`.
"""

import json
import pathlib
import sys

import common  # noqa: F401  (first: quiets TensorFlow's start-up logs)
from absl import flags
import keras
import numpy as np

from common import cli
from common import layers  # noqa: F401  (registers ReplicaDropout, which the saved models use)
from common import run_folder
from imdb_sentiment import data
from imdb_sentiment import train

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("save_path", None, "The run folder of a trained model (train's "
                        "--save_path, or compare's <folder>/[bidirectional_]<rnn>).")
    flags.DEFINE_string("file", None, "Text file with one review per line (default: arguments, "
                        "else stdin).")


def load_classifier(save_path):
    """(model, score) where score(list of review texts) -> positive probabilities."""
    folder = pathlib.Path(save_path)
    models = [name for name in ("gru", "bidirectional_gru") if (folder / name).is_dir()]
    if not (folder / "model.keras").is_file() and models:
        raise cli.UserInputError(f"--save_path={folder}: no model.keras there; for a compare "
                                 f"run, name one model's folder, e.g. {folder / models[0]}")
    model, config = run_folder.load_finished_run(
        folder, "imdb_sentiment", "train one with --save_path first")
    try:
        vocabulary = json.loads((folder / train.VOCABULARY).read_text())
    except (OSError, ValueError) as error:
        raise cli.UserInputError(
            f"--save_path={folder}: vocabulary.json missing or unreadable "
            f"({type(error).__name__}); train the model again with --restart")
    # The vocabulary starts with the padding "" and "[UNK]" entries, as saved.
    vectorizer = keras.layers.TextVectorization(
        standardize=data.standardize, vocabulary=vocabulary[2:], ragged=True
    )

    def score(reviews):
        token_ids = vectorizer(reviews).to_list()
        for review, ids in zip(reviews, token_ids):
            if not ids:
                raise cli.UserInputError(
                    f"review {review[:40]!r}: no words left to read; give real text")
        x = data.pad(token_ids, config["sequence_length"], config["padding"])
        return model.predict(x, verbose=0)[:, 0]

    return model, score


def read_reviews(argv):
    """Reviews from the arguments, else --file, else stdin; empty text is an error."""
    if len(argv) > 1:
        reviews, source = argv[1:], "review argument"
    elif FLAGS.file:
        try:
            lines = pathlib.Path(FLAGS.file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise cli.UserInputError(f"--file={FLAGS.file}: cannot read it ({error})")
        reviews, source = [line for line in lines if line.strip()], f"--file={FLAGS.file}"
    else:
        try:
            text = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError as error:
            raise cli.UserInputError(f"stdin: not UTF-8 text (byte {error.start}); give the "
                                     "reviews as UTF-8 text, one per line")
        reviews, source = [line for line in text.splitlines() if line.strip()], "stdin"
    if not reviews or any(not review.strip() for review in reviews):
        raise cli.UserInputError(f"{source}: empty review text; give a review to score")
    return reviews


def main(argv):
    if not FLAGS.save_path:
        raise cli.UserInputError("--save_path: required; the run folder of a trained model")
    reviews = read_reviews(argv)
    _, score = load_classifier(FLAGS.save_path)
    for probability in np.atleast_1d(score(reviews)):
        print(f"{probability:.4f}\t{'positive' if probability >= 0.5 else 'negative'}")


if __name__ == "__main__":
    define_flags()
    cli.run(main, takes_arguments=True)
