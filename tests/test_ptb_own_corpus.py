"""A corpus of one's own (WikiText layout, a capped vocabulary), a tied model trained
on it, the tools on that run, and the model exported and used from plain TensorFlow."""

import dataclasses
import errno
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from common.cli import RunFailure
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


def test_own_corpus_trains_scores_generates_and_predicts_from_the_command_line(tmp_path):
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

    scored = run_module("ptb.score", f"--save_path={run}", stdin="word0 word1 café\nnever seen\n")
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert "read as <unk>: never, seen" in scored.stdout + scored.stderr
    generated = run_module("ptb.generate", f"--save_path={run}", "--length=20", "--seed=1")
    assert generated.returncode == 0, generated.stderr[-2000:]
    vocabulary = set(json.loads((run / "vocabulary.json").read_text()))
    assert set(generated.stdout.split()) <= vocabulary and len(generated.stdout.split()) > 5
    predicted = run_module("ptb.next_word", f"--save_path={run}", "--top_k=3", "word0")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert [line.split("\t")[0] in vocabulary for line in predicted.stdout.splitlines()] == [
        True] * 3


def test_a_folder_without_a_corpus_is_one_line_naming_the_layouts(tmp_path):
    (tmp_path / "train.text").write_text("a b\n")
    result = run_module("ptb.ptb_word_lm", f"--data_path={tmp_path}", "--model=test",
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
    # The weights are saved once.
    saved_bytes = sum(path.stat().st_size for path in (folder / "variables").iterdir())
    assert saved_bytes < 1.5 * 4 * lm.model.count_params() + 10_000

    # ptb.next_word's probabilities, every word of the vocabulary, to 1e-5.
    expected = dict(next_word.next_words(lm, " ".join(context), top_k=len(lm.words)))
    np.testing.assert_allclose(used["probabilities"], [expected[word] for word in lm.words],
                               atol=1e-5)
    # Word by word with the state carried: the stream scoring of ptb.score and the trainer.
    stream_log_probs = ptb_word_lm.stream_log_probs(lm.model, lm.config, stream)
    np.testing.assert_allclose(used["log_probs"], stream_log_probs, atol=1e-5)


def test_export_refuses_an_existing_folder_and_leaves_nothing_half_written(exported, tmp_path):
    lm, folder, _ = exported
    run = folder.parent / "run"
    result = run_module("ptb.export", f"--save_path={run}", str(folder))
    assert_one_line_error(result, f"{folder}: already exists")
    blocked = tmp_path / "file"
    blocked.write_text("")
    result = run_module("ptb.export", f"--save_path={run}", str(blocked / "exported"))
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


def test_a_failed_export_leaves_nothing_half_written(exported, tmp_path, monkeypatch):
    lm, _, _ = exported

    def full_disk(module, folder, **kwargs):
        (pathlib.Path(folder) / "saved_model.pb").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export.tf.saved_model, "save", full_disk)
    with pytest.raises(RunFailure, match=r"out: cannot write it \(No space left on device\); "
                                         "nothing was exported"):
        export.export(lm, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
