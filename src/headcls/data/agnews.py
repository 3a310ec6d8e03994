"""AG News, from a local copy (`--data-dir`, HEADCLS_DATA_DIR) or the Hugging Face hub."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from headcls.errors import HeadclsError
from headcls.files.columns import text_and_labels
from headcls.files.tables import LABEL, read_table
from headcls.options.fields import DataConfig

logger = logging.getLogger(__name__)


AG_NEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]


AG_NEWS_HUB_ID = "fancyzhx/ag_news"


def read_ag_news(cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """AG News from a local folder (`--data-dir` or HEADCLS_DATA_DIR) or else from the Hugging Face hub."""
    data_dir = cfg.data_dir or os.environ.get("HEADCLS_DATA_DIR")
    frames, sources = {}, {}
    if data_dir:
        for split in ("train", "test"):
            path = Path(data_dir) / "ag_news" / f"{split}.csv"
            if not path.is_file():
                raise HeadclsError(f"{path}: file not found (AG News is read from DATA_DIR/ag_news/{split}.csv)")
            frames[split] = read_table(path)
            sources[split] = str(path)
    else:
        import datasets  # only the hub path needs it here

        logger.info("Loading %s from the Hugging Face hub", AG_NEWS_HUB_ID)
        try:
            hub = datasets.load_dataset(AG_NEWS_HUB_ID)
        except Exception as e:  # noqa: BLE001  offline, hub down, ...: the fix is the same
            raise HeadclsError(
                f"cannot load {AG_NEWS_HUB_ID} from the hub ({type(e).__name__}); "
                "without the network, pass --data-dir DIR holding ag_news/train.csv and ag_news/test.csv"
            ) from None
        for split in ("train", "test"):
            frames[split] = hub[split].to_pandas()
            sources[split] = f"{AG_NEWS_HUB_ID}:{split}"
    for split, frame in frames.items():
        frame = text_and_labels(frame, sources[split], ["text"], "label")
        names = {str(i): name for i, name in enumerate(AG_NEWS_LABELS)}
        bad = sorted(set(frame[LABEL]) - set(names))
        if bad:
            raise HeadclsError(f"{sources[split]}: AG News labels are 0-3, found {bad[0]!r}")
        frame[LABEL] = frame[LABEL].map(names)
        frames[split] = frame
    return frames, sources
