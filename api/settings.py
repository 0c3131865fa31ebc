"""One settings class, read once from the environment (prefix `CAMPOPT_`) or a `.env` file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from optimizer.health import UsageIndexConfig

REPOSITORY = Path(__file__).resolve().parent.parent
EXAMPLE_CATALOG = REPOSITORY / "examples" / "catalog"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CAMPOPT_", env_file=".env", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Field(default=Path("campopt-data"), description="where local state lives")
    database_url: str = Field(default="", description="SQLAlchemy URL; default SQLite in data_dir")
    mlflow_tracking_uri: str = Field(
        default="", description="default: SQLite store in data_dir; `disabled` turns it off"
    )
    catalog_path: Path = Field(default=EXAMPLE_CATALOG)
    max_body_bytes: int = Field(default=64 * 1024, description="larger request bodies get 413")
    decision_clock_skew_seconds: float = Field(
        default=300.0,
        ge=0,
        description="how far a decision's `now` may be from the server clock without the "
        "simulate scope",
    )
    catalog_check_seconds: float = Field(default=2.0, description="how often to look for changes")
    policy_reload_seconds: float = Field(default=30.0, description="how often to look for models")
    migrate_on_start: bool = Field(default=True, description="apply migrations at start-up")
    auth_enabled: bool = Field(default=True, description="require API keys (see campopt keys)")
    pseudonym_salt: str = Field(
        default="campopt", description="salt of erased customers' pseudonyms: set your own"
    )
    retention_days: float = Field(default=730.0, description="decision logs older than this go")
    audit_retention_days: float = Field(default=3650.0)
    retention_seconds: float = Field(default=86_400.0, description="retention job interval")
    log_json: bool = Field(default=False, description="JSON log lines (campopt serve sets it)")
    log_level: str = Field(default="INFO")
    scheduler_enabled: bool = Field(default=True, description="run jobs (if this process leads)")
    finalize_seconds: float = Field(default=60.0, description="reward finalisation interval")
    learn_seconds: float = Field(default=10.0, description="online learning interval")
    checkpoint_seconds: float = Field(
        default=60.0, description="learner checkpoint (and publication) interval"
    )
    leader_poll_seconds: float = Field(
        default=5.0, description="how often a waiting worker tries to take the lead"
    )
    emit_seconds: float = Field(default=30.0, description="health-trigger sweeper interval")
    usage_index: UsageIndexConfig = Field(default_factory=UsageIndexConfig)
    gate_estimator: Literal["SNIPS", "DR"] = Field(
        default="SNIPS", description="estimator the promotion gate compares with"
    )
    gate_min_lift: float = Field(default=0.0, description="lift the lower bound must show")
    gate_min_effective_sample_size: float = Field(default=100.0)
    max_evidence_age_days: float = Field(default=7.0, description="older evidence cannot promote")
    guardrail_window_days: float = Field(default=7.0, description="live guardrail window")
    guardrail_seconds: float = Field(default=300.0, description="guardrail monitor interval")
    ui_session_secret: SecretStr = Field(
        default=SecretStr(""),
        description="signs the cockpit's session cookies; empty: a random one per process, so "
        "set it when several workers or replicas serve /ui",
    )
    ui_session_hours: float = Field(default=8.0, gt=0, description="cockpit sign-in lifetime")
    ui_https_only: bool = Field(default=False, description="cockpit cookie only over HTTPS")
    train_seconds: float = Field(
        default=86_400.0, description="how often candidates are trained and gated"
    )

    @model_validator(mode="after")
    def _defaults_in_data_dir(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'campopt.db').resolve()}"
        if not self.mlflow_tracking_uri:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.mlflow_tracking_uri = f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"
        return self

    @property
    def decision_clock_skew(self) -> timedelta:
        return timedelta(seconds=self.decision_clock_skew_seconds)

    @property
    def artifact_root(self) -> Path:
        return (self.data_dir / "mlartifacts").resolve()
