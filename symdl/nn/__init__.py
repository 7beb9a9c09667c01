"""Layers as graph builders, parameters, initializers."""
from .init import INITIALIZERS, initializer
from .layers import Activation, Dense, Dropout, Sequential
from .maxout import Maxout, Softmax
from .conv import (AdaptiveAvgPool2d, AvgPool2d, Conv1d, Conv2d, Dropout2d, Flatten,
                   GlobalAvgPool2d, LPPool2d, MaxPool2d, Residual, Upsample)
from .norm import BatchNorm1d, BatchNorm2d, InstanceNorm2d, LayerNorm
from .recurrent import GRU, LSTM, RNN, Embedding, GRUCell, LSTMCell, RNNCell
from .attention import (LearnedPositionalEncoding, Linear, MultiheadAttention,
                        SinusoidalPositionalEncoding, TransformerDecoderLayer,
                        TransformerEncoderLayer, scaled_dot_product_attention)
from .seqmodels import (Seq2Seq, SequenceClassifier, SequenceGenerator, SequenceTagger, ViT,
                        sequence_model)
from .summary import conv_output_size, receptive_field, summary
from .models import MODELS, make_model
from .module import Module
from .parameter import Parameter, ParamPack

__all__ = ["Module", "Parameter", "ParamPack", "Dense", "Maxout", "Softmax", "Dropout", "LayerNorm", "Activation", "Sequential",
           "INITIALIZERS", "initializer", "MODELS", "make_model",
           "Conv1d", "Conv2d", "MaxPool2d", "AvgPool2d", "LPPool2d", "AdaptiveAvgPool2d",
           "GlobalAvgPool2d", "Upsample", "Dropout2d", "Flatten", "Residual", "BatchNorm1d",
           "BatchNorm2d", "InstanceNorm2d", "summary", "conv_output_size", "receptive_field",
           "Embedding", "RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU", "Linear",
           "MultiheadAttention", "scaled_dot_product_attention", "SinusoidalPositionalEncoding",
           "LearnedPositionalEncoding", "TransformerEncoderLayer", "TransformerDecoderLayer",
           "SequenceClassifier", "SequenceTagger", "SequenceGenerator", "Seq2Seq", "ViT",
           "sequence_model"]
