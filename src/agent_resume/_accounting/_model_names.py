"""Model names as providers, clouds and routers spell them, reduced to the name a price is under.

The rules, applied in this order (all case-insensitive):

- ``ft:BASE:org:suffix:id`` (an OpenAI fine-tune) is priced as ``BASE`` and
  marked as a fine-tune.
- A Bedrock model or inference-profile ID, with or without its ARN, region
  or ``global.`` prefix and ``-v1:0`` suffix
  (``global.anthropic.claude-sonnet-4-5-20250929-v1:0``,
  ``apac.anthropic.claude-sonnet-4-20250514-v1:0``) is the model after the
  vendor (``claude-sonnet-4-5-20250929``), on the ``aws`` provider.
- A Vertex AI path (``projects/p/locations/l/publishers/google/models/gemini-2.5-pro``,
  ``publishers/anthropic/models/claude-sonnet-4-5@20250929``) and Gemini's
  ``models/...`` are the name after ``models/``, on the ``google`` provider.
- A router's ``vendor/model`` (``openrouter/anthropic/claude-sonnet-4.5``,
  ``openai/gpt-4o``) is the part after the last ``/``, with the first part
  as the provider hint.
- Claude names written with dots (``claude-sonnet-4.5``, ``claude-3.5-haiku``)
  are written with dashes, as Anthropic's own IDs are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ModelRef", "parse_model"]

_BEDROCK = re.compile(
    r"^(?:arn:aws[\w-]*:bedrock:[^/]*/)?(?:(?:us|eu|apac|ap|jp|au|ca|us-gov|global)\.)?"
    r"(?P<vendor>anthropic|amazon|meta|mistral|cohere|ai21|deepseek|openai|qwen|writer)\."
    r"(?P<name>.+?)(?::\d+)?$"
)
_VERTEX = re.compile(r"^(?:.*/)?publishers/(?P<vendor>[\w-]+)/models/(?P<name>.+)$")
_CLAUDE_DOTS = re.compile(r"(?<=\d)\.(?=\d)")


@dataclass(frozen=True)
class ModelRef:
    """A model name read for pricing.

    Attributes:
        raw: The name as given, stripped and lower-cased.
        name: The name a price is looked up under.
        provider: A genai-prices provider ID hint (``aws``, ``google``,
            ``openrouter``, ...), or ``None``.
        fine_tune: Whether ``raw`` names a fine-tune priced as its base ``name``.
    """

    raw: str
    name: str
    provider: str | None = None
    fine_tune: bool = False


def parse_model(model: str) -> ModelRef:
    """Read a model name for pricing; see the module docstring for the rules.

    Args:
        model: The model name as the provider or the user reported it.

    Returns:
        The parsed name.
    """
    raw = model.strip().lower()
    name = raw
    provider: str | None = None
    fine_tune = False
    if name.startswith("ft:"):
        parts = name.split(":")
        if len(parts) > 1 and parts[1]:
            name = parts[1]
            fine_tune = True
    if (found := _BEDROCK.match(name)) is not None:
        name, provider = found["name"], "aws"
    elif (found := _VERTEX.match(name)) is not None:
        name, provider = found["name"], "google"
    elif name.startswith("models/"):
        name = name[len("models/") :]
    elif "/" in name:
        provider = name.split("/", 1)[0] or None
        name = name.rsplit("/", 1)[1]
    if name.startswith("claude"):
        name = _CLAUDE_DOTS.sub("-", name)
    return ModelRef(raw=raw, name=name, provider=provider, fine_tune=fine_tune)
