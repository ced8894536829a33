"""Every Block class of prefect-delivery, imported: what Prefect loads through the
``prefect.collections`` entry point, so a ``pip install`` shows them in the UI."""

from prefect_delivery.blocks import BLOCKS, __getattr__

globals().update({name: __getattr__(name) for name in BLOCKS})

__all__ = sorted(BLOCKS)
