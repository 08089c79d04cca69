"""A corpus of one's own (WikiText layout, a capped vocabulary), a tied model trained
on it, the tools on that run, and the model exported and used from plain TensorFlow
and as a server loads it."""

import dataclasses
import errno
import json
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf

from common.cli import RunFailure
from ptb import engine
from ptb import export
from ptb import language_model
from ptb import next_word
from ptb import ptb_word_lm
from ptb import reader
from tests.conftest import assert_one_line_error, read_metrics, run_module

# Two layers, so that the exported state is four tensors in the model's order.
CONFIG = dataclasses.replace(ptb_word_lm.PRESETS["small"], hidden_size=8, batch_size=4,
                             num_steps=5, epochs=2, epochs_at_full_lr=1, tied=True)
VOCAB_SIZE = 40


def write_wikitext(folder):
    """About 5,000 words of Zipf-distributed made-up text, 120 distinct words, as
    wiki.{train,valid,test}.tokens (blank lines and headings as in WikiText)."""
    rng = np.random.default_rng(0)
    words = [f"word{i}" for i in range(120)]
    words[2] = "café"  # not ASCII: the files and the exported vocabulary are UTF-8
    frequency = 1 / np.arange(1, 121)
    folder.mkdir()
    for split, lines in (("train", 400), ("valid", 60), ("test", 60)):
        text = [" = Heading = ", ""] + [
            " ".join(rng.choice(words, size=rng.integers(4, 14), p=frequency / frequency.sum()))
            for _ in range(lines)]
        (folder / f"wiki.{split}.tokens").write_text("\n".join(text) + "\n", encoding="utf-8")
    return folder


def test_the_trainer_reads_the_wikitext_layout_and_caps_the_vocabulary(tmp_path):
    data_path = write_wikitext(tmp_path / "wikitext")
    metrics = ptb_word_lm.train_and_evaluate(CONFIG, str(data_path), save_path=tmp_path / "run",
                                             vocab_size=VOCAB_SIZE)
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())["settings"]
    assert settings["vocab_size"] == VOCAB_SIZE and settings["tied"] is True
    corpus = reader.read_corpus(str(data_path), VOCAB_SIZE)
    assert corpus.layout == "WikiText" and "<unk>" in corpus.words
    assert corpus.unknown["train"] > 0  # the cap made some words <unk>
    words = json.loads((tmp_path / "run" / "vocabulary.json").read_text())
    assert tuple(words) == corpus.words
    assert np.isfinite(metrics["test_perplexity"]) and metrics["test_perplexity"] < VOCAB_SIZE
    # Tied: no separate output matrix; the embedding's matrix gives the logits.
    lm = language_model.load(tmp_path / "run")
    assert lm.model.count_params() == (VOCAB_SIZE * 8 + VOCAB_SIZE
                                       + 2 * 4 * (2 * 8 * 8 + 8))


def test_own_corpus_trains_scores_generates_and_predicts_from_the_command_line(tmp_path, forked):
    data_path = write_wikitext(tmp_path / "wikitext")
    run = tmp_path / "run"
    result = run_module("ptb.ptb_word_lm", f"--data_path={data_path}", f"--save_path={run}",
                        "--model=test", "--tied", f"--vocab_size={VOCAB_SIZE}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "WikiText layout: wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens" in (
        result.stdout)
    assert f"vocabulary: {VOCAB_SIZE} words" in result.stdout
    assert "outside the vocabulary, read as <unk>" in result.stdout
    assert read_metrics(run)["test_perplexity"] > 1

    # The tools: processes of their own (conftest.ForkedRuns).
    scored = forked.run("ptb.score", f"--save_path={run}", stdin="word0 word1 café\nnever seen\n")
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert "read as <unk>: never, seen" in scored.stdout + scored.stderr
    generated = forked.run("ptb.generate", f"--save_path={run}", "--length=20", "--seed=1")
    assert generated.returncode == 0, generated.stderr[-2000:]
    vocabulary = set(json.loads((run / "vocabulary.json").read_text()))
    assert set(generated.stdout.split()) <= vocabulary and len(generated.stdout.split()) > 5
    predicted = forked.run("ptb.next_word", f"--save_path={run}", "--top_k=3", "word0")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert [line.split("\t")[0] in vocabulary for line in predicted.stdout.splitlines()] == [
        True] * 3


def test_a_folder_without_a_corpus_is_one_line_naming_the_layouts(tmp_path, forked):
    (tmp_path / "train.text").write_text("a b\n")
    result = forked.run("ptb.ptb_word_lm", f"--data_path={tmp_path}", "--model=test",
                        f"--save_path={tmp_path / 'run'}")
    assert_one_line_error(result, "ptb.{train,valid,test}.txt or {train,valid,test}.txt or "
                                  "wiki.{train,valid,test}.tokens")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------
# The exported SavedModel, used from a process that imports only TensorFlow

USE_EXPORTED = r"""
import json, sys
import tensorflow as tf

folder, context, stream = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
next_word = tf.saved_model.load(folder).signatures["next_word"]
words = open(folder + "/vocabulary.txt", encoding="utf-8").read().splitlines()
inputs = next_word.structured_input_signature[1]
zero = {name: tf.zeros([1, spec.shape[1]]) for name, spec in inputs.items()
        if name.startswith("state_")}

# The words after a context read as a sentence (after <eos>), as ptb.next_word does.
out = next_word(word_ids=tf.constant([[words.index("<eos>")]]), **zero)
state = {name: out[name] for name in zero}
out = next_word(word_ids=tf.constant([[words.index(word) for word in context]]), **state)
probabilities = tf.exp(out["log_probs"][0]).numpy().tolist()

# A stream read one word at a time, the state carried: log p of each next word.
state, log_probs = zero, []
for word, following in zip(stream[:-1], stream[1:]):
    out = next_word(word_ids=tf.constant([[word]]), **state)
    state = {name: out[name] for name in zero}
    log_probs.append(float(out["log_probs"][0, following]))
dtypes = sorted({spec.dtype.name for spec in next_word.structured_outputs.values()})
print(json.dumps(dict(words=words, dtypes=dtypes, probabilities=probabilities, log_probs=log_probs,
                      states=sorted(zero), batch=next_word(word_ids=tf.zeros([3, 2], tf.int32),
                      **{n: tf.zeros([3, s.shape[1]]) for n, s in inputs.items()
                         if n.startswith("state_")})["log_probs"].shape.as_list(),
                      package=sorted(set(sys.modules) & {"ptb", "common"}))))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(LanguageModel, export folder) of a tied two-layer model on the made-up corpus."""
    folder = tmp_path_factory.mktemp("export")
    data_path = write_wikitext(folder / "wikitext")
    ptb_word_lm.train_and_evaluate(CONFIG, str(data_path), save_path=folder / "run",
                                   vocab_size=VOCAB_SIZE, seed=2)
    result = run_module("ptb.export", f"--save_path={folder / 'run'}", str(folder / "exported"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "signature 'next_word'" in result.stdout
    return language_model.load(folder / "run"), folder / "exported", data_path


def test_the_exported_model_agrees_with_next_word_and_scoring_from_plain_tensorflow(exported):
    lm, folder, data_path = exported
    context = ["word1", "café", "word3"]
    stream = reader.read_corpus(str(data_path), VOCAB_SIZE).test[:60]
    result = subprocess.run([sys.executable, "-c", USE_EXPORTED, str(folder), json.dumps(context),
                             json.dumps(stream.tolist())],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    used = json.loads(result.stdout.strip().splitlines()[-1])
    assert used["package"] == []  # this package was not needed
    assert tuple(used["words"]) == lm.words
    assert used["states"] == ["state_0", "state_1", "state_2", "state_3"]
    assert used["batch"] == [3, VOCAB_SIZE]
    assert used["dtypes"] == ["float32"]
    # The weights are saved once: the checkpoint holds as many numbers as the model.
    saved = tf.train.load_checkpoint(str(folder / "variables" / "variables"))
    assert sum(np.prod(shape) for name, shape in saved.get_variable_to_shape_map().items()
               if name != "_CHECKPOINTABLE_OBJECT_GRAPH") == lm.model.count_params()

    # ptb.next_word's probabilities, every word of the vocabulary, to 1e-5.
    expected = dict(next_word.next_words(lm, " ".join(context), top_k=len(lm.words)))
    np.testing.assert_allclose(used["probabilities"], [expected[word] for word in lm.words],
                               atol=1e-5)
    # Word by word with the state carried: the stream scoring of ptb.score and the trainer.
    stream_log_probs = engine.stream_log_probs(lm.model, lm.config, stream)
    np.testing.assert_allclose(used["log_probs"], stream_log_probs, atol=1e-5)


# TensorFlow 1's session-based loader, the one TF Serving and saved_model_cli use:
# the signature's tensors fed and fetched by name in a Session.
USE_IN_A_SESSION = r"""
import json, sys
import numpy as np
import tensorflow as tf

folder, stream = sys.argv[1], json.loads(sys.argv[2])
with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], folder)
    signature = meta_graph.signature_def["next_word"]
    inputs = {name: info.name for name, info in signature.inputs.items()}
    outputs = {name: info.name for name, info in signature.outputs.items()}
    state = {name: np.zeros([1, info.tensor_shape.dim[1].size], np.float32)
             for name, info in signature.inputs.items() if name.startswith("state_")}
    # A stream read one word at a time, the state carried: log p of each next word.
    log_probs = []
    for word, following in zip(stream[:-1], stream[1:]):
        feed = {inputs["word_ids"]: [[word]], **{inputs[name]: state[name] for name in state}}
        out = session.run(outputs, feed)
        state = {name: out[name] for name in state}
        log_probs.append(float(out["log_probs"][0, following]))
dtypes = sorted({tf.dtypes.as_dtype(info.dtype).name for info in signature.outputs.values()})
print(json.dumps(dict(log_probs=log_probs, dtypes=dtypes, outputs=sorted(outputs),
                      signatures=sorted(meta_graph.signature_def))))
"""


def use_in_a_session(folder, stream):
    result = subprocess.run([sys.executable, "-c", USE_IN_A_SESSION, str(folder),
                             json.dumps([int(word) for word in stream])],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_exported_model_loads_into_a_session_as_a_server_loads_it(exported):
    lm, folder, data_path = exported
    stream = reader.read_corpus(str(data_path), VOCAB_SIZE).test[:60]
    used = use_in_a_session(folder, stream)
    assert used["signatures"] == ["__saved_model_init_op", "next_word", "serving_default"]
    assert used["outputs"] == ["log_probs", "state_0", "state_1", "state_2", "state_3"]
    assert used["dtypes"] == ["float32"]
    np.testing.assert_allclose(used["log_probs"],
                               engine.stream_log_probs(lm.model, lm.config, stream),
                               atol=1e-5)


def test_saved_model_cli_runs_the_exported_model(exported, tmp_path):
    """A batch of two contexts, one from the zero state and one from the state
    after an <eos>, through `saved_model_cli run` (inputs and outputs as .npy)."""
    lm, folder, _ = exported
    contexts = (["<eos>", "word1", "café"], ["word3", "word0", "word4"])
    word_ids = np.array([[lm.word_to_id[word] for word in context] for context in contexts],
                        dtype=np.int32)
    _, after_eos = lm.sentence_start()
    state = [np.concatenate([np.zeros_like(part), part]) for part in after_eos]
    np.savez(tmp_path / "inputs.npz", word_ids=word_ids,
             **{f"state_{i}": part for i, part in enumerate(state)})
    inputs = ";".join(f"{name}={tmp_path / 'inputs.npz'}[{name}]"
                      for name in ["word_ids"] + [f"state_{i}" for i in range(len(state))])
    saved_model_cli = pathlib.Path(sys.executable).with_name("saved_model_cli")
    result = subprocess.run([str(saved_model_cli), "run", "--dir", str(folder),
                             "--tag_set", "serve", "--signature_def", export.SIGNATURE,
                             "--inputs", inputs, "--outdir", str(tmp_path / "outputs")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    outputs = {path.stem: np.load(path) for path in (tmp_path / "outputs").glob("*.npy")}
    assert sorted(outputs) == ["log_probs", "state_0", "state_1", "state_2", "state_3"]
    for row in range(2):
        log_probs, next_state = lm.next_log_probs(
            word_ids[row], state=[part[row:row + 1] for part in state])
        np.testing.assert_allclose(outputs["log_probs"][row], log_probs, atol=1e-5)
        for i, part in enumerate(next_state):
            np.testing.assert_allclose(outputs[f"state_{i}"][row], part[0], atol=1e-5)


def test_tflite_converts_the_exported_model_with_tensorflow_ops_allowed(exported):
    """The LSTM's loop needs TensorFlow ops (SELECT_TF_OPS). Running the result
    needs the Flex delegate, which the Python interpreter of the tensorflow wheel
    lacks: the conversion and its signature are what is checked."""
    _, folder, _ = exported
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder),
                                                         signature_keys=[export.SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    flatbuffer = converter.convert()
    with warnings.catch_warnings():  # tf.lite.Interpreter is deprecated in favour of LiteRT
        warnings.simplefilter("ignore")
        signatures = tf.lite.Interpreter(model_content=flatbuffer).get_signature_list()
    states = ["state_0", "state_1", "state_2", "state_3"]
    assert signatures == {export.SIGNATURE: {"inputs": states + ["word_ids"],
                                             "outputs": ["log_probs"] + states}}


def test_export_refuses_an_existing_folder_and_leaves_nothing_half_written(exported, tmp_path,
                                                                          forked):
    lm, folder, _ = exported
    run = folder.parent / "run"
    result = forked.run("ptb.export", f"--save_path={run}", str(folder))
    assert_one_line_error(result, f"{folder}: already exists")
    blocked = tmp_path / "file"
    blocked.write_text("")
    result = forked.run("ptb.export", f"--save_path={run}", str(blocked / "exported"))
    assert_one_line_error(result, "cannot create it")
    assert [path.name for path in tmp_path.iterdir()] == ["file"]


def test_a_mixed_precision_model_exports_float32_state(tmp_path):
    """A GRU takes the plain path, so its saved model computes in Keras'
    mixed_bfloat16; the export still takes and gives float32."""
    data_path = write_wikitext(tmp_path / "wikitext")
    run = tmp_path / "run"
    # Any CPU: made to report bfloat16 dot products (tests/worker_run.py).
    trained = run_module("tests.worker_run", tmp_path / "worker", "--bfloat16_cpu=yes",
                         "ptb.ptb_word_lm", f"--data_path={data_path}", f"--save_path={run}",
                         "--model=test", "--rnn_cell=gru", "--mixed_precision")
    assert trained.returncode == 0, trained.stderr[-2000:]
    result = run_module("ptb.export", f"--save_path={run}", str(tmp_path / "exported"))
    assert result.returncode == 0, result.stderr[-2000:]
    used = subprocess.run([sys.executable, "-c", USE_EXPORTED, str(tmp_path / "exported"),
                           json.dumps(["word1"]), json.dumps([1, 2, 3])],
                          capture_output=True, text=True, timeout=300)
    assert used.returncode == 0, used.stderr[-2000:]
    assert json.loads(used.stdout.strip().splitlines()[-1])["dtypes"] == ["float32"]
    assert use_in_a_session(tmp_path / "exported", [1, 2, 3])["dtypes"] == ["float32"]


def test_a_failed_export_leaves_nothing_half_written(exported, tmp_path, monkeypatch):
    lm, _, _ = exported

    class FullDisk:
        def write_out(self, folder, **kwargs):
            (pathlib.Path(folder) / "saved_model.pb").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "next_word_archive", lambda lm: FullDisk())
    with pytest.raises(RunFailure, match=r"out: cannot write it \(No space left on device\); "
                                         "nothing was exported"):
        export.export(lm, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
