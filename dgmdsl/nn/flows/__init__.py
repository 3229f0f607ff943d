"""Normalizing flows: invertible layers, stacks built from layer specs, and densities."""

from .autoregressive import InverseAutoregressive, MaskedAutoregressive
from .base import FlowLayer, PyroBijection
from .build import LAYER_BUILDERS, build_flow, default_make_made, default_make_net, unroll
from .coupling import MaskedCoupling
from .dequantize import dequantize
from .elementwise import ActNorm, BatchNormLayer, Logit, Scale, Sigmoid
from .linear import LULinear, Permutation
from .spec import LayerSpec, RepeatSpec
from .stack import FlowDensity, FlowStack

__all__ = [
    "ActNorm",
    "BatchNormLayer",
    "FlowDensity",
    "FlowLayer",
    "FlowStack",
    "InverseAutoregressive",
    "LAYER_BUILDERS",
    "LULinear",
    "LayerSpec",
    "Logit",
    "MaskedAutoregressive",
    "MaskedCoupling",
    "Permutation",
    "PyroBijection",
    "RepeatSpec",
    "Scale",
    "Sigmoid",
    "build_flow",
    "default_make_made",
    "default_make_net",
    "dequantize",
    "unroll",
]
