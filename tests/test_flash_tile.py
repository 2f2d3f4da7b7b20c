"""The choice to fill a flash-attention tile for a follow-up: it starts from the fit and follows the
steps this machine measures (fast tier; the engine's use of it is in test_kv_cache.py)."""
from rill.providers.local.flash_tile import FLASH_TILE, TileChoice, one_at_a_time_ms, tile_ms


def steps(choice: TileChoice, way: str, ratio: float, context: int, count: int = 3) -> None:
    """`count` steps of `way` after `context` tokens that took `ratio` times the fit."""
    for _ in range(count):
        if way == "one":
            choice.record(24, context, ratio * one_at_a_time_ms(24, context) / 1000)
        else:
            choice.record(FLASH_TILE, context, ratio * tile_ms(context) / 1000)


def test_unmeasured_it_follows_the_fit():
    choice = TileChoice()
    assert choice.pays(25, 1100) and choice.pays(40, 300)
    assert not choice.pays(25, 64) and not choice.pays(20, 300)


def test_where_one_query_at_a_time_is_cheap_the_tile_is_left_untried_where_it_cannot_pay():
    """As on an AMD EPYC: 24 tokens after 1,000 in 135 ms one at a time, a tile in 264."""
    choice = TileChoice()
    steps(choice, "one", 135 / one_at_a_time_ms(24, 1000), 1000)
    assert not choice.pays(24, 1000) and not choice.pays(40, 1000)  # the tile unmeasured: at the fit
    assert choice.pays(63, 1000)  # 63 at 5.6 ms against the fit's 263 ms for a tile
    steps(choice, "tile", 264 / tile_ms(1000), 1000, count=1)
    assert choice.pays(63, 1000) and not choice.pays(45, 1000) and not choice.pays(40, 2000)


def test_where_the_tile_is_cheap_it_stays():
    """As on the Intel machine the fit came from: 25 after 1,100 in 358 ms one at a time, a tile in 281."""
    choice = TileChoice()
    steps(choice, "one", 358 / one_at_a_time_ms(25, 1100), 1100)
    steps(choice, "tile", 281 / tile_ms(1100), 1100)
    assert choice.pays(25, 1100) and not choice.pays(10, 1100)


def test_after_tiles_only_one_query_at_a_time_is_tried_once():
    choice = TileChoice()
    steps(choice, "tile", 1.0, 1100, count=TileChoice.TRY)
    assert not choice.pays(25, 1100)
    steps(choice, "one", 1.0, 1100, count=1)
    assert choice.pays(25, 1100)


def test_the_last_sixteen_steps_decide_and_small_or_other_steps_are_no_measure():
    choice = TileChoice()
    steps(choice, "one", 0.4, 1000, count=16)
    steps(choice, "tile", 1.0, 1000, count=16)
    assert not choice.pays(30, 1000)
    steps(choice, "one", 1.0, 1000, count=9)  # the machine got slower one query at a time: 9 of the last 16
    assert choice.pays(30, 1000)
    before = {way: list(r) for way, r in choice.ratios.items()}
    choice.record(TileChoice.FEWEST - 1, 1000, 0.1)  # mostly the weights read once
    choice.record(FLASH_TILE + 1, 1000, 0.1)  # neither way alone
    choice.record(512, 1000, 1.0)
    assert {way: list(r) for way, r in choice.ratios.items()} == before
