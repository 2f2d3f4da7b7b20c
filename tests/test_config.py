"""Fast tier: settings from RILL_* variables."""
import pytest

from rill.config import Settings, comma_list


@pytest.mark.parametrize("raw,value", [("false", False), ("0", False), ("off", False), ("True", True), ("1", True)])
def test_booleans_read_as_people_write_them(raw, value, monkeypatch):
    assert Settings.from_env({"RILL_MODEL": "m"}).model == "m"
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class WithFlag(Settings):
        flag: bool = not value

    assert WithFlag.from_env({"RILL_FLAG": raw}).flag is value


def test_a_bad_value_names_the_variable():
    with pytest.raises(SystemExit, match="RILL_PORT='http'"):
        Settings.from_env({"RILL_PORT": "http"})
    with pytest.raises(SystemExit, match="RILL_HTTP_IDLE_SECONDS"):
        Settings.from_env({"RILL_HTTP_IDLE_SECONDS": "soon"})


def test_comma_lists_drop_spaces_and_blanks():
    assert comma_list(" alice, bob ,,") == ["alice", "bob"]
    assert comma_list("") == []


def test_a_setting_of_an_earlier_release_is_named_not_silently_ignored(caplog):
    Settings.from_env({"RILL_SESSION_TTL_SECONDS": "3600", "RILL_MODEL": "m"})
    assert "RILL_SESSION_TTL_SECONDS is no longer a setting" in caplog.text
