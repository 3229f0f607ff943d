"""Chain-rule (autoregressive) densities: FVSBN, NADE/RNADE, MADE and PixelCNN (LANGUAGE.md §5.2)."""
from .base import Conditioner
from .build import CONDITIONERS, build_autoregressive
from .density import AutoregressiveDensity
from .families import (
    FAMILIES,
    Bernoulli,
    Categorical,
    DiscretizedLogistic,
    MixtureOfGaussians,
    PositionFamily,
    make_family,
)
from .linear import BandedLinearConditioner, LinearConditioner
from .made import MADE
from .nade import NADE
from .orders import allowed_dependencies, pixel_raster_order, resolve_order
from .pixelcnn import PixelCNN

__all__ = [
    "AutoregressiveDensity",
    "build_autoregressive",
    "CONDITIONERS",
    "Conditioner",
    "LinearConditioner",
    "BandedLinearConditioner",
    "NADE",
    "MADE",
    "PixelCNN",
    "PositionFamily",
    "Bernoulli",
    "Categorical",
    "MixtureOfGaussians",
    "DiscretizedLogistic",
    "FAMILIES",
    "make_family",
    "resolve_order",
    "allowed_dependencies",
    "pixel_raster_order",
]
