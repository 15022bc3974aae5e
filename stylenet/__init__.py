"""stylenet: fast neural style transfer with instance normalization.

Implements "Instance Normalization: The Missing Ingredient for Fast Stylization"
(Ulyanov, Vedaldi, Lempitsky 2016): feed-forward generators (Johnson et al.'s residual
network and Ulyanov et al.'s multi-scale texture network) trained per style with
perceptual losses from a frozen ImageNet VGG, with instance normalization at training
and at inference.

Pixel convention (shared by training, inference, worker and service): float32 RGB in
0–255, NCHW; see :mod:`stylenet.pixels`.
"""

from .errors import (
    ChecksumMismatch,
    ContentImagesError,
    ExportUnsupported,
    ImageError,
    InvalidParams,
    LossNetworkError,
    ModelFileError,
    StylenetError,
    WeightsNotFound,
)
from .generators import GeneratorConfig, build_generator
from .inference import stylize, stylize_tensor
from .model_file import GeneratorInfo, generator_to_bytes, load_generator, read_info, save_generator
from .params import TrainParams
from .pixels import PIXEL_CONVENTION, image_to_tensor, tensor_to_image
from .train import Progress, TrainResult, train

__all__ = [
    "PIXEL_CONVENTION",
    "ChecksumMismatch",
    "ContentImagesError",
    "ExportUnsupported",
    "GeneratorConfig",
    "GeneratorInfo",
    "ImageError",
    "InvalidParams",
    "LossNetworkError",
    "ModelFileError",
    "Progress",
    "StylenetError",
    "TrainParams",
    "TrainResult",
    "WeightsNotFound",
    "build_generator",
    "generator_to_bytes",
    "image_to_tensor",
    "load_generator",
    "read_info",
    "save_generator",
    "stylize",
    "stylize_tensor",
    "tensor_to_image",
    "train",
]
