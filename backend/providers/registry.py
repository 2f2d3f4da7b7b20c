"""Model routing: `provider/model` names (or a bare model name) to a provider and model id."""
from __future__ import annotations

from .. import metrics
from ..refusals import Refused
from .base import Provider


class ModelRegistry:
    def __init__(self, default: str):
        self.default = default
        self.providers: list[Provider] = []

    def add(self, provider: Provider) -> None:
        self.providers.append(provider)
        for model in provider.models():
            metrics.declare_model(f"{provider.name}/{model['id']}")

    def remove(self, provider: Provider) -> None:
        self.providers.remove(provider)

    def names(self) -> list[str]:
        return [f"{p.name}/{m['id']}" for p in self.providers for m in p.models()]

    def find(self, name: str | None) -> tuple[Provider, str] | None:
        name = name or self.default
        prefix, _, model = name.partition("/")
        for provider in self.providers:
            if any(m["id"] == model for m in provider.models()) and provider.name == prefix:
                return provider, model
        for provider in self.providers:
            if provider.name == prefix and model and provider.passthrough:
                return provider, model
        for provider in self.providers:  # a bare model name: whichever provider has it
            if any(m["id"] == name for m in provider.models()):
                return provider, name
        return None

    def resolve(self, name: str | None) -> tuple[Provider, str]:
        found = self.find(name)
        if found is None:
            raise Refused("model_not_found",
                           f"unknown model {name or self.default!r}; available: {', '.join(self.names()) or 'none'}")
        reason = found[0].unavailable()
        if reason:
            raise Refused("provider_not_configured", reason)
        return found

    def listing(self) -> dict:
        return {
            "default": self.default,
            "providers": [
                {"name": p.name, "available": p.unavailable() is None,
                 "models": [{**m, "id": f"{p.name}/{m['id']}"} for m in p.models()]}
                for p in self.providers
            ],
        }
