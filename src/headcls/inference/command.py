"""`headcls predict`: sentences to standard output, a file into a file, or sharded files on Ray Data."""

from __future__ import annotations

import json
import sys

from headcls.errors import HeadclsError
from headcls.inference.classifier import Classifier
from headcls.inference.files import predict_file
from headcls.options.commands import PredictConfig


def predict(cfg: PredictConfig, echo=print) -> None:
    """`headcls predict`: sentences from the command line to stdout as JSON lines, --input to --output, or with
    --engine ray sharded files into a folder of shards on Ray Data."""
    if cfg.engine == "ray":
        from headcls.inference.ray_engine import run_on_ray

        summary = run_on_ray(cfg)
        files = summary["output_files"]
        print(f"Wrote {summary['rows']} predictions to {cfg.output} ({files} {summary['output_format']} "
              f"file{'s' if files != 1 else ''})", file=sys.stderr)
        return
    from headcls.files.columns import column_texts

    texts = []
    if cfg.texts:  # the same rule as for files: a blank sentence is refused, not skipped
        import pandas as pd

        texts = column_texts(pd.DataFrame({"text": cfg.texts}), "the sentences", ["text"], row_word="sentence")
    loaded: list[Classifier] = []

    def load() -> Classifier:
        if not loaded:
            loaded.append(Classifier.from_config(cfg))
        return loaded[0]

    if cfg.input:
        n = predict_file(load, cfg.input, cfg.output, cfg.top_k, cfg.text_column, cfg.encoding, overwrite=cfg.overwrite)
        print(f"Wrote {n} predictions to {cfg.output}", file=sys.stderr)
    if texts:
        if sys.stdout is None or sys.stdout.closed:
            raise HeadclsError("standard output is closed: nowhere to print the predictions (use --output FILE)")
        clf = load()
        lines = [json.dumps({"text": t, **r}, ensure_ascii=False, allow_nan=False)
                 for t, r in zip(texts, clf.predict(texts, top_k=cfg.top_k))]
        try:
            for line in lines:
                echo(line)
            sys.stdout.flush()  # a full disk or a closed pipe shows here, not silently at exit
        except BrokenPipeError:
            raise
        except OSError as e:
            raise HeadclsError(f"cannot write the predictions to standard output ({e.strerror})") from None
