"""A child process for the reliability tests: `headcls` with slowed training steps, killable on cue.

    python tests/slow_run.py [--kill-in-final-write] -- HEADCLS ARGS...

Each training step sleeps a little so a test can interrupt the run after its first checkpoint;
--kill-in-final-write SIGKILLs the process while it writes the final model folder.
"""

import os
import signal
import sys
import time

import transformers

from headcls import report
from headcls.cli import main

flags, argv = sys.argv[1 : sys.argv.index("--")], sys.argv[sys.argv.index("--") + 1 :]

step = transformers.Trainer.training_step


def slow_step(self, *args, **kwargs):
    time.sleep(0.05)
    return step(self, *args, **kwargs)


transformers.Trainer.training_step = slow_step

if "--kill-in-final-write" in flags:
    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    report.write_metrics = die

sys.exit(main(argv))
