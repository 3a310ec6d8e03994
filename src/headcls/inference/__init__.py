"""Classifying text: the Classifier and its backends, results as rows, file prediction, the Ray engine and the predict command. May import errors, files, options, modeling, data and runtime."""
