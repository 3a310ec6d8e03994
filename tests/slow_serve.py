"""A child process for the serving tests: `headcls serve` whose model takes --delay seconds per call.

    python tests/slow_serve.py [--delay SECONDS] -- serve ARGS...

The delay makes the worker busy on cue, so that tests can fill the queue, close a request before its turn, or
stop the server with requests in flight.
"""

import sys
import time

from headcls.cli import main
from headcls.inference.classifier import Classifier

flags, argv = sys.argv[1 : sys.argv.index("--")], sys.argv[sys.argv.index("--") + 1 :]
delay = float(flags[flags.index("--delay") + 1]) if "--delay" in flags else 0.0
predict = Classifier.predict


def slow_predict(self, texts, top_k=1):
    if texts != ["warm-up"]:
        time.sleep(delay)
    return predict(self, texts, top_k)


Classifier.predict = slow_predict
sys.exit(main(argv))
