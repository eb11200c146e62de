"""Settings come from STREAMREC_* variables and refuse bad values."""

import pytest
from pydantic import ValidationError

from streams.settings import Settings, unknown_variables


def test_defaults_and_env(monkeypatch):
    monkeypatch.setenv("STREAMREC_MAX_BATCH", "64")
    monkeypatch.setenv("STREAMREC_EVENT_TYPES", "click, purchase")
    monkeypatch.setenv("STREAMREC_KAFKA_BOOTSTRAP", "kafka://k1:9092,k2:9092")
    settings = Settings()
    assert settings.max_batch == 64
    assert settings.event_types == ("click", "purchase")
    assert settings.kafka_bootstrap == "k1:9092,k2:9092"
    assert settings.top_k == 10


def test_bad_values_fail(monkeypatch):
    monkeypatch.setenv("STREAMREC_MAX_BATCH", "0")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.setenv("STREAMREC_MAX_BATCH", "8")
    monkeypatch.setenv("STREAMREC_DEVICE", "tpu")
    with pytest.raises(ValidationError):
        Settings()


def test_a_misspelt_variable_is_named_with_the_setting_it_resembles():
    problems = unknown_variables(
        {"STREAMREC_TOPK": "5", "STREAMREC_TOP_K": "5", "STREAMREC_VAR_DIR": "/tmp/x", "HOME": "/root"}
    )
    assert problems == [
        "STREAMREC_TOPK is not a setting (did you mean STREAMREC_TOP_K?) and is ignored; "
        "the settings are listed in README.md"
    ]
    assert unknown_variables({"STREAMREC_MAX_BATCH": "64", "STREAMREC_KAFKA_BOOTSTRAP": "h:1"}) == []
