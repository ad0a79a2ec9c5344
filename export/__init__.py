"""Export of the detector to ONNX and TensorRT."""
