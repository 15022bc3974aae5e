"""The inference runtime: device executor, generator cache, dynamic batcher.

See :class:`service.runtime.runtime.InferenceRuntime` for how the parts fit.
"""

from service.runtime.batcher import Batched, Batcher
from service.runtime.cache import GeneratorCache
from service.runtime.executor import DeviceExecutor, resolve_device
from service.runtime.generators import BlendOptions, LoadedGenerator
from service.runtime.resolver import ModelKey, ServeTarget, StyleResolver
from service.runtime.runtime import BatchKey, InferenceRuntime

__all__ = [
    "BatchKey",
    "Batched",
    "Batcher",
    "BlendOptions",
    "DeviceExecutor",
    "GeneratorCache",
    "InferenceRuntime",
    "LoadedGenerator",
    "ModelKey",
    "ServeTarget",
    "StyleResolver",
    "resolve_device",
]
