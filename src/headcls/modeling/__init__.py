"""Models on disk and in memory: the saved folder (its one owner), loading encoders and trained classifiers, and the fast paths. May import errors and runtime."""
