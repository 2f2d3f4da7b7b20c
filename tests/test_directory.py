"""Fast tier: the provider directory (providers/directory.py): names to providers, loading each
provider in its own thread, jobs to their provider."""
import time

import pytest

from rill.providers.base import ChatMessage, Finish, GenerationOptions, Job
from rill.providers.directory import ProviderDirectory
from rill.refusals import Refused
from tests.scripted import ScriptedProvider


class Unloadable(ScriptedProvider):
    """A provider whose loading fails, as a model file that is not one would."""
    name = "broken"

    def __init__(self):
        self.state, self.error, self.closed = "loading", "", None

    def models(self):
        return [{"id": "model", "state": self.state}]

    def load(self):
        self.state, self.error = "error", "not a model"

    def close(self, reason):
        self.closed = reason


def wait_for(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_names_resolve_to_a_provider_and_a_model():
    directory = ProviderDirectory("scripted/echo")
    scripted = ScriptedProvider()
    directory.add(scripted)
    assert directory.resolve(None) == (scripted, "echo")  # the default
    assert directory.resolve("scripted/slow") == (scripted, "slow")
    assert directory.resolve("think") == (scripted, "think")  # a bare name: whichever provider has it
    with pytest.raises(Refused) as refused:
        directory.resolve("scripted/nope")
    assert refused.value.type == "model_not_found" and "scripted/echo" in refused.value.message
    listing = directory.listing()
    assert listing["default"] == "scripted/echo"
    assert [m["id"] for m in listing["providers"][0]["models"]][:2] == ["scripted/echo", "scripted/fail"]


def test_a_removable_provider_that_cannot_load_is_dropped_and_another_stays():
    directory = ProviderDirectory("scripted/echo")
    kept, dropped = Unloadable(), Unloadable()
    directory.add(kept)
    directory.open()
    directory.add(dropped, removable=True)  # after opening: it loads at once
    wait_for(lambda: dropped.closed is not None)
    assert "not a model" in dropped.closed
    assert directory.providers == [kept]


def test_a_job_opens_the_directory_and_reaches_its_provider():
    directory = ProviderDirectory("scripted/echo")
    scripted = ScriptedProvider()
    directory.add(scripted)
    job = Job(scripted, "echo", [ChatMessage("user", "hello there")], GenerationOptions())
    directory.submit(job)
    items = []
    while not isinstance(item := job.channel.get(timeout=5), Finish):
        items.append(item.text)
    assert items == ["hello ", "there "] and item.reason == "stop"
