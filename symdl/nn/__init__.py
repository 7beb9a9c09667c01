"""Layers as graph builders, parameters, initializers."""
from .init import INITIALIZERS, initializer
from .layers import Activation, Dense, Dropout, LayerNorm, Sequential
from .models import MODELS, make_model
from .module import Module
from .parameter import Parameter, ParamPack

__all__ = ["Module", "Parameter", "ParamPack", "Dense", "Dropout", "LayerNorm", "Activation", "Sequential",
           "INITIALIZERS", "initializer", "MODELS", "make_model"]
