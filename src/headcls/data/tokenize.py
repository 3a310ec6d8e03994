"""Labelled rows as token ids for the Trainer: truncated, head and tail, or windows of long texts."""

from __future__ import annotations

import pandas as pd

from headcls.files.tables import LABEL, TEXT


def label_targets(names, label2id: dict[str, int], multi_label: bool) -> list:
    """The training targets of a label column: ids, or multi-hot float vectors for multi-label."""
    if not multi_label:
        return [label2id[name] for name in names]
    out = []
    for row in names:
        hot = [0.0] * len(label2id)
        for name in row:
            hot[label2id[name]] = 1.0
        out.append(hot)
    return out


def tokenize(
    frame: pd.DataFrame, tokenizer, label2id: dict[str, int] | None, max_length: int, sort_by_length: bool = False,
    long_text=None, multi_label: bool = False,
):
    """A `datasets.Dataset` of input ids (cut to `max_length`, not padded: batches are padded by the collator).

    `long_text` (a `headcls.data.longtext.LongText`) says how a longer text is read: truncated, its head and tail, or
    as overlapping windows, one row each, carrying the text's label and its row number in column `doc`.
    `sort_by_length` orders rows by token count, so that evaluation batches carry almost no padding.
    """
    import datasets

    from headcls.data.longtext import Pieces, encode_whole, special_layout

    columns = {TEXT: frame[TEXT].tolist(), "doc": list(range(len(frame)))}
    if label2id is not None and LABEL in frame:
        columns[LABEL] = label_targets(frame[LABEL], label2id, multi_label)
    dataset = datasets.Dataset.from_dict(columns)
    if long_text is None or long_text.mode == "truncate":
        dataset = dataset.map(
            lambda batch: tokenizer(batch[TEXT], truncation=True, max_length=max_length),
            batched=True,
            remove_columns=[TEXT],
            desc="Tokenizing",
        )
    else:
        layout = special_layout(tokenizer)

        def pieces(batch):
            cut = Pieces(encode_whole(tokenizer, batch[TEXT]), long_text, max_length, layout)
            rows = [cut.features(p) for p in range(len(cut))]
            out = {key: [row[key] for row in rows] for key in (rows[0] if rows else {})}
            out["doc"] = [batch["doc"][i] for i in cut.doc]
            if LABEL in batch:
                out[LABEL] = [batch[LABEL][i] for i in cut.doc]
            return out

        dataset = dataset.map(pieces, batched=True, batch_size=64, remove_columns=dataset.column_names,
                              desc=f"Tokenizing ({long_text.mode})")
    if sort_by_length:
        lengths = [len(ids) for ids in dataset["input_ids"]]
        dataset = dataset.select(sorted(range(len(lengths)), key=lengths.__getitem__))
    return dataset
