"""service.runtime.mixed without a service: which network runs a batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from service.runtime.generators import LoadedGenerator, module_nbytes
from service.runtime.mixed import Mixer, TrunkKey
from service.runtime.resolver import ModelKey
from stylenet import GeneratorConfig, build_generator, generator_to_bytes, read_info
from stylenet.multistyle import norm_parameter_names


@dataclass
class _Item:
    generator: LoadedGenerator


def _loaded(key: ModelKey, model: torch.nn.Module) -> LoadedGenerator:
    info = read_info(generator_to_bytes(model))
    return LoadedGenerator(key, model, info, module_nbytes(model))


def test_one_style_runs_on_its_own_generator_even_when_reloaded():
    model = build_generator(GeneratorConfig(width=0.25))
    key = ModelKey("a", "i", 1)
    first, reloaded = _loaded(key, model), _loaded(key, model)  # evicted, loaded again
    mixer = Mixer(enabled=False)
    assert mixer.model_key(first) == key
    assert mixer.batch_generator([_Item(first), _Item(reloaded)]) is first


def test_a_family_shares_a_key_and_its_convolutions():
    torch.manual_seed(0)
    base = build_generator(GeneratorConfig(width=0.25)).eval()
    other = build_generator(GeneratorConfig(width=0.25)).eval()
    other.load_state_dict(base.state_dict())
    with torch.no_grad():
        for name, param in other.named_parameters():
            if name in set(norm_parameter_names(other)):
                param.add_(1.0)
    a, b = _loaded(ModelKey("a", "i", 1), base), _loaded(ModelKey("b", "i", 1), other)
    mixer = Mixer(enabled=True)
    mixer._join(a)
    mixer._join(b)
    assert mixer.model_key(a) == mixer.model_key(b) == TrunkKey(mixer.model_key(a).digest)
    whole = module_nbytes(base)
    assert a.nbytes == whole and b.nbytes < whole / 20  # the convolutions counted once
    conv = "down.0.0.1.weight"
    assert (
        dict(a.model.named_parameters())[conv].data_ptr()
        == dict(b.model.named_parameters())[conv].data_ptr()
    )
    ran = mixer.batch_generator([_Item(a), _Item(b)])
    assert isinstance(ran.key, TrunkKey) and ran.nbytes == 0
    del a, b, ran
    import gc

    gc.collect()
    assert mixer.families == 0  # the family goes with its last member
