"""What the export scripts share: format priority (TensorRT, then ONNX),
TensorRT plan building, and edits of the configs they produce."""
