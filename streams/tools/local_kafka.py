"""The local Kafka broker of a checkout (deploy/local/kafka.sh): find it, start it, stop it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from streams.kafka_admin import KafkaUnavailable, kafka_answers

REPO = Path(__file__).resolve().parents[2]
KAFKA_SCRIPT = REPO / "deploy" / "local" / "kafka.sh"


def ensure_kafka(bootstrap: str) -> bool:
    """Start the local broker if nothing answers; True when this call started it."""
    if kafka_answers(bootstrap):
        print(f"Kafka answers at {bootstrap}")
        return False
    if not KAFKA_SCRIPT.is_file():
        raise KafkaUnavailable(
            f"no Kafka at {bootstrap} and no {KAFKA_SCRIPT}: start a broker or set STREAMREC_KAFKA_BOOTSTRAP"
        )
    port = bootstrap.rsplit(":", 1)[-1]
    subprocess.run(["bash", str(KAFKA_SCRIPT), "start"], check=True, env={**os.environ, "KAFKA_PORT": port})
    return True


def stop_kafka() -> None:
    """Stop the local broker (started by :func:`ensure_kafka`)."""
    subprocess.run(["bash", str(KAFKA_SCRIPT), "stop"], check=False)


def broker_is_local() -> bool:
    """True when deploy/local/kafka.sh runs the broker (so a tool may stop and start it)."""
    if not KAFKA_SCRIPT.is_file():
        return False
    return subprocess.run(["bash", str(KAFKA_SCRIPT), "status"], capture_output=True).returncode == 0


def control_broker(action: str) -> None:
    """``start`` or ``stop`` the local broker, waiting until it is done."""
    subprocess.run(["bash", str(KAFKA_SCRIPT), action], check=True, stdout=subprocess.DEVNULL)
