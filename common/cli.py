"""The command line shared by every entry point: the same flags, one error path.

    cli.define_run_flags(...)   --data_path --save_path --restart --epochs --learning_rate
                                --seed --num_gpus --worker_timeout --mixed_precision
    cli.run(main)               like absl.app.run, but any bad input ends in one line

Bad input (a file, a folder, a flag value, an unknown flag, stray arguments, more
GPUs than exist, a malformed TF_CONFIG) ends with one line on stderr that names
the input and what to do, and exit status 2, as for any usage error; never a
traceback. A run that fails on good input (`RunFailure`: a loss that is no
longer finite, a write the disk refuses) ends with one line and exit status 1.
Checks raise these where the problem is first understood; this module only
prints them.
"""

import json
import math
import os
import re
import signal
import sys
import threading

from absl import app
from absl import flags
from absl import logging

FLAGS = flags.FLAGS
USAGE_ERROR = 2  # exit status of a usage error, as argparse and the shells use
RUN_FAILED = 1
INTERRUPTED = 130  # 128 + SIGINT
TERMINATED = 143  # 128 + SIGTERM


class UserInputError(ValueError):
    """Bad input from the user (a file, a folder, a flag).

    The message is the whole story: it names the file or flag and says what to do.
    Entry points print it as one line and exit with status 2, with no traceback.
    """


class RunFailure(RuntimeError):
    """The run cannot go on (a non-finite loss, a failed write); the message names
    where and what to try. Entry points print it as one line and exit with status 1."""


def define_run_flags(data_path_help, default_run_folder, epochs_default, learning_rate_default,
                     learning_rate_help, epochs_help=None, max_examples=False):
    """The flags every tutorial shares, with the same names and meanings everywhere.

    default_run_folder: what an unset --save_path means, for the help text (the
    entry point resolves it, e.g. "runs/ptb/<model>").
    Defined on demand by each entry point (absl flags are global, and the tests
    load several tutorials in one process).
    """
    flags.DEFINE_string("data_path", None, data_path_help)
    flags.DEFINE_string("save_path", None,
                        "The run folder: checkpoints, the final model, settings.json, "
                        "metrics.json, history and figures; the same command again resumes "
                        f"after the last completed epoch (default: {default_run_folder}; "
                        "a quick look, with --steps_per_epoch or --max_examples, gets a "
                        "folder of its own).")
    flags.DEFINE_bool("restart", False, "Delete the run already in --save_path and start "
                      "over (needed to run other settings into the same folder).")
    flags.DEFINE_integer("epochs", epochs_default, epochs_help or "Number of epochs.",
                         lower_bound=1)
    flags.DEFINE_float("learning_rate", learning_rate_default, learning_rate_help)
    flags.register_validator("learning_rate", lambda rate: rate is None or 0 < rate < math.inf,
                             "must be a finite number above 0")  # nan too
    flags.DEFINE_integer("seed", 0, "Random seed: initial weights, shuffling and dropout.",
                         lower_bound=0, upper_bound=2**32 - 1)
    flags.DEFINE_integer("num_gpus", None, "GPUs to use; unset: all visible, 0: CPU only. "
                         "Several workers: set TF_CONFIG (README, Scaling up).")
    flags.DEFINE_integer("worker_timeout", 600, "Seconds a worker waits for the others "
                         "of TF_CONFIG to join before it gives up, naming them.", lower_bound=1)
    flags.DEFINE_bool("mixed_precision", False, "Compute in float16 on GPUs (with loss "
                      "scaling), bfloat16 on CPUs with bfloat16 dot products (refused on "
                      "other CPUs); weights, logits and losses stay float32.")
    if max_examples:
        flags.DEFINE_integer("max_examples", None, "Quick runs: only the first N training "
                             "and N test examples.", lower_bound=1)


# The flags of a quick look: a run with one of them gets a default folder of its own,
# so that the full run after it does not find the quick look's settings there.
QUICK_LOOK_FLAGS = ("steps_per_epoch", "max_examples")


def run_folder_path(tutorial, name):
    """The run folder --save_path names, or by default runs/<tutorial>/<name>, with
    each quick-look flag that is set added to the name (runs/ptb/small_steps_per_epoch10)."""
    if FLAGS.save_path:
        return FLAGS.save_path
    quick = [f"{flag}{FLAGS[flag].value}" for flag in QUICK_LOOK_FLAGS
             if flag in FLAGS and FLAGS[flag].value is not None]
    return os.path.join("runs", tutorial, "_".join([name, *quick]))


def download_failure_reason(error):
    """Why a download failed, in a few words: the cause that Keras' get_file puts
    after " -- " ("[Errno -2] Name or service not known"), with the HTTP status
    before it if there is one ("404 Not Found"); else the error's message."""
    message = " ".join(str(error).split())
    head, separator, cause = message.rpartition(" -- ")
    if not separator:
        return message or type(error).__name__
    status = head.rsplit(": ", 1)[-1]
    return f"{status} {cause}" if status.isdigit() else cause


def run(main, takes_arguments=False):
    """Like `absl.app.run(main)`, with flag errors and bad input as one line, exit 2.

    takes_arguments: main reads positional arguments (texts to score); otherwise
    stray arguments are refused rather than silently ignored.
    """

    def main_with_clean_errors(argv):
        # Warnings and errors only: at INFO, TensorFlow adds a line per checkpoint.
        logging.set_verbosity(logging.WARNING)
        signal.signal(signal.SIGTERM, _terminated)  # as Ctrl-C: the same message
        sys.unraisablehook = _redeliver_lost_interrupts(sys.unraisablehook)
        try:
            if len(argv) > 1 and not takes_arguments:
                raise UserInputError(f"unexpected arguments {' '.join(argv[1:])!r}; flags "
                                     "look like --epochs=5 (see --help)")
            return main(argv)
        except UserInputError as error:
            fail(error)
        except RunFailure as error:
            fail(error, status=RUN_FAILED)
        except Exception as error:
            lost = _lost_task(error)
            if not lost:
                raise
            fail(f"{lost} of TF_CONFIG stopped responding during the run; the run "
                 "folder keeps the last completed epoch: start every worker again with "
                 "the same command to resume", status=RUN_FAILED)
        except KeyboardInterrupt as interruption:  # Ctrl-C, SIGTERM; a message if raised with one
            print("\n" + (str(interruption) or "interrupted; run the same command again "
                           "(without --restart) to resume after the last completed epoch"),
                  file=sys.stderr)
            sys.exit(TERMINATED if isinstance(interruption, _Terminated) else INTERRUPTED)

    app.run(main_with_clean_errors, flags_parser=_parse_flags)


def fail(message, status=USAGE_ERROR):
    """Ends the program with one line on stderr and `status` (a usage error's by default)."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(status)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, ended as Ctrl-C is."""


def _terminated(signum, frame):
    raise _Terminated()


def _redeliver_lost_interrupts(default_hook):
    """An unraisablehook that sends a swallowed Ctrl-C or SIGTERM again.

    Python runs a signal's handler wherever the main thread is, and when that is a
    destructor (TensorFlow's objects have many, run by the garbage collector at any
    moment) the KeyboardInterrupt it raises is printed as "Exception ignored" and
    dropped: the run would go on to its end. The signal is sent again a moment
    later, from a helper thread, once the destructor has likely returned; it repeats
    until it lands.
    """

    def hook(unraisable):
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            return default_hook(unraisable)
        signum = signal.SIGTERM if isinstance(unraisable.exc_value, _Terminated) else signal.SIGINT
        threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()

    return hook


def _lost_task(error):
    """'worker 1 (/job:worker/task:1)' when `error` is TensorFlow's report that a task
    of the cluster went away (its heartbeats stopped, or its connection broke);
    None for any other error.

    A task that stops answering (hung, or its machine gone) without its connection
    breaking is reported by the coordination service, which runs on the chief (or
    worker 0) and names it; when that task is the one that stops answering, the
    others' heartbeats to it time out instead (DeadlineExceededError)."""
    if not os.environ.get("TF_CONFIG"):
        return None
    if (type(error).__name__ == "DeadlineExceededError"
            and "CoordinationService/Heartbeat" in str(error)):
        job = "chief" if "chief" in json.loads(os.environ["TF_CONFIG"])["cluster"] else "worker"
        return f"{job} 0 (/job:{job}/task:0)"
    if type(error).__name__ != "UnavailableError":
        return None
    found = (re.search(r"unhealthy.*?/job:(\w+)/replica:\d+/task:(\d+)", str(error), re.DOTALL)
             or re.search(r"remote target /job:(\w+)/replica:\d+/task:(\d+)", str(error)))
    return f"{found[1]} {found[2]} (/job:{found[1]}/task:{found[2]})" if found else "another task"


def _parse_flags(argv):
    """absl's parser, but its errors (unknown flag, bad value) in one line, exit 2."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        fail(f"{error}; see --help")
