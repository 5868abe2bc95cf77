"""Encoder/decoder architectures and a registry of named ones (arch.py), and trained models on disk (store.py)."""
