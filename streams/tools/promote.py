"""`streamrec promote`: the shadow model becomes live only when it beat the live one on the same events.

Evidence: the paired grades the worker publishes on the grades topic (one record per event graded against both
the live and the shadow list). The shadow is promoted when, over at least ``min_events`` such events,

* its mean NDCG@10 is higher,
* a one-sided sign test over the events where the two differ gives p < ``alpha`` (ties dropped), and
* the 95% paired-bootstrap interval of the mean NDCG@10 difference (shadow - live) lies above 0.

Anything else is refused with the numbers. Promotion publishes the shadow's files as a new version of the model
root (workers swap to it as to any new version) and moves the shadow folder aside.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from serving.artifact import MANIFEST, ArtifactError, load_artifact, newest_version, resolve_version
from serving.publish import new_tmp_dir, publish
from serving.registry import SHADOW_DIR
from streams.settings import Settings
from streams.tools.kafka_io import read_topic

logger = logging.getLogger(__name__)

K = 10
BOOTSTRAP_SAMPLES = 2000
MANIFEST_OWN_KEYS = ("format_version", "model_version", "created_at", "files")


@dataclass(frozen=True)
class Evidence:
    """What the paired grades say about shadow vs live (NDCG@10 over the same events)."""

    live: str
    shadow: str
    events: int
    live_ndcg10: float
    shadow_ndcg10: float
    shadow_better: int  # events where the shadow's NDCG@10 is higher
    live_better: int
    sign_p: float  # one-sided: P(at least shadow_better wins of the untied events | no difference)
    diff_low: float  # 95% paired-bootstrap interval of mean(shadow - live)
    diff_high: float

    def verdict(self, min_events: int, alpha: float) -> tuple[bool, str]:
        """(promote?, the reason in one sentence)."""
        if self.events < min_events:
            return False, f"inconclusive: {self.events} paired events graded, at least {min_events} needed"
        if self.shadow_ndcg10 <= self.live_ndcg10:
            return False, "worse: the shadow's online NDCG@10 is not above the live model's"
        if self.sign_p >= alpha:
            return False, f"inconclusive: sign test p = {self.sign_p:.3g}, not below {alpha}"
        if self.diff_low <= 0:
            return False, "inconclusive: the bootstrap interval of the NDCG@10 difference includes 0"
        return True, f"better: sign test p = {self.sign_p:.3g} < {alpha} and the whole interval is above 0"

    def describe(self) -> str:
        gain = (self.shadow_ndcg10 / self.live_ndcg10 - 1) * 100 if self.live_ndcg10 > 0 else float("inf")
        return "\n".join(
            [
                f"paired events graded: {self.events:,} (live {self.live} vs shadow {self.shadow})",
                f"online NDCG@10   live {self.live_ndcg10:.4f}   shadow {self.shadow_ndcg10:.4f}   ({gain:+.1f}%)",
                f"per event        shadow better {self.shadow_better:,}   live better {self.live_better:,}   "
                f"tied {self.events - self.shadow_better - self.live_better:,}",
                f"sign test        one-sided p = {self.sign_p:.3g}",
                f"paired bootstrap 95% interval of the difference [{self.diff_low:+.4f}, {self.diff_high:+.4f}]",
            ]
        )


def ndcg_at_k(rank: int | None, k: int = K) -> float:
    return 1.0 / math.log2(rank + 2) if rank is not None and rank < k else 0.0


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided exact binomial sign test: P(X >= wins), X ~ Binomial(wins + losses, 1/2)."""
    n = wins + losses
    if n == 0:
        return 1.0
    if n > 5000:  # normal approximation with continuity correction
        z = (wins - 0.5 - n / 2) / math.sqrt(n / 4)
        return 0.5 * math.erfc(z / math.sqrt(2))
    log_half = n * math.log(0.5)
    terms = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + log_half for k in range(wins, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def paired_evidence(grades: list[dict], live: str, shadow: str, seed: int = 0) -> Evidence:
    """The evidence from paired grade records of exactly these two versions (one per event: replays dropped)."""
    pairs: dict[tuple[int, int], tuple[float, float]] = {}
    for g in grades:
        if g.get("live") == live and g.get("shadow") == shadow:
            pairs[(g["partition"], g["offset"])] = (ndcg_at_k(g["live_rank"]), ndcg_at_k(g["shadow_rank"]))
    values = np.array(list(pairs.values()), dtype=np.float64).reshape(-1, 2)
    n = len(values)
    if n == 0:
        return Evidence(live, shadow, 0, 0.0, 0.0, 0, 0, 1.0, 0.0, 0.0)
    diff = values[:, 1] - values[:, 0]
    wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
    rng = np.random.default_rng(seed)
    means = np.array([diff[rng.integers(0, n, n)].mean() for _ in range(BOOTSTRAP_SAMPLES)])
    low, high = np.quantile(means, [0.025, 0.975])
    return Evidence(
        live,
        shadow,
        n,
        float(values[:, 0].mean()),
        float(values[:, 1].mean()),
        wins,
        losses,
        sign_test_p(wins, losses),
        float(low),
        float(high),
    )


def read_grades(settings: Settings, timeout: float) -> list[dict]:
    """Every record on the grades topic (what every worker published)."""
    return [
        json.loads(r.value) for r in read_topic(settings.kafka_bootstrap, settings.grades_topic, timeout) if r.value
    ]


def shadow_folder(settings: Settings) -> Path:
    """The shadow version folder the workers score: STREAMREC_SHADOW_MODEL, else the root's shadow/ newest."""
    source = settings.shadow_model or settings.model_dir / SHADOW_DIR
    version = newest_version(source)
    if version is None:
        raise ArtifactError(
            f"no shadow model in {source}: put a candidate version there (or set STREAMREC_SHADOW_MODEL) and let the "
            "workers grade it before promoting"
        )
    return version


def promote_shadow(settings: Settings, shadow_dir: Path, evidence: Evidence) -> Path:
    """Publish the shadow's files as the model root's newest version; move a shadow/ folder version aside."""
    artifact = load_artifact(shadow_dir)
    tmp = new_tmp_dir(settings.model_dir)
    for path in sorted(shadow_dir.iterdir()):
        if path.is_file() and path.name != MANIFEST:
            shutil.copy2(path, tmp / path.name)
    manifest = {k: v for k, v in artifact.manifest.items() if k not in MANIFEST_OWN_KEYS}
    manifest["promoted_from"] = {"version": evidence.shadow, **asdict(evidence)}
    final = publish(tmp, manifest)
    if shadow_dir.parent == settings.model_dir / SHADOW_DIR:
        aside = shadow_dir.parent / f".promoted-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{shadow_dir.name}"
        shadow_dir.rename(aside)  # hidden: workers stop scoring it as a shadow
    return final


def run_promote(settings: Settings, min_events: int, alpha: float, dry_run: bool, timeout: float) -> int:
    """The command: print the evidence, then promote (exit 0) or refuse (exit 1)."""
    live = load_artifact(resolve_version(settings.model_dir)).version
    shadow_dir = shadow_folder(settings)
    shadow = load_artifact(shadow_dir).version
    evidence = paired_evidence(read_grades(settings, timeout), live, shadow)
    promote, reason = evidence.verdict(min_events, alpha)
    print(evidence.describe())
    if not promote:
        print(f"refused: {reason}")
        return 1
    if dry_run:
        print(f"would promote ({reason}); --dry-run: nothing changed")
        return 0
    final = promote_shadow(settings, shadow_dir, evidence)
    print(
        f"promoted ({reason}): {shadow} is live as {final.name}; workers swap to it within STREAMREC_MODEL_POLL_SECONDS"
    )
    return 0
