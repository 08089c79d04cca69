"""Every entry point ends bad input the same way: one line on stderr naming the
input and what to do, exit status 2, no traceback (common/cli.py).

One test per entry point runs its whole matrix of bad inputs: an unknown flag, a
value absl cannot parse, a choice out of range, stray arguments, a missing data
folder, a flag value out of range, more GPUs than exist, a malformed TF_CONFIG.
Each case is a process of its own, forked from one Python that imported
TensorFlow once (tests/fork_server.py); one case is also run as a fresh
`python -m`, and must end the same.
"""

import pytest

from tests.conftest import assert_one_line_error, run_module

MISSING = "/nonexistent/rnn-tutorials-data"
BAD_TF_CONFIG = {"TF_CONFIG": "{not json"}

# For each case: (arguments, extra environment, what the error line must contain).
# {run} stands for a fresh run folder, so that nothing lands in the repository.
COMMON_CASES = {
    "unknown flag": (["--no_such_flag=1"], None, "Unknown command line flag 'no_such_flag'"),
    "unparsable value": (["--seed=abc"], None, "flag --seed=abc: invalid literal for int()"),
    "stray argument": (["small"], None, "unexpected arguments 'small'"),
    "too many GPUs": (["--num_gpus=99"], None, "--num_gpus=99 asks for more GPUs than"),
    "malformed TF_CONFIG": ([], BAD_TF_CONFIG, "TF_CONFIG='{not json': not valid JSON"),
}

ENTRY_POINTS = {
    "ptb.ptb_word_lm": dict(COMMON_CASES, **{
        "preset out of range": (["--model=huge"], None,
                                "flag --model=huge: value should be one of <small|medium|large|test>"),
        "missing data folder": ([f"--data_path={MISSING}"], None,
                                f"--data_path={MISSING}: no such folder"),
        "epochs out of range": (["--epochs=0"], None, "flag --epochs=0: 0 is not a positive integer"),
        "cell out of range": (["--rnn_cell=lstm2"], None,
                              "flag --rnn_cell=lstm2: value should be one of <lstm|gru|simple_rnn>"),
        "learning rate out of range": (["--learning_rate=0"], None,
                                       "--learning_rate=0.0: must be a finite number above 0"),
        "vocabulary too small": (["--vocab_size=1"], None, "flag --vocab_size=1: 1 is not integer >= 2"),
    }),
    "ptb.benchmark": dict(COMMON_CASES, **{
        "preset out of range": (["--model=huge"], None, "flag --model=huge: value should be one of"),
        "steps out of range": (["--steps=0"], None, "flag --steps=0: 0 is not a positive integer"),
    }),
    "mnist_lstm.train": dict(COMMON_CASES, **{
        "dataset out of range": (["--dataset=digits"], None,
                                 "--dataset=digits: unknown dataset; use one of mnist, fashion_mnist"),
        "missing data folder": ([f"--data_path={MISSING}"], None,
                                f"--data_path={MISSING}: not a folder"),
        "epochs out of range": (["--epochs=0"], None, "flag --epochs=0: 0 is not a positive integer"),
        "evaluate without a run": (["--evaluate"], None, "no model.keras there"),
    }),
    "imdb_sentiment.train": dict(COMMON_CASES, **{
        "rnn out of range": (["--rnn=transformer"], None,
                             "--rnn=transformer: choose one of simple_rnn, lstm, gru"),
        "missing data folder": ([f"--data_path={MISSING}"], None,
                                f"--data_path={MISSING}: no such file or folder"),
        "epochs out of range": (["--epochs=0"], None, "flag --epochs=0: 0 is not a positive integer"),
        "dropout out of range": (["--dropout=1.5"], None, "--dropout=1.5: must be in [0, 1)"),
    }),
    "imdb_sentiment.compare": dict(COMMON_CASES, **{
        "padding out of range": (["--padding=middle"], None,
                                 "--padding=middle: choose one of pre, post"),
        "one model asked of compare": (["--rnn=gru"], None, "--rnn: compare trains all three"),
        "missing data folder": ([f"--data_path={MISSING}"], None,
                                f"--data_path={MISSING}: no such file or folder"),
        "max_examples out of range": (["--max_examples=0"], None,
                                      "flag --max_examples=0: 0 is not a positive integer"),
    }),
    "ptb.export": {
        "no run folder given": (["{run}/exported"], None, "--save_path: required"),
        "no model in the run folder": (["--save_path={run}", "{run}/exported"], None,
                                       "no model.keras there"),
        "no folder to export to": (["--save_path={run}"], None,
                                   "give the folder to export to as one argument"),
    },
    "imdb_sentiment.predict": {
        "unknown flag": (["--no_such_flag=1", "--save_path={run}", "Fine."], None,
                         "Unknown command line flag 'no_such_flag'"),
        "no run folder given": (["Fine."], None, "--save_path: required"),
        "no model in the run folder": (["--save_path={run}", "Fine."], None,
                                       "no model.keras there"),
        "unreadable review file": (["--save_path={run}", f"--file={MISSING}/reviews.txt"], None,
                                   f"--file={MISSING}/reviews.txt: cannot read it"),
    },
}


def run_case(module, case, tmp_path, run=run_module):
    args, env, _ = ENTRY_POINTS[module][case]
    run_folder = tmp_path / case.replace(" ", "_")
    args = [arg.format(run=run_folder) for arg in args]
    if module not in ("imdb_sentiment.predict", "ptb.export", "ptb.benchmark"):
        args.append(f"--save_path={run_folder}")
    return run(module, *args, env=env, timeout=300)


@pytest.mark.parametrize("module", list(ENTRY_POINTS))
def test_every_bad_input_is_one_line_and_exit_2(module, tmp_path, forked):
    results = {case: run_case(module, case, tmp_path, forked.run) for case in ENTRY_POINTS[module]}
    failures = []
    for case, result in results.items():
        try:
            assert_one_line_error(result, ENTRY_POINTS[module][case][2])
        except AssertionError as error:
            failures.append(f"{case}: {error}")
    assert not failures, "\n\n".join(failures)
    # Nothing of a run was left behind by input that never let it begin.
    assert not any(path.is_dir() and any(path.iterdir()) for path in tmp_path.iterdir())


def test_a_forked_process_ends_as_a_fresh_one_does(tmp_path, forked):
    """What the forked cases above stand for: the same command line as a fresh
    `python -m` gives the same stderr, stdout and exit status."""
    for module, case in (("ptb.ptb_word_lm", "unknown flag"),
                         ("imdb_sentiment.train", "malformed TF_CONFIG")):
        fresh = run_case(module, case, tmp_path / "fresh")
        forked_result = run_case(module, case, tmp_path / "forked", forked.run)
        assert (forked_result.returncode, forked_result.stdout, forked_result.stderr) == (
            fresh.returncode, fresh.stdout, fresh.stderr.replace(str(tmp_path / "fresh"),
                                                                 str(tmp_path / "forked")))
        assert_one_line_error(fresh, ENTRY_POINTS[module][case][2])


@pytest.mark.parametrize("package, command", [
    ("ptb", "python -m ptb.ptb_word_lm"), ("mnist_lstm", "python -m mnist_lstm.train"),
    ("imdb_sentiment", "python -m imdb_sentiment.train")])
def test_a_package_run_as_a_command_names_the_commands_to_run(package, command, forked):
    assert_one_line_error(forked.run(package), f"error: run {command}")
