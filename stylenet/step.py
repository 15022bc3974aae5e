"""One training step of the trainer, and the switches that change its speed but not its recipe.

:class:`TrainStep` is the body of :func:`stylenet.train`'s loop (generator forward,
perceptual loss, backward, Adam), kept apart so that ``bench/train_speed.py`` times
exactly the step the trainer runs. :class:`StepOptions` chooses *how* the step is
computed — autocast dtype, memory layouts, ``torch.compile`` — never *what*: the data,
losses, weights and optimizer are the same with any options.

What measured faster on the 2-core AVX2 CPU this project develops on
(``bench/train_speed.py``, docs/TRAINING.md):

* the generator's last convolution (9×9, 32 → 3 channels) in ``channels_last``:
  oneDNN's NCHW backward of it runs at a few GFLOP/s, several times slower than the
  same convolution in channels_last (the whole generator in channels_last measured
  slower: instance norm and the other convolutions lose more than that one gains);
* the content targets computed only up to the content layer (``relu2_2`` for the
  ``johnson`` preset) instead of the whole loss network (:class:`PerceptualLoss`).

bf16 autocast on CPU pays only with native bf16 instructions (AVX512-BF16 or AMX,
:func:`stylenet.inference.cpu_has_native_bf16`); without them oneDNN emulates it and is
slower. Gram matrices and the losses stay float32 under autocast
(:func:`stylenet.losses.gram_matrix`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .inference import cpu_has_native_bf16
from .losses import LossTerms, PerceptualLoss

CPU_DTYPES = ("auto", "float32", "bfloat16")


@dataclass(frozen=True)
class StepOptions:
    """How a training step is computed (none of these changes the recipe).

    Attributes:
        autocast: dtype of the autocast region (generator and loss network), or None
            for float32. Grams and losses are float32 whatever it is.
        generator_channels_last: keep the generator's weights and activations in
            channels_last.
        output_conv_channels_last: run only the generator's last convolution (the one
            with 3 output channels) in channels_last, its input and output converted.
        lossnet_channels_last: run the loss network in channels_last.
        compile: ``torch.compile`` the generator and the loss network (a one-off
            compile, minutes on a small CPU).
    """

    autocast: torch.dtype | None = None
    generator_channels_last: bool = False
    output_conv_channels_last: bool = False
    lossnet_channels_last: bool = False
    compile: bool = False

    @classmethod
    def for_device(
        cls, device: torch.device | str, *, cpu_dtype: str = "auto", channels_last: bool = False
    ) -> StepOptions:
        """Return the measured-best options for ``device``.

        Args:
            device: the training device.
            cpu_dtype: on CPU, ``float32``, ``bfloat16``, or ``auto`` (bfloat16 when the
                CPU has native bf16 instructions).
            channels_last: on CUDA, channels_last for generator and loss network (off by
                default: with instance norm it measured slower on an H100).
        """
        device = torch.device(device)
        if device.type == "cuda":
            return cls(torch.bfloat16, channels_last, channels_last)
        if cpu_dtype not in CPU_DTYPES:
            raise ValueError(f"cpu_dtype must be one of {CPU_DTYPES}, got {cpu_dtype!r}")
        bf16 = cpu_dtype == "bfloat16" or (cpu_dtype == "auto" and cpu_has_native_bf16())
        return cls(torch.bfloat16 if bf16 else None, output_conv_channels_last=True)

    def autocast_context(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        """Return the autocast region these options ask for (a no-op for float32)."""
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast)

    def describe(self) -> dict[str, Any]:
        """Return a JSON-able summary (for metrics and benchmark output)."""
        return {
            "autocast": str(self.autocast).removeprefix("torch.") if self.autocast else None,
            "generator_channels_last": self.generator_channels_last,
            "output_conv_channels_last": self.output_conv_channels_last,
            "lossnet_channels_last": self.lossnet_channels_last,
            "compile": self.compile,
        }


def _format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


class TrainStep:
    """One optimizer step: ``loss(generator(batch), batch)``, backward, Adam.

    Args:
        generator: the generator being trained (moved to the layout the options ask for).
        loss: the perceptual loss, its style targets set.
        optimizer: the optimizer over ``generator``'s parameters.
        device: where everything runs.
        options: how the step is computed.
    """

    def __init__(
        self,
        generator: nn.Module,
        loss: PerceptualLoss,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        options: StepOptions,
    ) -> None:
        """Prepare the networks' layouts (and compiled callables) for ``options``."""
        self.generator, self.loss, self.optimizer = generator, loss, optimizer
        self.device, self.options = device, options
        self.input_format = _format(options.generator_channels_last)
        generator.to(memory_format=self.input_format)
        loss.vgg.to(memory_format=_format(options.lossnet_channels_last))
        self._hooks: list[Any] = []
        if options.output_conv_channels_last and not options.generator_channels_last:
            self._output_conv_channels_last(generator)
        self._forward: Any = generator
        self._loss: Any = loss
        if options.compile:
            self._forward = torch.compile(generator)
            self._loss = torch.compile(loss)

    def _output_conv_channels_last(self, generator: nn.Module) -> None:
        convs = [m for m in generator.modules() if isinstance(m, nn.Conv2d)]
        if not convs or convs[-1].out_channels != 3:
            return
        conv = convs[-1].to(memory_format=torch.channels_last)
        to_cl = torch.channels_last
        self._hooks += [
            conv.register_forward_pre_hook(
                lambda _m, args: (args[0].contiguous(memory_format=to_cl),)
            ),
            conv.register_forward_hook(lambda _m, _args, out: out.contiguous()),
        ]

    def close(self) -> None:
        """Undo the layout changes: hooks removed, the generator's weights back to NCHW."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        self.generator.to(memory_format=torch.contiguous_format)
        self.loss.vgg.to(memory_format=torch.contiguous_format)

    def __call__(self, batch: torch.Tensor, lr: float) -> LossTerms:
        """Run one step on ``batch`` (N×3×H×W, pixel convention) at learning rate ``lr``."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=self.input_format)
        self.optimizer.zero_grad(set_to_none=True)
        with self.options.autocast_context(self.device):
            output = self._forward(batch)
            if not self.options.lossnet_channels_last:
                # The generator's layout would otherwise carry into the loss network.
                output = output.contiguous()
                batch = batch.contiguous()
            terms: LossTerms = self._loss(output, batch)
        terms.total.backward()
        self.optimizer.step()
        return terms


__all__ = ["CPU_DTYPES", "StepOptions", "TrainStep"]
