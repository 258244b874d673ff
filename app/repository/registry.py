"""Which models and versions this worker serves: the only place that knows.

The repository is read at startup and, with MODEL_POLL_SECONDS > 0, again on every poll. A
version is served only after it loaded and passed its checks (weights-only load, sha256 against
its metadata, the declared architecture's keys, shapes and dtypes, a warm-up call) and the gate's
canary evaluation (gate.py). The set of served models is one immutable
mapping that a refresh replaces whole, so a request that looked its model up keeps that exact
version until it finishes, and readers need no lock. Each worker process polls on its own, so
every worker switches, whichever one answers a given request.
"""

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from app.errors import ModelNotFoundError
from app.inference.classifier import DigitClassifier, ModelLoadError, load_classifier
from app.observability import metrics
from app.repository.gate import Gate, GateRefusedError
from app.repository.layout import Fingerprint, RepositoryError, VersionFolder
from app.settings import VersionPolicies
from mnist_core.files import VERSION_PATTERN

logger = logging.getLogger("mnist.repository")


@dataclass(frozen=True)
class ServedModel:
    name: str
    versions: Mapping[int, DigitClassifier]  # ascending version numbers

    @property
    def default_version(self) -> int:
        """Requests that name no version get the newest one served."""
        return max(self.versions)


@dataclass(frozen=True)
class Refusal:
    """A version found on disk that is not served, and why."""

    version: int
    reason: str


class ModelRepository:
    def __init__(
        self,
        list_versions: Callable[[], list[VersionFolder]],
        device: str,
        default_model: str,
        gate: Gate,
        policies: VersionPolicies | None = None,
        allow_sha256_mismatch: bool = False,
    ) -> None:
        self._list_versions = list_versions
        self._device = device
        self.default_model = default_model
        self._gate = gate
        self._policies = policies.versions if policies is not None else {}
        self._allow_sha256_mismatch = allow_sha256_mismatch
        self._served: Mapping[str, ServedModel] = MappingProxyType({})
        # Touched only by refresh(), which never runs twice at once (startup, then one poll loop).
        self._loaded: dict[tuple[str, int], tuple[Fingerprint, DigitClassifier]] = {}
        self._refused: dict[tuple[str, int], tuple[Fingerprint, str]] = {}

    @property
    def served(self) -> Mapping[str, ServedModel]:
        return self._served

    @property
    def refusals(self) -> dict[str, list[Refusal]]:
        """Versions on disk that failed their checks, by model (for /models and the logs)."""
        by_model: dict[str, list[Refusal]] = {}
        for (model, version), (_, reason) in sorted(self._refused.items()):
            by_model.setdefault(model, []).append(Refusal(version, reason))
        return by_model

    def resolve(self, name: str | None, version: str | None) -> DigitClassifier:
        """The classifier a request asked for: `name` (default DEFAULT_MODEL) at `version` (default newest)."""
        name = self.default_model if name is None else name
        served = self._served.get(name)
        if served is None:
            known = ", ".join(sorted(self._served)) or "none"
            raise ModelNotFoundError(f"no model named {name[:80]!r} is served; served models: {known}")
        if version is None:
            return served.versions[served.default_version]
        # The repository's own spelling of a version; str.isdigit would also take "³" or "٣".
        classifier = served.versions.get(int(version)) if VERSION_PATTERN.fullmatch(version) else None
        if classifier is None:
            known = ", ".join(map(str, served.versions))
            raise ModelNotFoundError(f"model {name!r} has no version {version[:20]!r}; served versions: {known}")
        return classifier

    def refresh(self) -> None:
        """Scan, load what is new or changed, and switch to the result in one assignment."""
        folders = self._list_versions()
        by_model: dict[str, list[VersionFolder]] = {}
        for folder in folders:
            by_model.setdefault(folder.model, []).append(folder)
        served = {}
        for model, candidates in by_model.items():
            chosen = self._choose_versions(model, candidates)
            if chosen:
                served[model] = ServedModel(model, MappingProxyType(dict(sorted(chosen.items()))))
        present = {(folder.model, folder.version) for folder in folders}
        self._refused = {key: value for key, value in self._refused.items() if key in present}
        self._loaded = {
            key: value for key, value in self._loaded.items() if key[0] in served and key[1] in served[key[0]].versions
        }
        self._switch_to(served)

    def _choose_versions(self, model: str, candidates: list[VersionFolder]) -> dict[int, DigitClassifier]:
        """Pinned versions (MODEL_VERSIONS), all of them, or the newest one that loads."""
        policy = self._policies.get(model, "latest")
        if isinstance(policy, frozenset):
            candidates = [folder for folder in candidates if folder.version in policy]
        chosen = {}
        served = self._served.get(model)
        incumbent = served.versions[served.default_version] if served is not None else None
        for folder in reversed(candidates):
            classifier = self._classifier_for(folder, incumbent)
            if classifier is not None:
                chosen[folder.version] = classifier
                if policy == "latest":
                    break
        return chosen

    def _classifier_for(self, folder: VersionFolder, incumbent: DigitClassifier | None) -> DigitClassifier | None:
        """The loaded classifier for this folder's current files, loading them if they changed.

        A version whose files changed into something that fails its checks (a copy still in
        progress over it, say) keeps serving what it loaded before. `incumbent` is the version
        its model serves now, which the gate holds a newer one to.
        """
        key = (folder.model, folder.version)
        loaded = self._loaded.get(key)
        if loaded is not None and loaded[0] == folder.fingerprint:
            return loaded[1]
        refused = self._refused.get(key)
        if refused is not None and refused[0] == folder.fingerprint:
            return loaded[1] if loaded is not None else None
        try:
            classifier = load_classifier(
                folder.weights,
                self._device,
                name=folder.model,
                version=folder.version,
                allow_sha256_mismatch=self._allow_sha256_mismatch,
                require_metadata=folder.metadata_required,
            )
            classifier.canary_accuracy = self._gate.admit(classifier, incumbent)
        except (ModelLoadError, GateRefusedError) as error:
            self._refused[key] = (folder.fingerprint, str(error))
            metrics.MODEL_LOADS.labels(folder.model, "refused").inc()
            logger.warning("refusing %s version %d: %s", folder.model, folder.version, error)
            return loaded[1] if loaded is not None else None
        self._loaded[key] = (folder.fingerprint, classifier)
        self._refused.pop(key, None)
        metrics.MODEL_LOADS.labels(folder.model, "loaded").inc()
        return classifier

    def _switch_to(self, served: dict[str, ServedModel]) -> None:
        before = {
            (name, version): classifier
            for name, model in self._served.items()
            for version, classifier in model.versions.items()
        }
        after = {
            (name, version): classifier
            for name, model in served.items()
            for version, classifier in model.versions.items()
        }
        self._served = MappingProxyType(served)
        for key, classifier in after.items():
            if before.get(key) is not classifier:
                metrics.model_served(classifier.info, True)
                _log_serving(classifier)
        for key, classifier in before.items():
            if after.get(key) is not classifier:
                metrics.model_served(classifier.info, False)
                if key not in after:
                    logger.info("stopped serving %s version %d", *key)


def _log_serving(classifier: DigitClassifier) -> None:
    info = classifier.info
    logger.info(
        "serving %s version %d from %s (sha256 %s, test accuracy %s %%, canary accuracy %.1f %%) on %s",
        info.name,
        info.version,
        info.path,
        info.sha256,
        info.test_accuracy if info.test_accuracy is not None else "unknown",
        classifier.canary_accuracy,
        info.device,
    )


async def poll_forever(repository: ModelRepository, seconds: float) -> None:
    """Refresh every `seconds`, off the event loop; a failed scan is logged and the models keep serving."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await asyncio.to_thread(repository.refresh)
        except RepositoryError as error:
            logger.error("cannot rescan the model repository: %s; serving what was loaded", error)
        except Exception:
            logger.exception("unexpected error while rescanning the model repository; serving what was loaded")
