"""Stage tasks of the delivery pipeline, one module per stage, plus their pure decision logic."""
