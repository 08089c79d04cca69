"""Command-line plumbing shared by the training scripts."""

import sys

from absl import app


class UserInputError(Exception):
    """Bad input from the user (a file, a folder, a flag).

    The message is the whole story: it names the file or flag and says what to do.
    Entry points print it as one line and exit with status 2, with no traceback.
    """


def run(main):
    """Like `absl.app.run(main)`, but a UserInputError ends as one clean line."""

    def main_with_clean_errors(argv):
        try:
            return main(argv)
        except UserInputError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    app.run(main_with_clean_errors)
