"""Which code a run was started from, as metrics.json records it."""

import pathlib
import subprocess

_PACKAGE_ROOT = pathlib.Path(__file__).resolve().parent.parent


def source_commit():
    """The git commit of this package's checkout, with "+changes" when tracked files
    differ from it; None outside a git checkout (an installed copy, no git)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(_PACKAGE_ROOT), *args], capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+changes" if changed else "")
