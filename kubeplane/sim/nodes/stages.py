"""Pod timings and outcomes as data, in the spirit of KWOK's Stage resources.

The lifecycle itself is fixed (it is the kubelet's: bound -> Running -> exit -> restart
or done; deleted -> stop -> gone); how long each step takes and how containers exit is
data: `stages.yaml` in this package (or `--stages FILE`), `defaults` refined by `rules`
whose `match` fits the pod, then by the pod's annotations:

    kubeplane.io/start-seconds    kubeplane.io/run-seconds ("never": runs until deleted)
    kubeplane.io/exit-code        kubeplane.io/stop-seconds
    kubeplane.io/backoff-seconds

An annotation that is not a number is ignored (and logged once per pod): a pod never
fails because of a typo in a simulator hint.
"""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, fields, replace
from importlib import resources
from typing import Any

import yaml

log = logging.getLogger("kubeplane.sim.nodes")

PREFIX = "kubeplane.io/"
ANNOTATIONS = {"start-seconds": "startSeconds", "run-seconds": "runSeconds", "exit-code": "exitCode",
               "stop-seconds": "stopSeconds", "backoff-seconds": "backoffSeconds"}
MATCH_KEYS = {"ownerKind", "namespace", "restartPolicy", "labels"}


class StagesError(ValueError):
    """A stages file that cannot be used (its message names the field)."""


@dataclass(frozen=True, slots=True)
class Timing:
    """What one pod does; seconds. None: never."""
    startSeconds: float = 1.0
    startJitter: float = 0.0
    runSeconds: float | None = None
    exitCode: int = 0
    stopSeconds: float | None = None
    backoffSeconds: float = 10.0
    backoffMaxSeconds: float = 300.0

    def start_delay(self, rng: random.Random) -> float:
        return self.startSeconds + (rng.uniform(0, self.startJitter) if self.startJitter > 0 else 0.0)

    def stop_delay(self, grace: float) -> float:
        return grace if self.stopSeconds is None else min(self.stopSeconds, grace)

    def backoff(self, restarts: int) -> float:
        """CrashLoopBackOff before restart number `restarts` (1, 2, ...): the first restart
        is at once, as the kubelet's; then backoffSeconds, doubling up to backoffMaxSeconds."""
        if restarts <= 1:
            return 0.0
        return min(self.backoffMaxSeconds, self.backoffSeconds * 2 ** min(restarts - 2, 30))


_FIELDS = {f.name for f in fields(Timing)}


def _check_values(where: str, values: Any) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise StagesError(f"{where}: must be a map of {', '.join(sorted(_FIELDS))}")
    out: dict[str, Any] = {}
    for k, v in values.items():
        if k not in _FIELDS:
            raise StagesError(f"{where}.{k}: unknown field (known: {', '.join(sorted(_FIELDS))})")
        if v is None:
            if k not in ("runSeconds", "stopSeconds"):
                raise StagesError(f"{where}.{k}: may not be null")
        elif k == "exitCode":
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 255:
                raise StagesError(f"{where}.{k}: must be an integer 0..255, not {v!r}")
        elif not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
            raise StagesError(f"{where}.{k}: must be a number of seconds >= 0, not {v!r}")
        out[k] = v
    return out


@dataclass(frozen=True)
class Rule:
    name: str
    match: dict[str, Any]
    set: dict[str, Any]

    def fits(self, pod: dict[str, Any]) -> bool:
        md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        m = self.match
        if "namespace" in m and md.get("namespace") != m["namespace"]:
            return False
        if "restartPolicy" in m and (spec.get("restartPolicy") or "Always") != m["restartPolicy"]:
            return False
        if "ownerKind" in m:
            owner = next((o for o in md.get("ownerReferences") or [] if o.get("controller")), None)
            if owner is None or owner.get("kind") != m["ownerKind"]:
                return False
        if "labels" in m:
            labels = md.get("labels") or {}
            if any(labels.get(k) != v for k, v in m["labels"].items()):
                return False
        return True


class Stages:
    def __init__(self, doc: Any, source: str = "stages"):
        if not isinstance(doc, dict):
            raise StagesError(f"{source}: must be a map with `defaults` and `rules`")
        unknown = set(doc) - {"defaults", "rules"}
        if unknown:
            raise StagesError(f"{source}: unknown key(s) {', '.join(sorted(unknown))} (known: defaults, rules)")
        self.defaults = Timing(**_check_values(f"{source}: defaults", doc.get("defaults") or {}))
        self.rules: list[Rule] = []
        for i, r in enumerate(doc.get("rules") or []):
            where = f"{source}: rules[{i}]"
            if not isinstance(r, dict) or not isinstance(r.get("match", {}), dict):
                raise StagesError(f"{where}: must be a map with name, match, set")
            bad = set(r.get("match") or {}) - MATCH_KEYS
            if bad:
                raise StagesError(f"{where}.match: unknown key(s) {', '.join(sorted(bad))} "
                                  f"(known: {', '.join(sorted(MATCH_KEYS))})")
            if "labels" in (r.get("match") or {}) and not isinstance(r["match"]["labels"], dict):
                raise StagesError(f"{where}.match.labels: must be a map")
            self.rules.append(Rule(str(r.get("name") or f"rule {i}"), dict(r.get("match") or {}),
                                   _check_values(f"{where}.set", r.get("set") or {})))

    @classmethod
    def default(cls) -> "Stages":
        text = resources.files(__package__).joinpath("stages.yaml").read_text()
        return cls(yaml.safe_load(text), "stages.yaml")

    @classmethod
    def load(cls, path: str | None) -> "Stages":
        if path is None:
            return cls.default()
        try:
            with open(path) as f:
                doc = yaml.safe_load(f)
        except OSError as e:
            raise StagesError(f"{path}: {e.strerror}") from e
        except yaml.YAMLError as e:
            raise StagesError(f"{path}: not YAML: {e}") from e
        return cls(doc, path)

    def timing(self, pod: dict[str, Any]) -> Timing:
        values: dict[str, Any] = {}
        for rule in self.rules:
            if rule.fits(pod):
                values.update(rule.set)
        ann = (pod.get("metadata") or {}).get("annotations") or {}
        for key, field_ in ANNOTATIONS.items():
            raw = ann.get(PREFIX + key)
            if raw is None:
                continue
            v = _annotation_value(field_, raw)
            if v is _BAD:
                md = pod.get("metadata") or {}
                log.warning("pod %s/%s: ignoring %s%s=%r (not a number)", md.get("namespace"), md.get("name"),
                            PREFIX, key, raw)
                continue
            values[field_] = v
        return replace(self.defaults, **values) if values else self.defaults


_BAD = object()


def _annotation_value(field_: str, raw: Any) -> Any:
    text = str(raw).strip()
    if field_ == "runSeconds" and text.lower() in ("never", "forever", ""):
        return None
    try:
        if field_ == "exitCode":
            v = int(text)
            return v if 0 <= v <= 255 else _BAD
        f = float(text)
        return f if math.isfinite(f) and f >= 0 else _BAD
    except ValueError:
        return _BAD
