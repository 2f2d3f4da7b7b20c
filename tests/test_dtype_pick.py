"""The transformers engine's dtype pick at load, on scripted step timings (an AVX2-only CPU's
shape: bfloat16 wins alone, float32 batched)."""
import torch

from rill.providers.local.transformers import HFModel

# ms per decode step, as measured on a 2-core AVX2-only machine
STEPS = {torch.float32: {1: 88, 2: 151, 4: 165, 8: 155, 16: 160},
         torch.bfloat16: {1: 50, 2: 74, 4: 111, 8: 190, 16: 360}}


def picked(monkeypatch, steps=STEPS, noise=None) -> tuple[HFModel, list]:
    """A model's pick on `steps`; `noise`: (dtype, rows) -> ms added to its first timing only."""
    model = HFModel.__new__(HFModel)
    model.device, model.max_batch, model.dtype_for = "cpu", 16, {}
    model.model = torch.nn.Linear(4, 4)
    model.copies = {torch.float32: model.model}
    timed = []

    def time_steps(copy, rows):
        dtype = next(copy.parameters()).dtype
        extra = (noise or {}).get((dtype, rows), 0) if (dtype, rows) not in timed else 0
        timed.append((dtype, rows))
        return (steps[dtype][rows] + extra) / 1000

    monkeypatch.setattr(model, "_time_steps", time_steps)
    model._pick_cpu_dtype()
    return model, timed


def test_both_copies_stay_where_bfloat16_wins_alone_and_float32_batched(monkeypatch):
    model, timed = picked(monkeypatch)
    assert model.dtype_for == {1: torch.bfloat16, 2: torch.bfloat16, 4: torch.bfloat16, 8: torch.float32,
                               16: torch.float32}
    assert set(model.copies) == {torch.float32, torch.bfloat16}
    assert model.model_for(1) is model.copies[torch.bfloat16] and model.model_for(12) is model.copies[torch.float32]
    assert timed.count((torch.bfloat16, 16)) == 2  # 2.25x apart: not a third time
    assert timed.count((torch.float32, 8)) == 3  # 1.23x apart


def test_bfloat16_losing_alone_is_still_timed_batched_where_it_wins(monkeypatch):
    """A CPU with native bf16 (AVX512-BF16): float32 a little faster alone, bfloat16 far faster
    batched. The old pick gave float32 every size from the first it won, untimed."""
    steps = {torch.float32: {1: 32, 2: 40, 4: 60, 8: 71, 16: 85}, torch.bfloat16: {1: 35, 2: 30, 4: 33, 8: 44, 16: 52}}
    model, _ = picked(monkeypatch, steps)
    assert set(model.dtype_for.values()) == {torch.bfloat16} and set(model.copies) == {torch.bfloat16}


def test_a_slow_moment_while_timing_does_not_decide_the_pick(monkeypatch):
    """Each size is timed three times, the dtypes alternating: one slow float32 step at batch 8
    (the machine busy for a moment) does not hand batch 8 and 16 to bfloat16."""
    model, timed = picked(monkeypatch, noise={(torch.float32, 8): 200})
    assert model.dtype_for[8] == model.dtype_for[16] == torch.float32
    assert timed.count((torch.float32, 8)) == timed.count((torch.bfloat16, 8)) == 3


def test_one_copy_where_bfloat16_gains_little_alone(monkeypatch):
    steps = {torch.float32: {**STEPS[torch.float32], 1: 52}, torch.bfloat16: STEPS[torch.bfloat16]}
    model, _ = picked(monkeypatch, steps)
    assert set(model.dtype_for.values()) == {torch.float32} and set(model.copies) == {torch.float32}
    assert model.model_for(1) is model.model_for(16) is model.copies[torch.float32]


def test_a_batch_on_float32_keeps_it_until_it_is_half_the_size_float32_starts_at(monkeypatch):
    """Rows leaving and joining around 8 would convert the batch's cache at every crossing."""
    model, _ = picked(monkeypatch)
    f32, bf16 = model.copies[torch.float32], model.copies[torch.bfloat16]
    assert model.model_for(7) is bf16 and model.model_for(8) is f32  # growing: float32 from 8 rows
    assert model.model_for(7, torch.float32) is f32 and model.model_for(5, torch.float32) is f32
    assert model.model_for(4, torch.float32) is bf16  # half: bfloat16 again
    assert model.model_for(7, torch.bfloat16) is bf16
