"""Runs `python -m MODULE ARGS...` command lines as processes forked from one Python
that has already imported TensorFlow, for tests that run many short commands
(bad input, mostly): each is a process of its own, with its own command line,
environment, stdin, stdout, stderr and exit status, without TensorFlow's seconds
of start-up each time.

    python -m tests.fork_server

reads one request per line on stdin, JSON: {"module", "args", "env" (the whole
environment), "stdin", "stdout", "stderr"} (the last three: file paths), and
answers each with two lines on stdout: {"pid"} once the process is started, and
{"returncode"} once it has ended (negative: the signal that ended it, as
subprocess gives it).

What a forked process shares with `python -m MODULE` started afresh: the same
interpreter and options, sys.path[0] the repository root, `common` imported
first with TensorFlow's start-up lines filtered (as every entry point imports
it), then MODULE run as __main__ (runpy, as -m does), with sys.argv as -m sets
it. SystemExit, an uncaught exception or the end of the module end the process
as they end Python: its exit status, its traceback on stderr, atexit handlers.
Only TensorFlow's import was done before the fork (no op, no device set up: the
process sets up its own, and reads its environment, as a fresh one does).
tests/test_cli_errors.py checks that one forked and one fresh process of the
same command line give the same stderr and exit status.
"""

import gc
import json
import os
import runpy
import sys


def serve():
    import common  # noqa: F401  (TensorFlow, imported once, quietly)

    # What was imported stays out of the collector's scans (Python's advice for a
    # process that forks): each process ends in a fifth of a second, not 0.6.
    gc.freeze()

    # The requests and answers keep to descriptors of their own; the processes
    # get 0, 1 and 2, and Python's sys.stdin is never read here.
    requests, answers = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    pending = b""
    while True:
        while b"\n" not in pending:
            chunk = os.read(requests, 65536)
            if not chunk:
                return
            pending += chunk
        line, pending = pending.split(b"\n", 1)
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.close(requests)
            os.close(answers)
            become(request)  # the process ends as Python does: it never returns here
        os.write(answers, (json.dumps(dict(pid=pid)) + "\n").encode())
        _, status = os.waitpid(pid, 0)
        os.write(answers, (json.dumps(dict(returncode=os.waitstatus_to_exitcode(status)))
                           + "\n").encode())


def become(request):
    """Turns this forked process into `python -m module args...`."""
    for fd, path, mode in ((0, request["stdin"], os.O_RDONLY),
                           (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                           (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(path, mode, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [request["module"], *request["args"]]  # argv[0]: runpy sets the file, as -m does
    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    sys.exit(0)  # the module ran to its end


if __name__ == "__main__":
    serve()
