"""The baseline beside every model: TF-IDF + logistic regression on the same rows."""

from __future__ import annotations

import pandas as pd

from headcls.evaluation.metrics import compute_metrics, compute_multilabel_metrics, multi_hot
from headcls.files.columns import is_multi_label


def baseline_scores(train: pd.DataFrame, test: pd.DataFrame, labels: list[str], seed: int) -> dict:
    """TF-IDF (word 1-2 grams) + logistic regression on the same training rows, scored on the same test rows."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    index = {name: i for i, name in enumerate(labels)}
    multi = is_multi_label(train["label"])
    logistic = LogisticRegression(max_iter=1000, C=10.0, random_state=seed)
    if multi:  # one binary model per label; a label no training row carries is never predicted
        from sklearn.multiclass import OneVsRestClassifier

        logistic = OneVsRestClassifier(logistic)
    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True), logistic)
    if multi:
        import warnings

        with warnings.catch_warnings():  # "Label not N is present in all training examples": said above
            warnings.simplefilter("ignore", UserWarning)
            pipe.fit(train["text"], multi_hot(train["label"], labels))
        full = compute_multilabel_metrics(multi_hot(test["label"], labels), pipe.predict(test["text"]), labels)
        keys = ("accuracy", "f1_micro", "precision_macro", "recall_macro", "f1_macro", "hamming_loss",
                "num_examples")
    else:
        pipe.fit(train["text"], train["label"].map(index))
        predicted = pipe.predict(test["text"])
        full = compute_metrics(test["label"].map(index).tolist(), predicted.tolist(), labels)
        keys = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted", "num_examples")
    return {"name": "tfidf+logreg", **{k: full[k] for k in keys}}
