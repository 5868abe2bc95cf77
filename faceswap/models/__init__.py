"""Encoder/decoder architectures, a registry of named ones, and saving/loading trained models."""
from faceswap.models.arch import ARCHITECTURES, ArchConfig, FaceSwapModel, build, config_for, parameter_count
from faceswap.models.store import load_model, read_config

__all__ = ["ARCHITECTURES", "ArchConfig", "FaceSwapModel", "build", "config_for", "parameter_count",
           "load_model", "read_config"]
