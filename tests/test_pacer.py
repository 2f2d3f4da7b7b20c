"""Fast tier: how much of a long prompt each step prefills (providers/local/pacer.py)."""
from rill.providers.local.pacer import PrefillPacer


def test_prompt_slices_fit_the_stall_bound_from_measured_step_costs():
    pacer = PrefillPacer(most=128)
    assert pacer.budget() == 8  # small until measured
    pacer.record(0.020, 0)  # a plain decode step: 20 ms

    def step(fixed: float, per_token: float) -> None:
        size = pacer.budget()
        pacer.record(0.020 + fixed + per_token * size, size)

    for _ in range(60):  # llama.cpp on a CPU: 4 ms a prompt token, so about 5 fit in 2x a step
        step(0.0, 0.004)
    assert 3 <= pacer.budget() <= 6
    for _ in range(60):  # transformers: a second forward pass costs 10 ms, then 0.1 ms a token
        step(0.010, 0.0001)
    assert 70 <= pacer.budget() <= 110
    for _ in range(60):  # a second pass costing more than the bound: a quarter of its worth in tokens
        step(0.030, 0.0005)
    assert 12 <= pacer.budget() <= 18
    for _ in range(60):  # a GPU: prompt tokens nearly free, capped by the setting
        step(0.0, 0.000001)
    assert pacer.budget() == 128
