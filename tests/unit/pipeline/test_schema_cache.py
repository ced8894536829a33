"""Every Block's JSON schema is made once per class (blocks/schema_cache.py), and what Prefect
gets from it is what it would have made itself."""

from __future__ import annotations

import importlib

import pytest
from prefect.blocks.core import Block
from pydantic.json_schema import GenerateJsonSchema

from prefect_delivery.blocks import BLOCKS
from prefect_delivery.blocks.schema_cache import SchemaOnce


def block_classes() -> list[type]:
    return [getattr(importlib.import_module(module), name) for name, module in BLOCKS.items()]


@pytest.mark.parametrize("cls", block_classes(), ids=lambda cls: cls.__name__)
def test_every_block_takes_the_cache_before_prefects_block(cls):
    mro = cls.__mro__
    assert SchemaOnce in mro, f"{cls.__name__} is not (SchemaOnce, Block)"
    assert mro.index(SchemaOnce) < mro.index(Block)


@pytest.mark.parametrize("cls", block_classes(), ids=lambda cls: cls.__name__)
def test_the_cached_schema_and_checksum_are_prefects_own(cls):
    uncached = super(SchemaOnce, cls).model_json_schema()
    assert cls.model_json_schema() == uncached
    assert cls.model_json_schema(by_alias=False) == super(SchemaOnce, cls).model_json_schema(
        by_alias=False
    )
    checksum = cls._calculate_schema_checksum()
    assert checksum == cls._calculate_schema_checksum(uncached)
    assert cls.model_json_schema()["secret_fields"] == uncached["secret_fields"]


def test_the_schema_is_generated_once_per_class_and_arguments():
    from prefect_delivery.blocks.environment import Environment
    from prefect_delivery.blocks.routing.haproxy import HAProxyRouter

    class Counting(GenerateJsonSchema):
        calls = 0

        def generate(self, *args, **kwargs):
            type(self).calls += 1
            return super().generate(*args, **kwargs)

    for _ in range(3):
        Environment.model_json_schema(schema_generator=Counting)
    assert Counting.calls == 1
    HAProxyRouter.model_json_schema(schema_generator=Counting)
    assert Counting.calls == 2  # another class is another schema
    Environment.model_json_schema(by_alias=False, schema_generator=Counting)
    assert Counting.calls == 3  # other arguments, another schema


def test_each_caller_gets_a_copy_of_its_own():
    from prefect_delivery.blocks.environment import Environment

    first = Environment.model_json_schema()
    first["properties"].clear()
    first["secret_fields"].append("changed")
    second = Environment.model_json_schema()
    assert second["properties"], "a caller's change reached the cache"
    assert "changed" not in second["secret_fields"]
    assert second is not Environment.model_json_schema()
