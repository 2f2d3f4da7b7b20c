"""Model routing: `provider/model` names (or a bare model name) to a provider and model id."""
from __future__ import annotations

from ..errors import ApiError
from .base import Provider


class ModelRegistry:
    def __init__(self, default: str):
        self.default = default
        self.providers: dict[str, Provider] = {}

    def add(self, provider: Provider) -> None:
        self.providers[provider.name] = provider

    def names(self) -> list[str]:
        return [f"{p.name}/{m['id']}" for p in self.providers.values() for m in p.models()]

    def resolve(self, name: str | None) -> tuple[Provider, str]:
        name = name or self.default
        prefix, _, model = name.partition("/")
        if model and prefix in self.providers:
            candidates = [(self.providers[prefix], model)]
        else:  # a bare model name: whichever provider has it
            candidates = [(p, name) for p in self.providers.values()]
        for provider, model_id in candidates:
            if any(m["id"] == model_id for m in provider.models()):
                return provider, model_id
        raise ApiError(404, "model_not_found",
                       f"unknown model {name!r}; available: {', '.join(self.names()) or 'none'}")

    def listing(self) -> dict:
        return {
            "default": self.default,
            "providers": [
                {"name": p.name, "models": [{**m, "id": f"{p.name}/{m['id']}"} for m in p.models()]}
                for p in self.providers.values()
            ],
        }
