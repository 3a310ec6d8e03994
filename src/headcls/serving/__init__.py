"""The REST API and its page over one Classifier: micro-batcher, ASGI layers, app and server. May import errors, files, options and inference."""
