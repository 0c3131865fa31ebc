"""The policy registry on MLflow: the only code that talks to MLflow.

One registered model per decision frame (`campopt-<frame key>`). A version holds the VW model,
the policy spec, the action featurisation it was trained with and metadata (examples learned,
parent version, data range); its run holds the spec as parameters and any offline estimates as
metrics. Aliases `champion` (serving) and `challenger` (under evaluation) — never stages.

Import this module lazily: `import mlflow` takes seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Fail fast when a tracking server is down: serving keeps its policies and readiness says so.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from optimizer.core.policy_spec import PolicySpec
from optimizer.errors import UnavailableError
from optimizer.policy import BanditPolicy, StoredModel

log = logging.getLogger("campopt.registry")
logging.getLogger("mlflow").setLevel(logging.WARNING)

CHAMPION = "champion"
CHALLENGER = "challenger"
EXPERIMENT = "campopt"
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")


def model_name(policy_name: str) -> str:
    return f"campopt-{policy_name}"


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    run_id: str | None
    created_at: float
    tags: dict[str, str]
    aliases: tuple[str, ...]


class RegistryError(UnavailableError):
    """MLflow refused or could not be reached."""

    def __init__(self, message: str) -> None:
        super().__init__("registry", message)


class PolicyRegistry:
    """Register, alias and load policy versions; implements the serving `ModelSource`."""

    def __init__(self, tracking_uri: str, *, artifact_root: Path | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._artifact_root = artifact_root
        self._experiment_id: str | None = None

    # --- ModelSource ------------------------------------------------------------------------

    def serving_version(self, name: str) -> str | None:
        return self.alias_version(name, CHAMPION)

    def load(self, name: str, version: str) -> StoredModel:
        try:
            # resolved through our client: a `models:/` URI would be resolved against the
            # process-wide default registry, not this one
            source = self.client.get_model_version_download_uri(model_name(name), version)
            path = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=source, tracking_uri=self.tracking_uri
                )
            )
        except MlflowException as exc:
            raise RegistryError(f"cannot download {model_name(name)} v{version}: {exc}") from exc
        files = path / "artifacts"
        meta = json.loads((files / "meta.json").read_text(encoding="utf-8"))
        spec = PolicySpec.model_validate_json((files / "spec.json").read_text(encoding="utf-8"))
        return StoredModel(
            name=name,
            version=str(version),
            spec=spec,
            model_data=(files / "model.vw").read_bytes(),
            examples_learned=int(meta["examples_learned"]),
        )

    # --- registering ------------------------------------------------------------------------

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            experiment = self.client.get_experiment_by_name(EXPERIMENT)
            if experiment is not None:
                self._experiment_id = str(experiment.experiment_id)
            else:
                # a tracking server chooses (and serves) the artifact store itself; a local
                # store keeps artifacts in the data directory
                remote = self.tracking_uri.startswith(("http://", "https://"))
                root = None if remote else self._artifact_root
                location = root.resolve().as_uri() if root is not None else None
                self._experiment_id = str(
                    self.client.create_experiment(EXPERIMENT, artifact_location=location)
                )
        return self._experiment_id

    def register(
        self,
        policy: BanditPolicy,
        *,
        action_lines: Mapping[str, str],
        floor_share: float,
        source: str,
        parent_version: str | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        artifacts: Mapping[str, Path] | None = None,
        alias: str | None = None,
    ) -> str:
        """Log `policy` as a run and a new model version; returns the version number."""
        name = model_name(policy.name)
        meta = _version_meta(
            policy, floor_share=floor_share, source=source, parent_version=parent_version, tags=tags
        )
        with tempfile.TemporaryDirectory() as tmp:
            files = _write_version_files(Path(tmp), policy, action_lines=action_lines, meta=meta)
            try:
                mlflow.set_tracking_uri(self.tracking_uri)
                mlflow.set_registry_uri(self.tracking_uri)
                with mlflow.start_run(
                    experiment_id=self.experiment_id(),
                    run_name=f"{policy.name}-{source}",
                    tags={"campopt.policy": policy.name, "campopt.source": source},
                ):
                    mlflow.log_params(_spec_params(policy.spec))
                    if metrics:
                        mlflow.log_metrics(dict(metrics))
                    for path in (artifacts or {}).values():
                        mlflow.log_artifact(str(path), artifact_path="evidence")
                    info = mlflow.pyfunc.log_model(
                        name="policy",
                        python_model=str(PYFUNC_CODE),
                        artifacts=files,
                        registered_model_name=name,
                        pip_requirements=["vowpal-wabbit-next", "pandas", "pydantic"],
                    )
            except MlflowException as exc:
                raise RegistryError(f"cannot register {name}: {exc}") from exc
        version = str(info.registered_model_version)
        version_tags = _version_tags(
            policy, source=source, parent_version=parent_version, tags=tags
        )
        for key, value in version_tags.items():
            self.client.set_model_version_tag(name, version, key, value)
        if alias:
            self.set_alias(policy.name, alias, version)
        return version

    # --- aliases ----------------------------------------------------------------------------

    def alias_version(self, name: str, alias: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(model_name(name), alias).version)
        except MlflowException as exc:
            if _not_found(exc):
                return None
            raise RegistryError(f"cannot resolve {model_name(name)}@{alias}: {exc}") from exc

    def set_alias(self, name: str, alias: str, version: str) -> None:
        try:
            self.client.set_registered_model_alias(model_name(name), alias, str(version))
        except MlflowException as exc:
            raise RegistryError(f"cannot set {model_name(name)}@{alias}: {exc}") from exc

    def delete_alias(self, name: str, alias: str) -> None:
        try:
            self.client.delete_registered_model_alias(model_name(name), alias)
        except MlflowException as exc:
            if not _not_found(exc):
                raise RegistryError(f"cannot delete {model_name(name)}@{alias}: {exc}") from exc

    def tag_version(self, name: str, version: str, key: str, value: str) -> None:
        try:
            self.client.set_model_version_tag(model_name(name), str(version), key, value)
        except MlflowException as exc:
            raise RegistryError(f"cannot tag {model_name(name)} v{version}: {exc}") from exc

    def versions(self, name: str) -> list[VersionInfo]:
        try:
            found = self.client.search_model_versions(f"name = '{model_name(name)}'")
            aliases: dict[str, list[str]] = {}
            if found:
                model = self.client.get_registered_model(model_name(name))
                for alias, version in (model.aliases or {}).items():
                    aliases.setdefault(str(version), []).append(alias)
        except MlflowException as exc:
            raise RegistryError(f"cannot list {model_name(name)}: {exc}") from exc
        return sorted(
            (
                VersionInfo(
                    name=name,
                    version=str(v.version),
                    run_id=v.run_id,
                    created_at=float(v.creation_timestamp) / 1000.0,
                    tags=dict(v.tags or {}),
                    aliases=tuple(sorted(aliases.get(str(v.version), []))),
                )
                for v in found
            ),
            key=lambda v: int(v.version),
        )

    def version_info(self, name: str, version: str) -> VersionInfo:
        for info in self.versions(name):
            if info.version == str(version):
                return info
        raise RegistryError(f"{model_name(name)} has no version {version}")

    def prune_online_versions(self, name: str, *, keep: int) -> list[str]:
        """Delete online-learning checkpoints beyond the newest `keep`, and their runs; versions
        an alias or a promotion (`campopt.replaces`, the rollback target) names stay, as does
        every trained candidate. A learner publishes about one version a minute per frame."""
        versions = self.versions(name)
        needed = {v.version for v in versions if v.aliases} | {
            v.tags["campopt.replaces"] for v in versions if v.tags.get("campopt.replaces")
        }
        online = [v for v in versions if v.tags.get("campopt.source") == "online"]
        stale = [v for v in online[: max(len(online) - keep, 0)] if v.version not in needed]
        try:
            for info in stale:
                self.client.delete_model_version(model_name(name), info.version)
                if info.run_id:
                    self.client.delete_run(info.run_id)
        except MlflowException as exc:
            raise RegistryError(f"cannot prune {model_name(name)}: {exc}") from exc
        return [v.version for v in stale]

    def run_metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    def ping(self) -> bool:
        """Is the tracking store reachable?"""
        try:
            self.client.search_experiments(max_results=1)
        except Exception:
            return False
        return True


def ensure_store(tracking_uri: str, *, artifact_root: Path | None = None) -> None:
    """Create a local MLflow store and our experiment once, under a file lock next to a SQLite
    store. MLflow migrates a new store when a process first opens it; two processes doing that at
    once fail (`table ... already exists`). A tracking server looks after its own store."""
    if tracking_uri.startswith(("http://", "https://", "databricks")):
        return
    with _store_lock(tracking_uri):
        registry = PolicyRegistry(tracking_uri, artifact_root=artifact_root)
        try:
            registry.experiment_id()
            registry.client.search_registered_models(max_results=1)
        except MlflowException as exc:
            raise RegistryError(f"cannot open the MLflow store {tracking_uri}: {exc}") from exc


@contextlib.contextmanager
def _store_lock(tracking_uri: str) -> Iterator[None]:
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        yield
        return
    database = Path(tracking_uri.removeprefix(prefix).split("?", 1)[0])
    database.parent.mkdir(parents=True, exist_ok=True)
    with Path(f"{database}.init.lock").open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _version_meta(
    policy: BanditPolicy,
    *,
    floor_share: float,
    source: str,
    parent_version: str | None,
    tags: Mapping[str, str] | None,
) -> dict[str, Any]:
    """What `meta.json` records, so a downloaded version explains itself without MLflow."""
    return {
        "name": policy.name,
        "examples_learned": policy.examples_learned,
        "parent_version": parent_version,
        "floor_share": floor_share,
        "source": source,
        "registered_at": time.time(),
        **({"tuning": policy.tuning_report()} if policy.tuning_report() else {}),
        **dict((tags or {}).items()),
    }


def _write_version_files(
    folder: Path, policy: BanditPolicy, *, action_lines: Mapping[str, str], meta: dict[str, Any]
) -> dict[str, str]:
    """Write a version's files into `folder`: the pyfunc wrapper and `load` read them back by
    these names, so the layout is the registry's contract with both."""
    (folder / "model.vw").write_bytes(policy.serialize())
    (folder / "spec.json").write_text(policy.spec.model_dump_json(indent=2))
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    (folder / "actions.json").write_text(json.dumps(dict(action_lines)))
    return {
        "model": str(folder / "model.vw"),
        "spec": str(folder / "spec.json"),
        "meta": str(folder / "meta.json"),
        "actions": str(folder / "actions.json"),
    }


def _version_tags(
    policy: BanditPolicy,
    *,
    source: str,
    parent_version: str | None,
    tags: Mapping[str, str] | None,
) -> dict[str, str]:
    """The version's tags, so listing versions needs no artefact download."""
    return {
        "campopt.source": source,
        "campopt.examples_learned": str(policy.examples_learned),
        **(
            {"campopt.serving_candidate": str(report["leader_label"])}
            if (report := policy.tuning_report())
            else {}
        ),
        **({"campopt.parent_version": parent_version} if parent_version else {}),
        **{f"campopt.{k}": str(v) for k, v in (tags or {}).items()},
    }


def _spec_params(spec: PolicySpec) -> dict[str, Any]:
    params: dict[str, Any] = {
        k: ",".join(v) if isinstance(v, tuple) else v
        for k, v in spec.model_dump(exclude={"tuning"}).items()
    }
    tuning = spec.tuning
    params["tuning"] = "off" if tuning is None else "; ".join(c.label() for c in tuning.candidates)
    return params


def _not_found(exc: MlflowException) -> bool:
    return (
        "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", ""))
        or "not found" in str(exc).lower()
    )
