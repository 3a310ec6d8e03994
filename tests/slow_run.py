"""A child process for the reliability tests: `headcls` with slowed training steps, killable on cue.

    python tests/slow_run.py [--kill-in-final-write] [--poison-after-first-checkpoint] -- HEADCLS ARGS...

Each training step sleeps a little so a test can interrupt the run after its first checkpoint;
--kill-in-final-write SIGKILLs the process while it writes the final model folder;
--poison-after-first-checkpoint turns every weight into NaN once the first checkpoint is saved, as a diverging
run would.
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

if "--poison-after-first-checkpoint" in flags:
    import torch

    save = transformers.Trainer._save_checkpoint

    def save_then_poison(self, model, trial):
        result = save(self, model, trial)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.fill_(float("nan"))
        return result

    transformers.Trainer._save_checkpoint = save_then_poison

sys.exit(main(argv))
