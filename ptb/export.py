"""A trained model as a TensorFlow SavedModel, for use without this package.

    python -m ptb.export --save_path runs/ptb/small exported/small

writes the folder exported/small: a SavedModel whose one signature,
`next_word` (also `serving_default`), reads words and gives the
log-probabilities of the next one, and `vocabulary.txt` beside it, one word
per line, line i being word id i. It needs neither this package nor Keras:
`tf.saved_model.load` reads it (below), and so does TensorFlow's session-based
loader, which TF Serving and `saved_model_cli run` use. TFLite's converter
(`tf.lite.TFLiteConverter.from_saved_model`) converts it with TensorFlow ops
allowed (SELECT_TF_OPS, for the LSTM's loop); its runtime then needs the Flex
delegate, which the `tensorflow` wheel's Python `tf.lite.Interpreter` lacks.

    inputs   word_ids   int32   [batch, time]   the words, as ids
             state_0 .. state_{n-1}  float32 [batch, hidden]   the state before them
    outputs  log_probs  float32 [batch, vocab]  log p(next word | the words, the state)
             state_0 .. state_{n-1}  float32 [batch, hidden]   the state after them

The state is what the model carries from word to word, in its order: h and c
of layer 0, then of layer 1, for the LSTM presets (n = 4); h of each layer for
a GRU or SimpleRNN. Start from zeros; a sentence starts after an `<eos>`:

    import tensorflow as tf
    next_word = tf.saved_model.load("exported/small").signatures["next_word"]
    words = open("exported/small/vocabulary.txt", encoding="utf-8").read().splitlines()
    ids = {word: i for i, word in enumerate(words)}
    state = {name: tf.zeros([1, spec.shape[1]])
             for name, spec in next_word.structured_input_signature[1].items()
             if name.startswith("state_")}
    out = next_word(word_ids=tf.constant([[ids["<eos>"], ids["you"], ids["say"]]]), **state)
    print(words[int(tf.argmax(out["log_probs"][0]))])  # the most likely next word
    state = {name: out[name] for name in state}       # carry on from here
"""

import os
import pathlib
import shutil
import tempfile

import common  # noqa: F401  (first: quiets TensorFlow's start-up logs)
from absl import flags
import keras
import tensorflow as tf

from common import cli
from common import files
from ptb import language_model

SIGNATURE = "next_word"
VOCABULARY = "vocabulary.txt"


def next_word_archive(lm):
    """A `keras.export.ExportArchive` whose one endpoint, `next_word`, runs the
    LanguageModel `lm`; `write_out` adds it as `serving_default` too (TF
    Serving's requests without a signature name use that)."""
    num_states = len(lm.model.inputs) - 1
    input_signature = [tf.TensorSpec([None, None], tf.int32, name="word_ids")] + [
        tf.TensorSpec([None, lm.config.hidden_size], tf.float32, name=f"state_{i}")
        for i in range(num_states)]

    def next_word(word_ids, *state):
        logits, *state = lm.model([word_ids, *state], training=False)
        outputs = {"log_probs": tf.nn.log_softmax(tf.cast(logits[:, -1], tf.float32))}
        # float32 whatever the model computes in (--mixed_precision: bfloat16 or float16).
        outputs.update({f"state_{i}": tf.cast(layer_state, tf.float32)
                        for i, layer_state in enumerate(state)})
        return outputs

    archive = keras.export.ExportArchive()
    # The archive saves the TensorFlow variables the endpoint reads, which is what
    # a session-based loader (TF Serving, saved_model_cli) restores; a tf.Module
    # holding the model saves Keras' wrappers of them, which only
    # tf.saved_model.load restores. No `archive.track(lm.model)`: it would save
    # every weight a second time, as the model's Keras variables.
    archive.add_endpoint(SIGNATURE, next_word, input_signature=input_signature)
    return archive


def export(lm, out_dir):
    """Writes `lm` as a SavedModel with its vocabulary into the new folder `out_dir`.

    Written into a scratch folder beside it and renamed at the end, so that a
    failure (a full disk) leaves no half-written model.
    """
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise cli.UserInputError(f"{out_dir}: already exists; give a new folder, or remove it")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        scratch = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-",
                                                dir=out_dir.parent))
    except OSError as error:
        raise cli.UserInputError(f"{out_dir}: cannot create it ({error.strerror})")
    try:
        next_word_archive(lm).write_out(str(scratch), verbose=False)
        (scratch / VOCABULARY).write_text("".join(f"{word}\n" for word in lm.words),
                                          encoding="utf-8")
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.replace(scratch, out_dir)
    except (OSError, tf.errors.OpError) as error:  # a full disk, no permission
        raise cli.RunFailure(f"{out_dir}: cannot write it ({files.failure_reason(error)}); "
                             "nothing was exported") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


FLAGS = flags.FLAGS


def define_flags():
    language_model.define_save_path_flag()


def main(argv):
    if len(argv) != 2:
        raise cli.UserInputError("give the folder to export to as one argument, "
                                 "e.g. exported/small")
    lm = language_model.load_from_flags()
    export(lm, argv[1])
    print(f"{argv[1]}: SavedModel with signature '{SIGNATURE}' "
          f"({lm.config.vocab_size:,} words, {len(lm.model.inputs) - 1} state tensors of "
          f"{lm.config.hidden_size}), and {VOCABULARY}")


if __name__ == "__main__":
    define_flags()
    cli.run(main, takes_arguments=True)
