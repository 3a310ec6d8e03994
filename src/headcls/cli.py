"""Command line: thin argparse subcommands over the library. `main(argv)` returns the exit status."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from headcls.errors import HeadclsError, Interrupted

S = argparse.SUPPRESS  # flags not given stay out of the namespace, so they don't override the config file


def add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default=S, help="'ag_news', or a folder holding train.* / validation.* / test.*")
    g.add_argument("--data-dir", default=S, help="local folder holding ag_news/train.csv and ag_news/test.csv")
    g.add_argument("--train-file", default=S, help="CSV, TSV, JSONL or Parquet")
    g.add_argument("--validation-file", default=S)
    g.add_argument("--test-file", default=S)
    g.add_argument("--text-column", nargs="+", default=S, help="one or more columns, joined with a space")
    g.add_argument("--label-column", default=S)
    g.add_argument("--encoding", default=S, help="text encoding of the data files (default utf-8)")
    g.add_argument("--train-samples", type=int, default=S, help="use the first N training rows")
    g.add_argument("--stratify", action="store_true", default=S, help="a seeded stratified sample instead")
    g.add_argument("--validation-fraction", type=float, default=S)
    g.add_argument("--test-samples", type=int, default=S, help="use the first N test rows")
    g.add_argument("--seed", type=int, default=S)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="headcls", description="Head-based text classification with BERT encoders.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="fine-tune an encoder + classification head, evaluate, save")
    t.add_argument("--config", help="YAML file of settings; flags override it")
    add_data_flags(t)
    g = t.add_argument_group("model and training")
    g.add_argument("--model", default=S, help="hub id or local folder (default: bundled all-MiniLM-L6-v2)")
    g.add_argument("--output", default=S, help="the model folder to write")
    g.add_argument("--epochs", type=float, default=S)
    g.add_argument("--batch-size", type=int, default=S)
    g.add_argument("--eval-batch-size", type=int, default=S)
    g.add_argument("--learning-rate", type=float, default=S)
    g.add_argument("--weight-decay", type=float, default=S)
    g.add_argument("--warmup-steps", type=int, default=S)
    g.add_argument("--max-length", type=int, default=S)
    g.add_argument("--precision", choices=["auto", "bf16", "fp32"], default=S)
    g.add_argument("--dropout", type=float, default=S, help="every dropout rate of the encoder (default: its own; 0 is faster)")
    g.add_argument("--logging-steps", type=int, default=S)
    g.add_argument("--early-stopping-patience", type=int, default=S, help="epochs without better validation F1")
    g.add_argument("--keep-best", action="store_true", default=S, help="keep the epoch with best validation F1")
    g.add_argument("--no-baseline", dest="baseline", action="store_false", default=S)
    g.add_argument("--resume", action="store_true", default=S, help="continue from the last checkpoint")
    g.add_argument("--overwrite", action="store_true", default=S, help="replace an existing output folder")
    g.add_argument("--threads", type=int, default=S)

    e = sub.add_parser("evaluate", help="score a trained model on labelled data")
    e.add_argument("--model", required=True)
    e.add_argument("--output", default=S, help="folder for metrics.json, plots, predictions.csv")
    e.add_argument("--backend", choices=["auto", "torch", "onnx"], default=S)
    e.add_argument("--precision", choices=["auto", "bf16", "fp32"], default=S, help="torch backend")
    e.add_argument("--batch-size", type=int, default=S)
    add_data_flags(e)

    p = sub.add_parser("predict", help="classify sentences or a file")
    p.add_argument("--model", required=True)
    p.add_argument("texts", nargs="*", help="sentences to classify")
    p.add_argument("--input", help="txt (one text per line), CSV/TSV/JSONL/Parquet with a text column")
    p.add_argument("--output", help="CSV or JSONL to write (default: print)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--top-k", type=int, default=1)
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto", help="torch backend")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int)

    x = sub.add_parser("export", help="write an ONNX Runtime model folder (optionally int8)")
    x.add_argument("--model", required=True)
    x.add_argument("--output", required=True)
    x.add_argument("--int8", action="store_true", help="dynamic int8 quantization")
    x.add_argument("--check-file", help="labelled CSV/TSV/JSONL to compare both models on (default: none)")
    x.add_argument("--check-samples", type=int, default=500)
    x.add_argument("--overwrite", action="store_true")
    return parser


def _options(args: argparse.Namespace, drop: tuple[str, ...]) -> dict:
    return {k.replace("-", "_"): v for k, v in vars(args).items() if k not in drop}


def cmd_train(args) -> int:
    from headcls.config import TrainConfig, build_config
    from headcls.train import train

    cfg = build_config(TrainConfig, args.config, _options(args, ("command", "config", "quiet")))
    train(cfg)
    return 0


def cmd_evaluate(args) -> int:
    from headcls.config import build_config
    from headcls.evaluate import EvaluateConfig, evaluate

    cfg = build_config(EvaluateConfig, None, _options(args, ("command", "quiet")))
    evaluate(cfg)
    return 0


def cmd_predict(args) -> int:
    import json

    from headcls.predict import Classifier, predict_file

    if not args.texts and not args.input:
        raise HeadclsError("predict needs sentences as arguments or --input FILE")
    if args.top_k < 1:
        raise HeadclsError(f"--top-k must be at least 1, got {args.top_k}")
    clf = Classifier.from_pretrained(
        args.model, backend=args.backend, precision=args.precision, batch_size=args.batch_size, threads=args.threads
    )
    top_k = min(args.top_k, len(clf.labels))
    if args.input:
        if not args.output:
            raise HeadclsError("--input needs --output FILE (.csv or .jsonl)")
        n = predict_file(clf, args.input, args.output, top_k, args.text_column, args.encoding)
        print(f"Wrote {n} predictions to {args.output}", file=sys.stderr)
    if args.texts:
        for text, result in zip(args.texts, clf.predict(args.texts, top_k=top_k)):
            print(json.dumps({"text": text, **result}, ensure_ascii=False))
    return 0


def cmd_export(args) -> int:
    from headcls.export import export

    export(args.model, args.output, int8=args.int8, check_file=args.check_file,
           check_samples=args.check_samples, overwrite=args.overwrite)
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "export": cmd_export}


def setup_logging(quiet: bool) -> None:
    logging.basicConfig(format="%(message)s", level=logging.WARNING if quiet else logging.INFO, force=True)
    for noisy in ("transformers", "datasets", "httpx", "huggingface_hub", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not quiet else logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    try:
        return COMMANDS[args.command](args)
    except Interrupted as e:
        print(f"headcls: {e}", file=sys.stderr)
        return 130
    except HeadclsError as e:
        print(f"headcls: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("headcls: interrupted", file=sys.stderr)
        return 130
