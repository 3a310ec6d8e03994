"""A child process for the tests of interrupted runs (tests/test_training.py, tests/test_files.py,
tests/test_runtime.py): `headcls` with slowed training steps, killable on cue.

    python tests/slow_run.py [--kill-in-final-write] [--record-batches DIR] [--step-seconds S] -- HEADCLS ARGS...

Each training step sleeps a little (--step-seconds, 0.05 by default) so a test can interrupt the run after its first checkpoint;
--kill-in-final-write SIGKILLs the process while it writes the final model folder; --record-batches DIR appends
each step's rows (token ids, padding dropped) to DIR/rank{RANK}.jsonl, so a test can see which rows each process of
a torchrun job trained on.
"""

import os
import signal
import sys
import time

import transformers

from headcls.cli import main
from headcls.evaluation import report

# torchrun drops a "--" that comes first among the script's arguments: then every argument is headcls's.
split = sys.argv.index("--") if "--" in sys.argv else 0
flags, argv = sys.argv[1:split], sys.argv[split + 1 :]

step = transformers.Trainer.training_step


record = flags[flags.index("--record-batches") + 1] if "--record-batches" in flags else None
pause = float(flags[flags.index("--step-seconds") + 1]) if "--step-seconds" in flags else 0.05


def slow_step(self, model, inputs, *args, **kwargs):
    time.sleep(pause)
    if record:
        import json

        rows = [[int(t) for t, m in zip(ids, mask) if m]
                for ids, mask in zip(inputs["input_ids"].tolist(), inputs["attention_mask"].tolist())]
        with open(os.path.join(record, f"rank{os.environ.get('RANK', '0')}.jsonl"), "a") as f:
            f.write(json.dumps({"step": self.state.global_step, "rows": rows}) + "\n")
    return step(self, model, inputs, *args, **kwargs)


transformers.Trainer.training_step = slow_step

if "--kill-in-final-write" in flags:
    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    report.write_metrics = die

sys.exit(main(argv))
