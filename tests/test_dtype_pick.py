"""The transformers engine's dtype pick at load, on scripted step timings (an AVX2-only CPU's
shape: bfloat16 wins alone, float32 batched)."""
import torch

from rill.providers.local.transformers import HFModel

# ms per decode step, as measured on a 2-core AVX2-only machine
STEPS = {torch.float32: {1: 88, 2: 151, 4: 165, 8: 155, 16: 160},
         torch.bfloat16: {1: 50, 2: 74, 4: 111, 8: 190, 16: 360}}


def test_both_copies_stay_and_float32_takes_the_larger_batches_untimed(monkeypatch):
    model = HFModel.__new__(HFModel)
    model.device, model.max_batch, model.dtype_for = "cpu", 16, {}
    model.model = torch.nn.Linear(4, 4)
    model.copies = {torch.float32: model.model}
    timed = []

    def time_steps(copy, rows):
        dtype = next(copy.parameters()).dtype
        timed.append((dtype, rows))
        return STEPS[dtype][rows] / 1000

    monkeypatch.setattr(model, "_time_steps", time_steps)
    model._pick_cpu_dtype()
    assert model.dtype_for == {1: torch.bfloat16, 2: torch.bfloat16, 4: torch.bfloat16, 8: torch.float32,
                               16: torch.float32}
    assert set(model.copies) == {torch.float32, torch.bfloat16}
    assert model.model_for(1) is model.copies[torch.bfloat16] and model.model_for(12) is model.copies[torch.float32]
    assert (torch.bfloat16, 16) not in timed and (torch.float32, 8) in timed
