"""On-drone side: frame sources, ONNX detector, fault tracker, flight runtime (no torch)."""
