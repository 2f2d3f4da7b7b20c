"""Whether a follow-up's few new tokens should fill a tile of llama.cpp's CPU flash attention.

With an F16 cache, llama.cpp attends a step of fewer than FLASH_TILE queries one query at a time,
each over every cell, and a step of FLASH_TILE or more through a tiled path. After a long kept
conversation the engine can decode the kept tokens just before a follow-up's new ones again, to
fill a tile. Which is faster depends on the CPU: 25 new tokens after 1,100 took 358 ms one at a
time against 281 ms for a tile on an Intel machine with AMX, and 24 after 1,000 took 135 against
264 on an AMD EPYC, where a tile paid only from about 47 new tokens. So the choice starts from
the Intel fit and follows what this machine's own follow-ups take."""
from __future__ import annotations

import collections
import statistics

FLASH_TILE = 64  # queries in a step from which llama.cpp's CPU flash attention takes its tiled path


def one_at_a_time_ms(tokens: int, context: int) -> float:
    """The fit on the Intel machine (the wheel's model, 2 threads, bench/context_bench.py)."""
    return tokens * (3.3 + 0.0103 * context)


def tile_ms(context: int) -> float:
    return 180 + 0.083 * context


class TileChoice:
    """Each way's measured steps, as their ratio to the fit (the median of the last 16): the fit
    scaled to this machine; a way not measured yet is taken at the fit. A growing chat's follow-ups
    measure one query at a time before the fit would take the tile, so where that is cheap the
    tile is not tried for nothing; where every follow-up took the tile, TRY of them, the next goes
    one query at a time once. A margin of a fifth keeps the tile to the cases that clearly pay.
    Steps of fewer than FEWEST tokens are not measures: their cost is mostly the weights read once."""

    TRY = 3
    MARGIN = 1.2
    FEWEST = 16

    def __init__(self):
        self.ratios = {way: collections.deque(maxlen=16) for way in ("one", "tile")}

    def record(self, tokens: int, context: int, seconds: float) -> None:
        """A step of one row's `tokens` prompt tokens after `context` cached ones, nothing else in it."""
        if self.FEWEST <= tokens < FLASH_TILE:
            self.ratios["one"].append(seconds * 1000 / one_at_a_time_ms(tokens, context))
        elif tokens == FLASH_TILE:
            self.ratios["tile"].append(seconds * 1000 / tile_ms(context))

    def pays(self, tokens: int, context: int) -> bool:
        one, tile = self.ratios["one"], self.ratios["tile"]
        if not one and len(tile) >= self.TRY:
            return False
        scale_one = statistics.median(one) if one else 1.0
        scale_tile = statistics.median(tile) if tile else 1.0
        return one_at_a_time_ms(tokens, context) * scale_one > self.MARGIN * tile_ms(context) * scale_tile
