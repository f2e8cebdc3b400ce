"""What the export scripts share: their command line and records, the
format priority (TensorRT, then ONNX), checkpoints, the CLIP tokenizer."""
