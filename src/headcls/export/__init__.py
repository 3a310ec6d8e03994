"""ONNX export of a trained folder (fp32 or int8), checked against the torch model. May import errors, files, options, modeling, data and inference."""
