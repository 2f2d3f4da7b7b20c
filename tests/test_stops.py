"""Fast tier: stop strings found across the pieces a reply streams in (providers/local/stops.py)."""
from rill.providers.local.stops import StopMatcher


def test_stop_matcher_holds_back_a_partial_match():
    m = StopMatcher(("END",))
    assert m.push("abc E") == ("abc ", False)
    assert m.push("N") == ("", False)
    assert m.push("x") == ("ENx", False)
    assert m.push("yyEND zz") == ("yy", True) and m.matched == "END"
    m = StopMatcher(("\n\n",))
    assert m.push("a\n") == ("a", False) and m.flush() == "\n"


def test_the_earliest_of_several_stops_wins():
    m = StopMatcher(("world", "lo"))
    assert m.push("hello world") == ("hel", True) and m.matched == "lo"
