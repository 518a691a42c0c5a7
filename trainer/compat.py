"""Placeholder: the compatibility shim for Chainer on Python 3.12+ / NumPy 2 (issue 4)."""
