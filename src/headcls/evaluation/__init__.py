"""Scoring a model: metrics, plots, the report folder, the TF-IDF baseline and the evaluate command. May import errors, files, options, modeling, data and inference."""
