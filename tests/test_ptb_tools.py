"""What a trained PTB model is for: ptb.score, ptb.generate, ptb.next_word, the
other recurrent cells, and what every PTB run folder holds (vocabulary,
perplexity.png, TensorBoard event files)."""

import dataclasses
import json
import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from common.cli import UserInputError
from ptb import benchmark
from ptb import engine
from ptb import fast_cpu
from ptb import generate
from ptb import language_model
from ptb import next_word
from ptb import ptb_word_lm
from ptb import reader
from ptb import report
from ptb import score
from tests.conftest import (assert_one_line_error, read_metrics, run_module,
                            tensorboard_summaries)

# 38 words, <unk> and <eos>: a 40-word vocabulary, trained in seconds.
TINY = dataclasses.replace(ptb_word_lm.PRESETS["test"], vocab_size=40, hidden_size=8,
                           batch_size=4, num_steps=5, epochs=2, epochs_at_full_lr=1)
YOU_SAY = "you say goodbye and i say hello ."


def write_corpus(folder, train_lines, other_lines):
    folder.mkdir()
    for split, lines in (("train", train_lines), ("valid", other_lines), ("test", other_lines)):
        (folder / f"ptb.{split}.txt").write_text("\n".join(lines) + "\n")
    return str(folder)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(run folder, data folder, the trainer's metrics) of a tiny model on random text."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(38)] + ["<unk>"]
    lines = lambda count: [" ".join(rng.choice(words, size=rng.integers(3, 12)))  # noqa: E731
                           for _ in range(count)]
    folder = tmp_path_factory.mktemp("tiny")
    data_path = write_corpus(folder / "data", lines(400), lines(30))
    metrics = ptb_word_lm.train_and_evaluate(TINY, data_path, save_path=folder / "run", seed=1)
    return folder / "run", data_path, metrics


@pytest.fixture(scope="module")
def you_say_model(tmp_path_factory):
    """The corpus of "Deep Learning from Scratch 2", learnt by a one-layer LSTM."""
    folder = tmp_path_factory.mktemp("you_say")
    data_path = write_corpus(folder / "data", [YOU_SAY] * 100, [YOU_SAY] * 5)
    config = dataclasses.replace(TINY, vocab_size=8, hidden_size=16, num_steps=8, epochs=5,
                                 epochs_at_full_lr=5, max_grad_norm=5.0)
    ptb_word_lm.train_and_evaluate(config, data_path, save_path=folder / "run")
    return language_model.load(folder / "run")


def log_softmax_by_hand(lm, ids):
    """log p(ids[i + 1] | ids[:i + 1]), from the model called once on the whole
    sequence from the zero state, normalised with numpy."""
    state = engine.zero_state(lm.model, 1)
    logits = lm.model([tf.constant(ids[None, :-1]), *state])[0].numpy()[0].astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return log_probs[np.arange(len(ids) - 1), ids[1:]]


# ----------------------------------------------------------------------------
# The run folder


def test_run_folder_keeps_the_vocabulary_a_picture_and_tensorboard_logs(tiny_run):
    run, data_path, metrics = tiny_run
    words = json.loads((run / "vocabulary.json").read_text())
    assert tuple(words) == reader.read_corpus(data_path).words and len(words) == 40
    assert (run / "perplexity.png").stat().st_size > 10_000

    summaries = tensorboard_summaries(run / "tensorboard")
    history = metrics["history"]
    for tag, key in (("train/epoch_perplexity", "train_perplexity"),
                     ("validation/epoch_perplexity", "valid_perplexity"),
                     ("train/epoch_learning_rate", "learning_rate"),
                     ("train/epoch_words_per_second", "words_per_second")):
        assert summaries[tag] == [(epoch, pytest.approx(history[epoch][key], rel=1e-6))
                                  for epoch in range(2)], tag
    train_loss = [value for _, value in summaries["train/epoch_loss"]]
    assert np.exp(train_loss) == pytest.approx([e["train_perplexity"] for e in history])
    assert summaries["test/test_perplexity"] == [(1, pytest.approx(metrics["test_perplexity"]))]
    assert "| hidden_size | 8 |" in summaries["train/settings"][0][1]


def test_report_compares_runs_and_refuses_a_bad_argument(tiny_run, tmp_path, forked):
    run, _, _ = tiny_run
    (tmp_path / "h.csv").write_text((run / "history.csv").read_text())
    out = tmp_path / "cells.png"
    result = run_module("ptb.report", f"--out={out}", f"lstm={run}", f"csv={tmp_path / 'h.csv'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.stat().st_size > 10_000
    histories = [report.read_history(run), report.read_history(tmp_path / "h.csv")]
    assert [e["valid_perplexity"] for e in histories[0]] == pytest.approx(
        [e["valid_perplexity"] for e in histories[1]])
    assert_one_line_error(forked.run("ptb.report", str(run)), "write label=path")
    (tmp_path / "mnist.csv").write_text("epoch,accuracy\n1,0.9\n")  # not a PTB history
    with pytest.raises(UserInputError, match="mnist.csv: no readable PTB per-epoch history"):
        report.read_history(tmp_path / "mnist.csv")


# ----------------------------------------------------------------------------
# ptb.score


def test_scoring_the_test_file_as_one_stream_gives_the_trainers_test_perplexity(tiny_run):
    run, data_path, metrics = tiny_run
    lm = language_model.load(run)
    lines = open(f"{data_path}/ptb.test.txt").read().splitlines()
    scores, unknown = score.score_sentences(lm, lines)
    perplexity, words = score.total_perplexity(scores)
    test_ids = reader.ptb_raw_data(data_path)[2]
    assert words == len(test_ids) - 1 and unknown == []
    assert perplexity == pytest.approx(metrics["test_perplexity"], rel=1e-9)
    # Per line: the stream's log-probabilities, cut where each line's <eos> is.
    by_hand = log_softmax_by_hand(lm, test_ids)
    # Each line's words and its <eos>, but for the very first word (nothing precedes it).
    assert [s.words for s in scores] == [len(line.split()) + 1 - (i == 0)
                                         for i, line in enumerate(lines)]
    ends = np.cumsum([s.words for s in scores])
    assert [s.log_prob for s in scores] == pytest.approx(
        [by_hand[end - s.words:end].sum() for s, end in zip(scores, ends)], rel=1e-5)
    first = scores[0]
    assert first.least_expected == lm.words[test_ids[1 + int(np.argmin(by_hand[:first.words]))]]


def test_reset_each_sentence_equals_scoring_each_line_alone(tiny_run):
    lm = language_model.load(tiny_run[0])
    lines = ["w1 w2 w3", "w4 w5", "w6 w7 w8 w9"]
    together, _ = score.score_sentences(lm, lines, reset_each_sentence=True)
    for line, scored in zip(lines, together):
        (alone,), _ = score.score_sentences(lm, [line], reset_each_sentence=True)
        assert alone == scored
        # Every word and the <eos> are scored, read after an <eos> from the zero state.
        ids = np.array([lm.word_to_id[w] for w in ["<eos>", *line.split(), "<eos>"]])
        assert scored.words == len(ids) - 1
        assert scored.log_prob == pytest.approx(log_softmax_by_hand(lm, ids).sum(), rel=1e-5)
    # In one stream the state runs on: other numbers than from a fresh start.
    streamed, _ = score.score_sentences(lm, lines)
    assert streamed[1].log_prob != pytest.approx(together[1].log_prob)


def test_words_outside_the_vocabulary_are_read_as_unk_and_counted(tiny_run):
    lm = language_model.load(tiny_run[0])
    (with_unknown,), unknown = score.score_sentences(lm, ["W1 zebra w2"],
                                                     reset_each_sentence=True)
    (with_unk,), _ = score.score_sentences(lm, ["w1 <unk> w2"], reset_each_sentence=True)
    assert unknown == ["zebra"] and with_unknown.log_prob == with_unk.log_prob  # lower-cased too


def test_score_cli_prints_a_row_per_line_and_the_perplexity(tiny_run, tmp_path, forked):
    run, data_path, metrics = tiny_run
    # Processes of their own (conftest.ForkedRuns); a fresh ptb.score runs in
    # test_ptb_training.py.
    result = forked.run("ptb.score", f"--save_path={run}", f"{data_path}/ptb.test.txt")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "log_prob\tperplexity\twords\tleast_expected\tsentence"
    assert len(lines) == 1 + 30 + 2
    test_words = sum(len(line.split()) + 1 for line in open(f"{data_path}/ptb.test.txt"))
    assert lines[-1] == f"perplexity {metrics['test_perplexity']:.2f} over {test_words - 1:,} words"
    result = forked.run("ptb.score", f"--save_path={run}", "--reset_each_sentence",
                        stdin="w1 w2 Zebra\nw3 aardvark zebra\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3 of the words were outside the vocabulary and read as <unk>: Zebra, aardvark, zebra" \
        in result.stdout
    assert result.stdout.strip().splitlines()[-1].endswith("over 8 words")


# ----------------------------------------------------------------------------
# ptb.generate and ptb.next_word


def test_generation_is_reproducible_with_a_seed_and_uses_vocabulary_words(tiny_run):
    lm = language_model.load(tiny_run[0])
    first = generate.generate(lm, prime="w1 w2", length=30, seed=5)
    assert len(first) == 30 and set(first) <= set(lm.words)
    assert generate.generate(lm, prime="w1 w2", length=30, seed=5) == first
    assert generate.generate(lm, prime="w1 w2", length=30, seed=6) != first
    # top_k=1 is greedy: the most likely word each time, whatever the seed.
    greedy = generate.generate(lm, prime="w1 w2", length=5, top_k=1, seed=1)
    assert generate.generate(lm, prime="w1 w2", length=5, top_k=1, seed=2) == greedy
    _, state = lm.sentence_start()
    log_probs, state = lm.next_log_probs(lm.encode("w1 w2")[0], state)
    assert greedy[0] == lm.words[int(np.argmax(log_probs))]
    assert generate.as_text(["a", "<eos>", "b", "c", "<eos>"]) == "a\nb c"


def test_sampling_follows_temperature_and_top_k():
    log_probs = np.log([0.5, 0.3, 0.15, 0.05])
    rng = np.random.default_rng(0)
    draws = [generate.sample(log_probs, 1.0, 2, rng) for _ in range(4000)]
    assert set(draws) == {0, 1}
    assert np.mean(np.array(draws) == 0) == pytest.approx(0.5 / 0.8, abs=0.03)
    cold = [generate.sample(log_probs, 0.05, None, rng) for _ in range(200)]
    assert cold.count(0) > 190
    # A temperature so small that dividing overflows: greedy, and no numpy warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert {generate.sample(log_probs, 1e-320, None, rng) for _ in range(20)} == {0}


def test_next_words_are_sorted_probabilities(tiny_run):
    lm = language_model.load(tiny_run[0])
    top = next_word.next_words(lm, "w3 w4", top_k=40)
    probabilities = [p for _, p in top]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5) and len(top) == 40
    ids = np.array([lm.word_to_id[w] for w in ["<eos>", "w3", "w4"]])
    state = engine.zero_state(lm.model, 1)
    logits = lm.model([tf.constant(ids[None]), *state])[0].numpy()[0, -1]
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert dict(top) == pytest.approx(dict(zip(lm.words, expected)), rel=1e-4, abs=1e-7)
    top3 = next_word.next_words(lm, "w3 w4", top_k=3)
    assert top3 == top[:3] and sum(p for _, p in top3) <= 1


def test_you_say_goodbye_and_i_say_hello(you_say_model, tmp_path):
    top = next_word.next_words(you_say_model, "you say", top_k=3)
    assert [word for word, _ in top[:2]] == ["goodbye", "hello"], top
    assert top[0][1] > 0.5


def test_tools_on_the_command_line(tiny_run, forked):
    run = tiny_run[0]
    result = forked.run("ptb.next_word", f"--save_path={run}", "--top_k=3", "w3 w4")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert len(rows) == 3 and all(0 <= float(p) <= 1 and w.startswith(("w", "<")) for w, p in rows)
    generate_args = (f"--save_path={run}", "--prime=w1 W2", "--length=12", "--seed=3",
                     "--top_k=5", "--temperature=0.8")
    result = run_module("ptb.generate", *generate_args)
    assert result.returncode == 0, result.stderr[-2000:]
    # A forked process (conftest.ForkedRuns) prints what a fresh one does.
    in_a_fork = forked.run("ptb.generate", *generate_args)
    assert (in_a_fork.returncode, in_a_fork.stdout, in_a_fork.stderr) == (
        result.returncode, result.stdout, result.stderr)
    lm = language_model.load(run)
    expected = generate.generate(lm, "w1 w2", 12, temperature=0.8, top_k=5, seed=3)
    assert result.stdout.strip() == generate.as_text(["w1", "w2", *expected])


# (module, arguments, what the error line must say); {run} is the tiny model's folder.
BAD_INPUTS = [
    ("ptb.next_word", ["--save_path={missing}", "you"], "--save_path={missing}: no model.keras"),
    ("ptb.score", ["--save_path={empty}", "-"], "--save_path={empty}: no model.keras"),
    ("ptb.generate", ["--save_path={run}", "--prime="], "--prime: empty"),
    ("ptb.generate", ["--save_path={run}", "--prime=zebra Aardvark"],
     "no word of it is in the vocabulary (unknown: zebra, Aardvark)"),
    ("ptb.generate", ["--save_path={run}", "--temperature=0"],
     "--temperature=0.0: must be a number above 0"),
    ("ptb.next_word", ["--save_path={run}", "--top_k=0", "w1"], "--top_k=0: must be between 1"),
    ("ptb.next_word", ["--save_path={run}", "--top_k=41", "w1"], "--top_k=41: must be between 1"),
    ("ptb.score", ["--save_path={run}", "{missing}"], "{missing}: cannot read it"),
    ("ptb.score", ["--save_path={run}", "{blank}"], "{blank}: no words to score"),
]


def test_bad_input_is_one_line_and_exit_2(tiny_run, tmp_path, forked):
    names = dict(run=tiny_run[0], missing=tmp_path / "missing", empty=tmp_path / "empty",
                 blank=tmp_path / "blank.txt")
    names["empty"].mkdir()
    names["blank"].write_text("\n  \n")
    for module, args, expected in BAD_INPUTS:  # each a process of its own (conftest.ForkedRuns)
        result = forked.run(module, *[arg.format(**names) for arg in args], stdin="")
        assert_one_line_error(result, expected.format(**names))


# ----------------------------------------------------------------------------
# The other recurrent cells


@pytest.mark.parametrize("cell", ["gru", "simple_rnn"])
def test_each_cell_builds_trains_a_step_and_keeps_cudnn_arguments(cell):
    config = dataclasses.replace(TINY, rnn_cell=cell, num_layers=2, keep_prob=0.5)
    strategy = tf.distribute.get_strategy()
    assert fast_cpu.path_for(strategy, config) is fast_cpu.PLAIN  # XLA slows Keras' GRU down
    steps = benchmark.build_trainer(config, strategy)
    model = steps.model
    assert len(model.inputs) == 1 + 2 and len(model.outputs) == 1 + 2  # one state per layer
    layer_type = {"gru": keras.layers.GRU, "simple_rnn": keras.layers.SimpleRNN}[cell]
    for layer in (f"{cell}_0", f"{cell}_1"):
        rnn = model.get_layer(layer)
        assert type(rnn) is layer_type and not rnn.unroll and rnn.cell.recurrent_dropout == 0
        assert not rnn.cell.bias.numpy().any()
        if cell == "gru":  # Keras takes the cuDNN kernel for exactly these arguments
            assert rnn.use_cudnn == "auto" and rnn.cell.reset_after and rnn.cell.use_bias
            assert rnn.activation is keras.activations.tanh
            assert rnn.recurrent_activation is keras.activations.sigmoid

    train_step, eval_step, initial_state = steps.train_step, steps.eval_step, steps.initial_state
    rng = np.random.default_rng(0)
    inputs, targets = (rng.integers(0, 40, (4, 5), dtype=np.int32) for _ in range(2))
    before = [w.numpy() for w in model.trainable_weights]
    loss, state = train_step(inputs, targets, initial_state())
    assert math.isfinite(float(loss)) and [s.shape for s in state] == [(4, 8), (4, 8)]
    assert all((b != w.numpy()).any() for b, w in zip(before, model.trainable_weights))
    loss_after, _ = eval_step(inputs, targets, initial_state())
    assert float(loss_after) < float(loss)  # one step downhill on the same window


def test_a_gru_run_folder_serves_the_tools(tiny_run, tmp_path):
    _, data_path, _ = tiny_run
    config = dataclasses.replace(TINY, rnn_cell="gru", epochs=1)
    metrics = ptb_word_lm.train_and_evaluate(config, data_path, save_path=tmp_path / "gru")
    lm = language_model.load(tmp_path / "gru")
    assert lm.config == config and lm.model.get_layer("gru_0").__class__ is keras.layers.GRU
    lines = open(f"{data_path}/ptb.test.txt").read().splitlines()
    perplexity, _ = score.total_perplexity(score.score_sentences(lm, lines)[0])
    assert perplexity == pytest.approx(metrics["test_perplexity"], rel=1e-9)
    assert read_metrics(tmp_path / "gru")["settings"]["rnn_cell"] == "gru"


def test_unknown_cell_is_refused():
    with pytest.raises(ValueError, match="rnn_cell='lstm2': choose one of lstm, gru, simple_rnn"):
        ptb_word_lm.build_model(dataclasses.replace(TINY, rnn_cell="lstm2"))


def test_a_prime_of_unknown_words_is_refused_naming_them(tiny_run):
    lm = language_model.load(tiny_run[0])
    with pytest.raises(UserInputError, match=r"unknown: zebra\)"):
        generate.generate(lm, prime="zebra")
    with pytest.raises(UserInputError, match="--temperature=nan: must be a number above 0"):
        generate.generate(lm, temperature=float("nan"))
