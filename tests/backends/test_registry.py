"""The backend registry: every kind has a settings type and a constructor; no silent default."""

from __future__ import annotations

from typing import get_args

import pytest

from sidecar.backends import KINDS, BackendSettings, build_backend
from sidecar.backends.settings import DemoSettings
from sidecar.config import ConfigError, build_config


def test_every_settings_type_is_registered_and_every_kind_has_settings() -> None:
    tags = {str(cls.__struct_config__.tag) for cls in get_args(BackendSettings)}
    assert tags == set(KINDS)


def test_unknown_kind_is_an_error_naming_the_known_kinds() -> None:
    class Other:
        kind = "nope"

    with pytest.raises(ValueError, match=r"known: .*openai"):
        build_backend("x", Other())


def test_config_names_the_known_kinds() -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"backends": {"p": {"kind": "nope"}}}, "test.yaml", {})
    assert "backends.p.kind" in str(info.value)
    for kind in KINDS:
        assert kind in str(info.value)


def test_a_kind_rejects_another_kinds_keys() -> None:
    with pytest.raises(ConfigError, match="anthropic_version"):
        build_config(
            {
                "backends": {
                    "p": {"kind": "openai", "base_url": "http://x", "anthropic_version": "1"}
                }
            },
            "test.yaml",
            {},
        )


def test_demo_builds() -> None:
    backend = build_backend("d", DemoSettings())
    assert backend.kind == "demo"
