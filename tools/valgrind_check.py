#!/usr/bin/env python3
"""Run a command under valgrind and fail on any error or definite leak that involves the C core.

CPython itself (as pyenv and most distributions build it) makes valgrind report uninitialised
reads in its own allocator and at interpreter exit; those say nothing about this project. So
every error block valgrind prints is kept only when one of its frames is in csrc/ or in the
_core extension, and the run fails when any is kept.

    python tools/valgrind_check.py -- .venv/bin/python -m pytest tests/test_core.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

OURS = re.compile(r"csrc/|_core\.cpython|\bpgvc_")


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1 :]
    with tempfile.NamedTemporaryFile("r", suffix=".valgrind.log") as log:
        env = {**os.environ, "PYTHONMALLOC": "malloc"}
        rc = subprocess.call(
            [
                "valgrind",
                "--leak-check=full",
                "--show-leak-kinds=definite",
                "--num-callers=40",
                "--fullpath-after=",
                f"--log-file={log.name}",
                *command,
            ],
            env=env,
        )
        text = log.read()
    blocks = re.split(r"\n==\d+== \n", text)
    ours = [
        b
        for b in blocks
        if OURS.search(b) and re.search(r"Invalid|uninitialised|definitely lost|Mismatched", b)
    ]
    for block in ours:
        print(block, file=sys.stderr)
    summary = re.findall(r"ERROR SUMMARY: .*", text)
    print(
        f"valgrind: {len(ours)} error(s) in the C core; command exit status {rc}; "
        f"{summary[-1] if summary else 'no summary'} (CPython's own included)"
    )
    return 1 if ours or rc else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
