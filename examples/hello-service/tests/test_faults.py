import pytest

from hello_service.faults import Fault, FaultSpecError, parse_fault


@pytest.mark.parametrize("spec", ["none", "", "NONE", "  none  "])
def test_no_fault(spec):
    assert parse_fault(spec) == Fault("none")


def test_crash():
    assert parse_fault("crash").crashes


def test_unhealthy():
    fault = parse_fault("unhealthy")
    assert fault.unhealthy and not fault.crashes


@pytest.mark.parametrize("spec,share", [("error:0.3", 0.3), ("error:1", 1.0), ("error:0.01", 0.01)])
def test_error_share(spec, share):
    assert parse_fault(spec).error_share == pytest.approx(share)


@pytest.mark.parametrize("spec,delay", [("slow:0.2", 0.2), ("slow:2", 2.0)])
def test_slow_delay(spec, delay):
    assert parse_fault(spec).delay_s == pytest.approx(delay)


@pytest.mark.parametrize(
    "spec", ["explode", "error", "error:abc", "error:0", "error:1.5", "slow:0", "slow:-1", "crash:1"]
)
def test_bad_specs_are_refused_with_the_allowed_values(spec):
    with pytest.raises(FaultSpecError) as info:
        parse_fault(spec)
    assert spec in str(info.value)


def test_env_overrides_baked(monkeypatch):
    from hello_service.faults import current_fault

    monkeypatch.setenv("HELLO_FAULT", "slow:0.5")
    assert current_fault().delay_s == 0.5


def test_baked_default_is_a_good_release(monkeypatch):
    from hello_service.faults import current_fault

    monkeypatch.delenv("HELLO_FAULT", raising=False)
    assert current_fault().kind in ("none", "crash", "crash-leak", "unhealthy", "error", "slow")


def test_late_fault_starts_after_its_delay():
    fault = parse_fault("late:30:error:0.05")
    assert fault.after_s == 30 and fault.error_share == pytest.approx(0.05)
    assert parse_fault("late:1.5:slow:0.2").delay_s == pytest.approx(0.2)
    for bad in ("late:x:error:0.1", "late:5:crash", "late:0:error:0.1", "late:5"):
        with pytest.raises(FaultSpecError):
            parse_fault(bad)


def test_crash_leak_crashes():
    fault = parse_fault("crash-leak")
    assert fault.crashes and fault.leaks
