import logging

from pydantic import SecretStr

from prefect_delivery.blocks.secrets import MASK, MaskSecrets, mask, reveal


def test_reveal_returns_the_value_and_masks_it_afterwards():
    value = reveal(SecretStr("s3cret-marker-4711"))
    assert value == "s3cret-marker-4711"
    assert mask(f"postgresql://u:{value}@127.0.0.1/db") == f"postgresql://u:{MASK}@127.0.0.1/db"


def test_short_values_are_not_masked_everywhere():
    reveal(SecretStr("ab"))
    assert mask("a b ab") == "a b ab"


def test_filter_rewrites_records_and_tracebacks():
    secret = reveal(SecretStr("tok-XYZ-123456"))
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token is %s", (secret,), None)
    assert MaskSecrets().filter(record)
    assert record.getMessage() == f"token is {MASK}"
    try:
        raise RuntimeError(f"failed with {secret}")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    MaskSecrets().filter(record)
    assert secret not in (record.exc_text or "") and record.exc_info is None


def test_installed_filter_masks_real_handler_output(caplog):
    import io

    from prefect_delivery.blocks.secrets import install

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    try:
        secret = reveal(SecretStr("handler-secret-998877"))
        install()
        logging.getLogger("some.library").warning("connecting with %s", secret)
    finally:
        logging.getLogger().removeHandler(handler)
    assert secret not in stream.getvalue() and MASK in stream.getvalue()
