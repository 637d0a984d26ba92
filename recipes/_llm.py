"""Shared by the recipes: a simulated LLM by default, any OpenAI-compatible endpoint on request."""

import argparse
import os
from typing import Any

from agent_resume.testing import SimulatedLLM, reply_text

__all__ = ["add_llm_arguments", "make_llm", "reply_text"]


def add_llm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"))
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"))
    parser.add_argument("--model", default=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"))
    parser.add_argument("--latency", type=float, default=0.01, help="simulated latency (s)")


class OpenAIChat:
    """The same two methods as SimulatedLLM, backed by the openai SDK (imported lazily)."""

    def __init__(self, base_url: str, api_key: str, model: str) -> None:
        import openai

        self.client = openai.OpenAI(base_url=base_url, api_key=api_key)
        self.model = model
        self.prices = None  # the built-in price table

    def complete(self, messages: list[dict[str, Any]]) -> Any:
        return self.client.chat.completions.create(model=self.model, messages=messages)


def make_llm(args: argparse.Namespace) -> Any:
    """A SimulatedLLM, or an OpenAI-compatible client when --base-url and --api-key are given."""
    if args.base_url and args.api_key:
        return OpenAIChat(args.base_url, args.api_key, args.model)
    return SimulatedLLM(latency=args.latency, seed=42)
