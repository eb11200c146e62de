"""Settings come from STREAMREC_* variables and refuse bad values."""

import pytest
from pydantic import ValidationError

from streams.settings import Settings


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
