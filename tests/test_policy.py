"""Policy loading: strict, hashed, never falling back to defaults."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from workbench.errors import ConfigError
from workbench.policy import (
    RiskPolicy,
    StrategyParams,
    load_policy,
    load_strategy_params,
    policy_hash,
)

ROOT = Path(__file__).resolve().parents[1]
RISK_TEXT = (ROOT / "policies" / "risk_policy.yaml").read_text()
PARAMS_TEXT = (ROOT / "policies" / "strategy_params.yaml").read_text()


def write(tmp_path: Path, text: str, name: str = "risk_policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_policies_load_with_the_careful_defaults() -> None:
    """The shipped YAML files load into frozen models with the documented defaults."""
    policy = load_policy(ROOT / "policies")
    params = load_strategy_params(ROOT / "policies")
    assert isinstance(policy, RiskPolicy) and isinstance(params, StrategyParams)
    assert policy.limits.max_notional_per_trade == Decimal(25000)
    assert policy.limits.max_position_weight == Decimal("0.10")
    assert policy.orders.require_limit_orders and not policy.limits.allow_shorts
    assert params.circuit_breaker.max_1d_drawdown_pct == Decimal("0.05")
    assert params.smart_stop.atr_multiplier == Decimal(2)


def test_yaml_floats_are_exact_decimals() -> None:
    """A YAML float such as 0.1 is read as Decimal('0.1'), not a binary float."""
    params = load_strategy_params(ROOT / "policies")
    assert params.costs.slippage_k == Decimal("0.1")
    assert type(params.costs.per_share) is Decimal


def test_policy_hash_is_stable_and_changes_with_any_value(tmp_path: Path) -> None:
    """The same file hashes the same; changing one value changes the hash."""
    first = policy_hash(load_policy(write(tmp_path, RISK_TEXT)))
    again = policy_hash(load_policy(write(tmp_path, RISK_TEXT)))
    changed = RISK_TEXT.replace("max_positions: 30", "max_positions: 31")
    assert first == again
    assert policy_hash(load_policy(write(tmp_path, changed))) != first


def test_policy_models_are_frozen() -> None:
    """A loaded policy cannot be mutated in place."""
    policy = load_policy(ROOT / "policies")
    with pytest.raises(Exception, match="frozen"):
        policy.limits.max_positions = 1000  # type: ignore[misc]


@pytest.mark.parametrize(
    ("label", "text"),
    [
        ("unknown top-level key", RISK_TEXT + "\nbypass: true\n"),
        ("unknown nested key", RISK_TEXT.replace("  allow_shorts: false", "  allow_short: false")),
        ("missing key", RISK_TEXT.replace("  max_positions: 30", "")),
        ("corrupt YAML", RISK_TEXT + "\nlimits: [unclosed\n"),
        ("duplicate key", RISK_TEXT + "\nversion: 2\n"),
        ("string for a bool", RISK_TEXT.replace("allow_shorts: false", 'allow_shorts: "no"')),
        (
            "fraction above one",
            RISK_TEXT.replace("max_position_weight: 0.10", "max_position_weight: 10"),
        ),
        ("float for an int", RISK_TEXT.replace("max_positions: 30", "max_positions: 30.5")),
        ("unknown order type", RISK_TEXT.replace("[LMT, STP_LMT]", "[LMT, MOC]")),
        ("empty file", ""),
        *(
            (f"size increment {step}", RISK_TEXT.replace("fractional_quantities: {}", step))
            for step in (
                "fractional_quantities: {SPY: 0}",
                "fractional_quantities: {SPY: 1.5}",
                "fractional_quantities: {SPY: 0.000000001}",
                "fractional_quantities: {spy: 0.1}",
            )
        ),
        ("a list, not a mapping", "- 1\n- 2\n"),
    ],
)
def test_bad_policy_file_is_a_config_error_never_the_defaults(
    tmp_path: Path, label: str, text: str
) -> None:
    """A corrupt, unknown-key, missing-key or mistyped policy raises ConfigError."""
    with pytest.raises(ConfigError):
        load_policy(write(tmp_path, text))


def test_missing_policy_file_is_a_config_error(tmp_path: Path) -> None:
    """A policy folder without risk_policy.yaml raises ConfigError naming the path."""
    with pytest.raises(ConfigError, match="file not found"):
        load_policy(tmp_path)


def test_bad_strategy_params_are_config_errors(tmp_path: Path) -> None:
    """Unknown keys and wrong types in strategy_params.yaml raise ConfigError."""
    unknown = PARAMS_TEXT.replace("  enabled: true", "  enabled: true\n  cooldown_minutes: 60")
    with pytest.raises(ConfigError, match="cooldown_minutes"):
        load_strategy_params(write(tmp_path, unknown, "strategy_params.yaml"))
    wrong = PARAMS_TEXT.replace("enabled: true", "enabled: maybe")
    with pytest.raises(ConfigError):
        load_strategy_params(write(tmp_path, wrong, "strategy_params.yaml"))
