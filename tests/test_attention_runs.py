"""The transformers engine's decode attention over runs of rows: each run reads the cache only from
its earliest real column, so a long row beside short ones no longer has them read its padding."""
import torch
from torch.nn.functional import scaled_dot_product_attention

from rill.providers.local import transformers as engine


def left_padded(lengths: list[int], width: int) -> torch.Tensor:
    return torch.tensor([[0] * (width - n) + [1] * n for n in lengths])


def test_a_long_row_among_short_ones_gets_a_run_of_its_own():
    mask = left_padded([120, 4000, 90, 100], 4000)
    assert engine.row_runs(mask) == [(0, 1, 3880), (1, 2, 0), (2, 4, 3900)]


def test_rows_of_like_lengths_stay_one_run():
    assert engine.row_runs(left_padded([300, 250, 280, 310], 310)) == [(0, 4, 0)]
    assert engine.row_runs(left_padded([64], 64)) == [(0, 1, 0)]


def test_a_run_costs_its_reads_plus_a_fixed_cost(monkeypatch):
    mask = left_padded([100, 150, 400], 400)  # grouping the first two saves 250 reads, the third 300
    assert engine.row_runs(mask) == [(0, 3, 0)]  # less than RUN_COST each: not worth their calls
    monkeypatch.setattr(engine, "RUN_COST", 0)
    assert engine.row_runs(mask) == [(0, 1, 300), (1, 2, 250), (2, 3, 0)]


def test_a_row_gapped_by_failed_guesses_starts_at_its_first_real_column(monkeypatch):
    monkeypatch.setattr(engine, "RUN_COST", 0)
    mask = left_padded([50, 200], 200)
    mask[0, 170:180] = 0  # a failed guess's columns, masked mid-row
    assert engine.row_runs(mask) == [(0, 1, 150), (1, 2, 0)]


def test_runs_attend_as_the_whole_padded_cache_does(monkeypatch):
    """The same outputs as one SDPA over every column with the key and value heads repeated (what
    transformers does with more than one query a row): the padding each run skips was masked."""
    monkeypatch.setattr(engine, "RUN_COST", 0)
    torch.manual_seed(0)
    rows, heads, kv_heads, queries, width = 4, 9, 3, 3, 200
    mask = left_padded([30, 200, 12, 75], width)
    mask[:, -queries:] = 1  # each row's token and guesses
    query = torch.randn(rows, heads, queries, 16)
    key, value = torch.randn(rows, kv_heads, width, 16), torch.randn(rows, kv_heads, width, 16)
    causal = torch.ones(queries, queries).tril().bool()
    full = mask[:, None, None, :].repeat(1, 1, queries, 1).bool()
    full[..., -queries:] &= causal
    runs = engine.row_runs(mask)
    assert len(runs) == rows

    class Layer:
        layer_idx = 0

    got, _ = engine.masked_attention(Layer(), query, key, value, full, runs, scaling=0.25)
    repeated = (t.repeat_interleave(heads // kv_heads, dim=1) for t in (key, value))
    expected = scaled_dot_product_attention(query, *repeated, attn_mask=full, scale=0.25).transpose(1, 2)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected)
