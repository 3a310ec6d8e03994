"""Labelled data for training and evaluation: splits, AG News, tokenizing, long texts and streaming. May import errors, files, options, modeling and runtime."""
