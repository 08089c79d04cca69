"""ptb/reader.py: word ids, vocabulary and windows, on a tiny corpus and on real PTB."""


import re

import numpy as np
import pytest

from common.cli import UserInputError
from ptb import reader
from tests.conftest import assert_one_line_error

RAW = [4, 3, 2, 1, 0, 5, 6, 1, 1, 1, 1, 0, 3, 4, 1]


def windows(raw, batch_size, num_steps):
    return [(x.numpy().tolist(), y.numpy().tolist())
            for x, y in reader.ptb_producer(raw, batch_size, num_steps)]


def test_producer_windows_by_hand():
    got = windows(RAW, batch_size=3, num_steps=2)
    assert got == [
        ([[4, 3], [5, 6], [1, 0]], [[3, 2], [6, 1], [0, 3]]),
        ([[2, 1], [1, 1], [3, 4]], [[1, 0], [1, 1], [4, 1]]),
    ]


def test_producer_shapes_dtype_and_epoch_size():
    raw = np.arange(1000)
    dataset = reader.ptb_producer(raw, batch_size=7, num_steps=5)
    expected = ((1000 // 7) - 1) // 5
    assert reader.epoch_size(1000, 7, 5) == expected == int(dataset.cardinality())
    x, y = next(iter(dataset))
    assert x.shape == y.shape == (7, 5) and x.dtype.name == "int32"
    # Row r of each window continues row r of the previous window.
    all_x = np.concatenate([x.numpy() for x, _ in dataset], axis=1)
    row_length = 1000 // 7
    np.testing.assert_array_equal(all_x[3], raw[3 * row_length: 3 * row_length + expected * 5])


def write_corpus(folder, train="a b c\na b\na\n", valid="a b\nc z\n", test="b a\n"):
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"ptb.{split}.txt").write_text(text)
    return str(folder)


def test_vocabulary_order_and_held_out_words_read_as_unk(tmp_path):
    data_path = write_corpus(tmp_path)
    id_to_word = list(reader.read_corpus(data_path).words)
    # counts: a 3, <eos> 3, b 2, c 1; ties broken alphabetically ("<" < "a");
    # "z" of the validation text needs an <unk>, which the training text lacks: last.
    assert id_to_word == ["<eos>", "a", "b", "c", "<unk>"]
    corpus = reader.read_corpus(data_path)
    assert corpus.layout == "PTB" and corpus.vocab_size == 5
    assert corpus.train.tolist() == [1, 2, 3, 0, 1, 2, 0, 1, 0]
    assert corpus.valid.tolist() == [1, 2, 0, 3, 4, 0]
    assert corpus.test.tolist() == [2, 1, 0]
    assert corpus.unknown == {"train": 0, "valid": 1, "test": 0}
    assert "valid: 1 words (16.67%) outside the vocabulary, read as <unk>" in corpus.describe()


def test_unigram_perplexity_by_hand(tmp_path):
    corpus = reader.read_corpus(write_corpus(tmp_path))
    # Training counts of <eos> a b c <unk>, each plus one: 4 4 3 2 1 of 14. The
    # validation ids [a, b, <eos>, c, <unk>, <eos>] have probabilities 4 3 4 2 1 4 (/ 14).
    by_hand = 14 / (4 * 3 * 4 * 2 * 1 * 4) ** (1 / 6)
    assert corpus.unigram_perplexity("valid") == pytest.approx(by_hand)
    assert corpus.unigram_perplexity("train") < corpus.unigram_perplexity("valid")


def test_nothing_held_out_nothing_added(tmp_path):
    """The tutorial's vocabulary: every training word, no <unk> of the reader's own."""
    data_path = write_corpus(tmp_path, valid="a b\nc\n")
    train, valid, test, vocab_size = reader.ptb_raw_data(data_path)
    assert vocab_size == 4 and valid.tolist() == [1, 2, 0, 3, 0]


@pytest.mark.parametrize("layout, pattern", [
    ("PTB", "ptb.{}.txt"), ("plain", "{}.txt"), ("WikiText", "wiki.{}.tokens")])
def test_each_layout_reads_the_same_corpus(tmp_path, layout, pattern):
    for split, text in (("train", "a b c\na b\na\n"), ("valid", "a b\n"), ("test", "b a\n")):
        (tmp_path / pattern.format(split)).write_text(text)
    corpus = reader.read_corpus(str(tmp_path))
    assert corpus.layout == layout
    assert corpus.words == ("<eos>", "a", "b", "c")
    assert corpus.train.tolist() == [1, 2, 3, 0, 1, 2, 0, 1, 0]
    assert pattern.format("train") in corpus.describe()


def test_vocab_size_keeps_the_most_frequent_and_counts_the_rest_as_unk(tmp_path):
    # counts: a 5, <eos> 4, b 3, <unk> 1, c 2, d 1, e 1
    data_path = write_corpus(tmp_path, train="a a b c\na <unk> b\na d b\na c e\n",
                             valid="a e\n", test="d a\n")
    corpus = reader.read_corpus(data_path, vocab_size=4)
    # Kept: a, <eos>, b; <unk> stands for its own 1 and c, d, e: 5, so it comes first.
    assert corpus.words == ("<unk>", "a", "<eos>", "b")
    assert corpus.train.tolist() == [1, 1, 3, 0, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 0, 0, 2]
    assert corpus.unknown == {"train": 4, "valid": 1, "test": 1}
    # A cap above the number of words keeps them all.
    assert reader.read_corpus(data_path, vocab_size=100).vocab_size == 7
    assert reader.read_corpus(data_path, vocab_size=7).words == reader.read_corpus(data_path).words
    # The smallest: <eos>, which the tools need, and <unk> for everything else.
    assert reader.read_corpus(data_path, vocab_size=2).words == ("<unk>", "<eos>")


def test_vocab_size_counts_the_unk_that_held_out_words_need(tmp_path):
    # 4 training words (<eos>, a, b, c); "z" of the validation text needs an <unk>.
    data_path = write_corpus(tmp_path)
    assert reader.read_corpus(data_path).vocab_size == 5
    capped = reader.read_corpus(data_path, vocab_size=4)
    assert capped.words == ("<eos>", "a", "b", "<unk>")  # <unk>: c, once in training
    assert capped.unknown == {"train": 1, "valid": 2, "test": 0}


@pytest.mark.parametrize("problem, message", [
    ("missing_folder", "no such folder"),
    ("missing_file", "ptb.valid.txt: file not found; the PTB layout needs all three"),
    ("no_corpus", "holds no corpus; it needs ptb.{train,valid,test}.txt or "
                  "{train,valid,test}.txt or wiki.{train,valid,test}.tokens"),
    ("empty_file", "ptb.test.txt: the file is empty"),
    ("no_known_word", "ptb.valid.txt: none of its words"),
    ("not_utf8", "ptb.train.txt: not UTF-8"),
])
def test_bad_inputs_name_the_file(tmp_path, problem, message):
    data_path = write_corpus(tmp_path)
    if problem == "missing_folder":
        data_path = str(tmp_path / "nowhere")
    elif problem == "missing_file":
        (tmp_path / "ptb.valid.txt").unlink()
    elif problem == "no_corpus":
        for split in reader.SPLITS:
            (tmp_path / f"ptb.{split}.txt").rename(tmp_path / f"{split}.text")
    elif problem == "empty_file":
        (tmp_path / "ptb.test.txt").write_text("")
    elif problem == "no_known_word":
        (tmp_path / "ptb.valid.txt").write_text("x y")
    elif problem == "not_utf8":
        (tmp_path / "ptb.train.txt").write_bytes(b"a b \xff\xfe c\n")
    with pytest.raises(UserInputError, match=re.escape(message)):
        reader.ptb_raw_data(data_path)


def test_too_short_for_the_window():
    with pytest.raises(UserInputError, match="too few for batch_size=3 x num_steps=5"):
        reader.ptb_producer(RAW, batch_size=3, num_steps=5, name="x")


def test_cli_reports_bad_data_in_one_line(tmp_path, forked):
    write_corpus(tmp_path)
    (tmp_path / "ptb.test.txt").unlink()
    result = forked.run("ptb.ptb_word_lm", f"--data_path={tmp_path}", "--model=test",
                        f"--save_path={tmp_path / 'run'}")
    assert_one_line_error(result, "ptb.test.txt: file not found")
    assert not (tmp_path / "run").exists()  # nothing of a run that never began


def test_real_ptb_sizes(data_dir):
    train, valid, test, vocab_size = reader.ptb_raw_data(str(data_dir / "ptb"))
    assert (len(train), len(valid), len(test), vocab_size) == (929_589, 73_760, 82_430, 10_000)
    assert reader.read_corpus(str(data_dir / "ptb")).words[:3] == ("the", "<unk>", "<eos>")
    assert train.min() == 0 and train.max() == 9_999


def test_real_ptb_in_the_other_layouts_and_capped_at_its_size_reads_the_same(data_dir, tmp_path):
    ptb = reader.read_corpus(str(data_dir / "ptb"))
    for split in reader.SPLITS:
        (tmp_path / f"wiki.{split}.tokens").symlink_to(data_dir / "ptb" / f"ptb.{split}.txt")
    as_wikitext = reader.read_corpus(str(tmp_path), vocab_size=10_000)
    assert as_wikitext.layout == "WikiText" and as_wikitext.words == ptb.words
    for split in reader.SPLITS:
        np.testing.assert_array_equal(getattr(as_wikitext, split), getattr(ptb, split))
    assert ptb.unknown == as_wikitext.unknown == {"train": 0, "valid": 0, "test": 0}


def test_offline_download_names_the_cause_and_says_to_pass_data_path(monkeypatch, tmp_path):
    # Keras' get_file itself, with no network: the error it raises, whatever its form.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(reader, "PTB_URL", "http://unreachable.invalid/simple-examples.tgz")
    with pytest.raises(UserInputError) as error:
        reader.ptb_raw_data(None)
    message = str(error.value)
    assert message.startswith("could not download the PTB data from http://unreachable.invalid/")
    assert "pass --data_path=DIR" in message
    cause = message.split("simple-examples.tgz (", 1)[1].split("); ", 1)[0]
    assert "Errno" in cause and "Exception" != cause and "URL fetch failure" not in cause
