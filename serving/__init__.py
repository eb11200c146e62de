"""serving: model artifacts and batched onnxruntime inference (no torch, no faust)."""
