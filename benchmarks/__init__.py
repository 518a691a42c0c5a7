"""Benchmarks: ``python -m benchmarks.speed`` (train, eval, augmentation, memory, PyTorch
peer) and micro-benchmarks of single layers. Never imported by the project itself."""
