"""A Block's JSON schema, made once per class instead of on every call.

Prefect's ``Block`` asks pydantic for the class's JSON schema (``model_json_schema``) many
times over one ``save()``: for the schema checksum, for the block schema, and once for *every
field* while it serialises the document with its secrets (``Block._field_has_secrets``). For
``Environment``, with its nested target, router and settings, that was about 1.2 CPU-seconds
a save on this machine, nearly all of it rebuilding the same schema. A class's schema cannot
change while the process runs (it is a function of the class's fields and of the arguments),
so each (class, arguments) pair is generated once and every caller gets its own copy, free to
change it as Prefect's callers do. The copy is made from the schema's JSON text (a tenth of what
``copy.deepcopy`` costs, and ``_field_has_secrets`` asks once per field); a schema that JSON
would not give back equal (no pydantic schema seen so far) is deep-copied instead.

Every Block of this project takes the mixin first: ``class Environment(SchemaOnce, Block)``.
"""

from __future__ import annotations

import copy
import json
import threading
from typing import Any, Literal

from pydantic.json_schema import GenerateJsonSchema

#: (class, arguments) -> (the schema, its JSON text or None when JSON would change it)
_schemas: dict[tuple, tuple[dict[str, Any], str | None]] = {}
_lock = threading.Lock()


class SchemaOnce:
    """Mixin for a ``prefect.blocks.core.Block``: ``model_json_schema`` generated once per
    class and arguments (what Prefect's Block adds to pydantic's schema included)."""

    @classmethod
    def model_json_schema(
        cls,
        by_alias: bool = True,
        ref_template: str = "#/definitions/{model}",
        schema_generator: type[GenerateJsonSchema] = GenerateJsonSchema,
        mode: Literal["validation", "serialization"] = "validation",
        **kwargs: Any,
    ) -> dict[str, Any]:
        if kwargs:  # arguments a later pydantic or Prefect adds: not cached, not guessed at
            return super().model_json_schema(  # type: ignore[misc]
                by_alias, ref_template, schema_generator, mode, **kwargs
            )
        key = (cls, by_alias, ref_template, schema_generator, mode)
        entry = _schemas.get(key)
        if entry is None:
            made = super().model_json_schema(  # type: ignore[misc]
                by_alias, ref_template, schema_generator, mode
            )
            with _lock:
                entry = _schemas.setdefault(key, (made, _as_json(made)))
        schema, text = entry
        return json.loads(text) if text is not None else copy.deepcopy(schema)


def _as_json(schema: dict[str, Any]) -> str | None:
    """The schema as JSON text, if loading that text gives the same schema back."""
    try:
        text = json.dumps(schema)
    except (TypeError, ValueError):
        return None
    return text if json.loads(text) == schema else None
