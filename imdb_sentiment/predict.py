"""Prints the probability that a review is positive, with a model saved by train/compare.

    python -m imdb_sentiment.predict --model runs/imdb_sentiment/lstm.keras "A fine film."
    python -m imdb_sentiment.predict --model runs/imdb_sentiment/gru.keras --file reviews.txt
    echo "Dull and far too long." | python -m imdb_sentiment.predict --model .../gru.keras

Each argument is one review; --file and stdin hold one review per line. The model's
`<rnn>.json` beside it gives the vocabulary and padding the model was trained with.
Output: one line per review, `probability<TAB>label`.
"""

import json
import pathlib
import sys

import common  # first: quiets TensorFlow's start-up logs
import common.cli
from common.cli import UserInputError

from absl import flags
import numpy as np
import keras

from imdb_sentiment import data

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model", None, "A <rnn>.keras file written by train --save_path or compare.")
    flags.DEFINE_string("file", None, "Text file with one review per line (default: arguments, "
                        "else stdin).")


def load_classifier(model_path):
    """(model, score) where score(list of review texts) -> positive probabilities."""
    model_path = pathlib.Path(model_path)
    info_path = model_path.with_suffix(".json")
    if not model_path.is_file():
        raise UserInputError(f"--model={model_path}: no such file; train with --save_path first")
    try:
        info = json.loads(info_path.read_text())
        vocabulary, config = info["vocabulary"], info["config"]
    except (OSError, ValueError, KeyError) as error:
        raise UserInputError(
            f"{info_path}: missing or unreadable ({type(error).__name__}); it is written "
            "beside the model by train --save_path and compare"
        )
    try:
        model = keras.saving.load_model(model_path)
    except Exception as error:  # Keras raises many types for a broken archive
        raise UserInputError(f"--model={model_path}: not a loadable Keras model ({error})")
    # The vocabulary starts with the padding "" and "[UNK]" entries, as saved.
    vectorizer = keras.layers.TextVectorization(
        standardize=data.standardize, vocabulary=vocabulary[2:], ragged=True
    )

    def score(reviews):
        token_ids = vectorizer(reviews).to_list()
        for review, ids in zip(reviews, token_ids):
            if not ids:
                raise UserInputError(f"review {review[:40]!r}: no words left to read; give real text")
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
            raise UserInputError(f"--file={FLAGS.file}: cannot read it ({error})")
        reviews, source = [line for line in lines if line.strip()], f"--file={FLAGS.file}"
    else:
        reviews, source = [line for line in sys.stdin.read().splitlines() if line.strip()], "stdin"
    if not reviews or any(not review.strip() for review in reviews):
        raise UserInputError(f"{source}: empty review text; give a review to score")
    return reviews


def main(argv):
    if not FLAGS.model:
        raise UserInputError("--model: required; a <rnn>.keras file from train --save_path")
    reviews = read_reviews(argv)
    _, score = load_classifier(FLAGS.model)
    for probability in np.atleast_1d(score(reviews)):
        print(f"{probability:.4f}\t{'positive' if probability >= 0.5 else 'negative'}")


if __name__ == "__main__":
    define_flags()
    common.cli.run(main)
