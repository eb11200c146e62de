"""Worker settings, read once from the environment (prefix ``STREAMREC_``)."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from serving.mixture import NewRowMix
from streams.records import DEFAULT_EVENT_TYPES, DEFAULT_MAX_EVENT_BYTES

PREFIX = "STREAMREC_"
# read by deploy/ scripts and docker-compose, not by the Python settings
SCRIPT_VARIABLES = frozenset({"VAR_DIR", "CACHE_DIR", "MODELS", "DEMO_DATA", "BIND"})


class Settings(BaseSettings):
    """Every knob of the worker and the CLI; each is documented in README.md."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port")
    app_id: str = Field("streamrec", description="Faust application id (consumer group, changelog topic prefix)")
    events_topic: str = "events"
    recommendations_topic: str = "recommendations"
    dlq_topic: str = "events-dlq"
    partitions: int = Field(4, ge=1, description="partitions of the events topic and of the sequence table")
    replication_factor: int = Field(1, ge=1)
    model_dir: Path = Field(Path("models"), description="model root (newest version is served) or one version folder")
    model_poll_seconds: float = Field(5.0, ge=0, description="how often to look for a newer model version; 0 = never")
    shadow_model: Path | None = Field(
        None,
        description="a candidate model (version folder or folder of versions) scored beside the live one and "
        "graded online, never published; default: the model root's shadow/ folder when it has a version",
    )
    shadow_fraction: float = Field(
        1.0, gt=0, le=1, description="share of users (a stable hash of the user id) the shadow model also scores"
    )
    online_grading: bool = Field(
        True,
        description="grade each event against the list served to its user just before (streamrec_online_*); "
        "keeps each user's last list in memory",
    )
    served_write_delay: float = Field(
        5.0,
        ge=0,
        description="seconds a served list is kept in memory only before it is written into its user's table value "
        "(online grading); a user's next event within them makes the write unneeded; 0 = with the partition's next "
        "batch",
    )
    grades_topic: str = Field(
        "grades", description="paired live/shadow grades, one record per graded event (read by streamrec promote)"
    )
    items_topic: str = Field("items", description="the live catalog (compacted, keyed by item_id)")
    scenario_filter: bool = Field(
        True,
        description="a list holds only items of the triggering event's scenario (items of no known scenario too); "
        "the history spans all scenarios",
    )
    new_item_share: float | Literal["auto"] = Field(
        "auto",
        description="probability that a user's next item is a new one (added while serving, from its text): a number "
        "in [0, 1), or auto = the new items' part of the catalog, at least new_item_min_share",
    )
    new_item_min_share: float = Field(0.05, ge=0, lt=1, description="the least auto share while there are new items")
    new_item_temperature: float | Literal["auto"] = Field(
        "auto",
        description="divides new items' scores before their softmax; auto = the one the model version chose on "
        "validation at training (its manifest's text.mixture), else 1",
    )
    new_item_mass: float = Field(
        0.01, ge=0, description="'none of the new items' outcome, relative to the trained items' total probability"
    )
    device: Literal["auto", "cuda", "cpu"] = "auto"
    ort_threads: int = Field(0, ge=0, description="onnxruntime intra-op threads on CPU; 0 = onnxruntime's default")
    max_len: int = Field(50, ge=1, description="items kept per user sequence")
    top_k: int = Field(10, ge=1, description="items per recommendation list")
    exclude_seen: bool = Field(True, description="never recommend items already in the user's sequence")
    event_types: Annotated[tuple[str, ...], NoDecode] = DEFAULT_EVENT_TYPES
    max_event_bytes: int = Field(
        DEFAULT_MAX_EVENT_BYTES, ge=64, description="larger payloads go to the dead-letter topic"
    )
    max_batch: int = Field(256, ge=1, description="most events scored in one model call")
    latency_budget_ms: float = Field(
        50.0,
        gt=0,
        description="target event-to-recommendation latency: a model call is kept within half of it by "
        "capping the batch, except while a backlog older than half of it is caught up",
    )
    batches_in_flight: int = Field(
        2, ge=1, description="batches between ingestion and acknowledgement: while one is scored the next is ingested"
    )
    producer_linger_ms: int = Field(5, ge=0, description="producer wait to fill a batch; fewer, larger requests")
    session_timeout: float = Field(
        6.0,
        ge=1,
        description="seconds before the consumer group hands a silent "
        "(crashed) worker's partitions to others; at least the broker's "
        "group.min.session.timeout.ms (6 s by default)",
    )
    instance_id: str | None = Field(
        None,
        description="static group membership: a worker that comes back with the "
        "same id gets its partitions at once instead of after the session timeout; "
        "give each worker its own stable id (e.g. the pod name)",
    )
    commit_interval: float = Field(
        1.0, gt=0, description="seconds between offset commits: after a crash at most this much work is replayed"
    )
    stall_timeout: float = Field(
        30.0,
        ge=0,
        description="exit non-zero when events wait and none is handled for "
        "this long (outside rebalances, recovery and broker outages); 0 = never",
    )
    shutdown_timeout: float = Field(
        8.0, gt=0, description="seconds a graceful stop (SIGTERM) may take before the process exits anyway"
    )
    store: str = Field("memory://", description="Faust table store: memory:// or rocksdb:// (rocksdict)")
    rocksdb_cache_mb: int = Field(16, ge=1, description="RocksDB block cache per table partition, MiB")
    rocksdb_write_buffer_mb: int = Field(8, ge=1, description="RocksDB write buffer (two per table partition), MiB")
    data_dir: Path = Field(Path("var/faust"), description="Faust data directory (RocksDB tables)")
    metrics_port: int = Field(9108, ge=0, description="Prometheus metrics HTTP port; 0 = do not serve")
    log_level: str = "INFO"

    @classmethod
    def for_env(cls, env: Mapping[str, str]) -> Settings:
        """The settings a process started with environment ``env`` reads."""
        return cls(**{key[len(PREFIX) :].lower(): value for key, value in env.items() if key.startswith(PREFIX)})

    @field_validator("event_types", mode="before")
    @classmethod
    def _split_event_types(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("["):
                return tuple(json.loads(value))
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("new_item_share")
    @classmethod
    def _share_in_range(cls, value: float | str) -> float | str:
        if value != "auto" and not 0.0 <= float(value) < 1.0:
            raise ValueError("STREAMREC_NEW_ITEM_SHARE must be auto or a number in [0, 1)")
        return value

    @field_validator("new_item_temperature")
    @classmethod
    def _temperature_positive(cls, value: float | str) -> float | str:
        if value != "auto" and not float(value) > 0.0:
            raise ValueError("STREAMREC_NEW_ITEM_TEMPERATURE must be auto or a number > 0")
        return value

    def new_row_mix(self) -> NewRowMix:
        """How new items compete with trained ones (:mod:`serving.mixture`)."""
        share = None if self.new_item_share == "auto" else float(self.new_item_share)
        temperature = None if self.new_item_temperature == "auto" else float(self.new_item_temperature)
        return NewRowMix(share, self.new_item_min_share, temperature, self.new_item_mass)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _strip_scheme(cls, value: str) -> str:
        return value.removeprefix("kafka://")


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """One sentence per ``STREAMREC_*`` variable in ``env`` that names no setting (a typo is otherwise ignored)."""
    names = {name.upper() for name in Settings.model_fields}
    problems = []
    for key in sorted(env):
        name = key[len(PREFIX) :] if key.startswith(PREFIX) else None
        if name is None or name.upper() in names or name in SCRIPT_VARIABLES:
            continue
        close = difflib.get_close_matches(name.upper(), sorted(names), n=1, cutoff=0.6)
        hint = f" (did you mean {PREFIX}{close[0]}?)" if close else ""
        problems.append(f"{key} is not a setting{hint} and is ignored; the settings are listed in README.md")
    return problems
