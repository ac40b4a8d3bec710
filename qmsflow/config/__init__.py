"""Typed settings: package defaults, then the instance file, then ``QMSFLOW_*`` environment variables."""

from __future__ import annotations

import copy
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..engine.calendar import CalendarOverrides
from ..engine.errors import ConfigurationError
from ..engine.keys import HistoryKey, Keyring, format_retired_keys, parse_retired_keys
from ..engine.webhooks import WebhookSettings

CONFIG_DIR = Path(__file__).parent
CACHE_DIR = "cache"  # in the instance folder: parsed workflow definitions, safe to delete
DEFAULTS_FILE = CONFIG_DIR / "defaults.toml"
CALENDAR_FILE = CONFIG_DIR / "calendar.yaml"
INSTANCE_FILE = "qmsflow.toml"


@dataclass(frozen=True)
class SchedulerSettings:
    """How the sweep runs."""

    sweep_interval_seconds: int = 60
    batch_size: int = 200
    digest_time: str = "07:30"
    embedded: bool = True
    # Outbox batches (of batch_size notifications) routed per wake-up; the rest wait for the next one,
    # so a backlog never holds the sweep back for long.
    route_batches_per_cycle: int = 10
    # Cases per transaction of `qmsflow calendar replan` (and of a replan at `qmsflow init`).
    replan_batch_size: int = 500


@dataclass(frozen=True)
class SmtpSettings:
    """Where email goes."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "qmsflow@localhost"
    username: str = ""
    password: str = ""
    starttls: bool = False
    retry_initial_seconds: int = 60
    retry_max_seconds: int = 3600
    lease_seconds: int = 600


@dataclass(frozen=True)
class EvidenceSettings:
    """Where evidence files are kept and what an upload may be."""

    dir: str = ""  # empty: <instance>/evidence
    max_bytes: int = 20 * 1024 * 1024
    staging_hours: int = 24


@dataclass(frozen=True)
class WebSettings:
    """How the officers' web app runs (qmsflow/web, docs/web.md)."""

    secure_cookies: bool = False  # on behind HTTPS: the session cookie is then sent over HTTPS only
    idle_timeout_minutes: int = 480
    # How many proxies in front of the app may be believed about the client address (X-Forwarded-For);
    # 0: the address the connection comes from. The sign-in throttle counts per client address.
    trusted_proxies: int = 0
    base_url: str = ""  # e.g. https://iso.angiang.gov.vn: links in emails


@dataclass(frozen=True)
class ApiSettings:
    """The JSON API (qmsflow/web/api, docs/api.md)."""

    # Requests one token may make per minute, counted in the database (so across every web
    # process); 0: no limit.
    rate_limit_per_minute: int = 600
    # How long an Idempotency-Key's answer is kept (at least 24 hours).
    idempotency_hours: int = 48


@dataclass(frozen=True)
class HistorySettings:
    """The history keyring besides the current key (``history_key``): its id and the retired keys."""

    key_id: str = "1"
    # "ID=KEY@RETIRED_AT ..." (QMSFLOW_HISTORY_RETIRED_KEYS); written by `qmsflow audit rotate-key`.
    retired_keys: str = ""


@dataclass(frozen=True)
class Settings:
    """Every setting qmsflow reads, resolved once at start."""

    instance_path: Path
    database_url: str
    history_key: str
    secret_key: str
    workflows_dir: Path
    calendar_file: Path
    default_language: str = "vi"
    sqlite_busy_timeout_ms: int = 5000
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)
    history: HistorySettings = field(default_factory=HistorySettings)
    web: WebSettings = field(default_factory=WebSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)

    def keyring(self) -> Keyring:
        """Return the history keyring; raise ConfigurationError naming the setting that is wrong."""
        self.require("history_key")
        retired = parse_retired_keys(self.history.retired_keys, "QMSFLOW_HISTORY_RETIRED_KEYS ([history] retired_keys)")
        try:
            return Keyring(HistoryKey(self.history.key_id, self.history_key.encode("utf-8")), retired)
        except ConfigurationError as exc:
            raise ConfigurationError(f"history keyring (history_key, [history] key_id, retired_keys): {exc}") from None

    def require(self, *names: str) -> Settings:
        """Fail loudly if any of ``names`` is empty; return self so calls chain."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            env = ", ".join(f"QMSFLOW_{n.upper()}" for n in missing)
            raise ConfigurationError(
                f"missing required setting(s) {missing}: run `qmsflow init` to generate them "
                f"in the instance folder, or set {env}"
            )
        return self

    def calendar_overrides(self) -> CalendarOverrides:
        """Read and check the calendar override file."""
        from ruamel.yaml import YAML  # on demand: most commands never read the overrides file

        try:
            raw = YAML(typ="safe", pure=True).load(self.calendar_file.read_text(encoding="utf-8"))
            return CalendarOverrides.from_mapping(raw)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"calendar overrides {self.calendar_file}: {exc}") from None
        except Exception as exc:  # YAML syntax errors
            raise ConfigurationError(f"calendar overrides {self.calendar_file}: {exc}") from None


def _coerce(value: str, like: Any, name: str) -> Any:
    if isinstance(like, list):  # QMSFLOW_WEBHOOKS_ALLOWED_HOSTS="a.gov.vn, .example.vn"
        return [part for part in re.split(r"[\s,]+", value) if part]
    if isinstance(like, float):
        try:
            return float(value)
        except ValueError:
            raise ConfigurationError(f"{name}: expected a number, got {value!r}") from None
    if isinstance(like, bool):
        if value.lower() in {"1", "true", "yes", "on"}:
            return True
        if value.lower() in {"0", "false", "no", "off"}:
            return False
        raise ConfigurationError(f"{name}: expected true or false, got {value!r}")
    if isinstance(like, int):
        try:
            return int(value)
        except ValueError:
            raise ConfigurationError(f"{name}: expected a whole number, got {value!r}") from None
    return value


def _merge(base: dict[str, Any], extra: Mapping[str, Any], where: str) -> None:
    for key, value in extra.items():
        if key not in base:
            raise ConfigurationError(f"{where}: unknown setting {key!r}")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigurationError(f"{where}: {key} must be a table")
            _merge(base[key], value, f"{where} [{key}]")
        else:
            base[key] = value


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Resolve settings: defaults, ``<instance>/qmsflow.toml``, ``QMSFLOW_*`` variables, ``overrides``."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = tomllib.loads(DEFAULTS_FILE.read_text(encoding="utf-8"))
    defaults = copy.deepcopy(raw)
    instance = Path(environ.get("QMSFLOW_INSTANCE_PATH", (overrides or {}).get("instance_path", raw["instance_path"])))
    instance_file = instance / INSTANCE_FILE
    if instance_file.exists():
        try:
            _merge(raw, tomllib.loads(instance_file.read_text(encoding="utf-8")), str(instance_file))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{instance_file}: {exc}") from None
    for key, value in list(raw.items()):
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                env_name = f"QMSFLOW_{key.upper()}_{sub.upper()}"
                if env_name in environ:
                    # a float default stays a float when the instance file wrote a whole number
                    like = float(subvalue) if isinstance(defaults[key][sub], float) and isinstance(subvalue, int) else subvalue
                    value[sub] = _coerce(environ[env_name], like, env_name)
        else:
            env_name = f"QMSFLOW_{key.upper()}"
            if env_name in environ:
                raw[key] = _coerce(environ[env_name], value, env_name)
    if overrides:
        _merge(raw, dict(overrides), "overrides")
    instance = Path(raw["instance_path"])
    database_url = raw["database_url"] or f"sqlite:///{(instance / 'qmsflow.sqlite3').resolve()}"
    from ..workflows import DIRECTORY as WORKFLOWS_DIR

    settings = Settings(
        instance_path=instance,
        database_url=database_url,
        history_key=raw["history_key"],
        secret_key=raw["secret_key"],
        workflows_dir=Path(raw["workflows_dir"]) if raw["workflows_dir"] else WORKFLOWS_DIR,
        calendar_file=Path(raw["calendar_file"]) if raw["calendar_file"] else CALENDAR_FILE,
        default_language=raw["default_language"],
        sqlite_busy_timeout_ms=int(raw["sqlite_busy_timeout_ms"]),
        scheduler=SchedulerSettings(**raw["scheduler"]),
        smtp=SmtpSettings(**raw["smtp"]),
        evidence=EvidenceSettings(**raw["evidence"]),
        history=HistorySettings(**raw["history"]),
        web=WebSettings(**raw["web"]),
        api=ApiSettings(**raw["api"]),
        webhooks=_webhook_settings(raw["webhooks"]),
    )
    if settings.api.rate_limit_per_minute < 0:
        raise ConfigurationError("QMSFLOW_API_RATE_LIMIT_PER_MINUTE ([api] rate_limit_per_minute) must be 0 (no limit) or more")
    if settings.api.idempotency_hours < 24:
        raise ConfigurationError("QMSFLOW_API_IDEMPOTENCY_HOURS ([api] idempotency_hours) must be at least 24")
    for name in ("batch_size", "route_batches_per_cycle", "replan_batch_size"):
        if getattr(settings.scheduler, name) < 1:  # zero would route or re-plan nothing, for ever
            raise ConfigurationError(f"QMSFLOW_SCHEDULER_{name.upper()} ([scheduler] {name}) must be at least 1")
    base = settings.web.base_url
    if base and (not base.startswith(("https://", "http://")) or " " in base or base.rstrip("/").count("/") < 2):
        raise ConfigurationError(
            f"QMSFLOW_WEB_BASE_URL ([web] base_url) {base!r}: give the address officials open, e.g. https://iso.angiang.gov.vn"
        )
    if settings.history_key:
        settings.keyring()  # a malformed keyring fails at start, naming the setting
    return settings


def _webhook_settings(raw: Mapping[str, Any]) -> WebhookSettings:
    """Build and check the ``[webhooks]`` settings; ConfigurationError naming the variable that is wrong."""
    hosts = raw["allowed_hosts"]
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h and "/" not in h and ":" not in h for h in hosts):
        raise ConfigurationError(
            "QMSFLOW_WEBHOOKS_ALLOWED_HOSTS ([webhooks] allowed_hosts): give host names such as "
            "hooks.angiang.gov.vn or .angiang.gov.vn (and its subdomains), without scheme or port"
        )
    numbers = {k: v for k, v in raw.items() if k not in ("enabled", "allowed_hosts")}
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < (0 if name == "rotation_overlap_hours" else 1):
            low = 0 if name == "rotation_overlap_hours" else 1
            raise ConfigurationError(f"QMSFLOW_WEBHOOKS_{name.upper()} ([webhooks] {name}) must be a number, at least {low}")
    if raw["retry_max_seconds"] < raw["retry_initial_seconds"]:
        raise ConfigurationError("QMSFLOW_WEBHOOKS_RETRY_MAX_SECONDS ([webhooks] retry_max_seconds) must be at least retry_initial_seconds")
    return WebhookSettings(enabled=bool(raw["enabled"]), allowed_hosts=tuple(h.lower() for h in hosts), **numbers)


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_keyring(settings: Settings, keyring: Keyring) -> Settings:
    """Write the keyring into the instance file (replacing its history key lines); return fresh settings.

    The file is rewritten line by line so other settings and comments stay; the result is parsed
    back and compared before it replaces the old file, atomically.
    """
    path = settings.instance_path / INSTANCE_FILE
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    top = [f"history_key = {_toml_string(keyring.current.secret.decode('utf-8'))}"]
    section = [
        f"key_id = {_toml_string(keyring.current.key_id)}",
        f"retired_keys = {_toml_string(format_retired_keys(keyring.retired))}",
    ]
    out: list[str] = []
    table: str | None = None
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            if table is None:
                out.extend(top)
                top = []
            table = stripped.strip("[] ")
            out.append(line)
            if table == "history":
                out.extend(section)
                section = []
            continue
        name = stripped.partition("=")[0].strip()
        if (table is None and name == "history_key") or (table == "history" and name in ("key_id", "retired_keys")):
            continue
        out.append(line)
    out.extend(top)
    if section:
        out.extend(["", "[history]", *section])
    text = "\n".join(out) + "\n"
    parsed = tomllib.loads(text)
    expected = (keyring.current.secret.decode("utf-8"), keyring.current.key_id, format_retired_keys(keyring.retired))
    if (parsed.get("history_key"), parsed["history"]["key_id"], parsed["history"]["retired_keys"]) != expected:
        raise ConfigurationError(f"{path}: could not write the history keyring")  # pragma: no cover
    temporary = path.with_suffix(".toml.new")
    temporary.write_text(text, encoding="utf-8")
    temporary.chmod(0o600)
    os.replace(temporary, path)
    return replace(
        settings,
        history_key=expected[0],
        history=HistorySettings(key_id=expected[1], retired_keys=expected[2]),
    )


def ensure_instance(settings: Settings) -> Settings:
    """Create the instance folder (with its ``cache/``) and generate missing secrets into its file; return fresh settings."""
    settings.instance_path.mkdir(parents=True, exist_ok=True)
    (settings.instance_path / CACHE_DIR).mkdir(exist_ok=True)
    path = settings.instance_path / INSTANCE_FILE
    generated = {name: secrets.token_hex(32) for name in ("history_key", "secret_key") if not getattr(settings, name)}
    lines = [f'{name} = "{value}"' for name, value in generated.items()]
    if generated:
        settings = replace(
            settings,
            history_key=generated.get("history_key", settings.history_key),
            secret_key=generated.get("secret_key", settings.secret_key),
        )
    if lines:
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
        header = "" if existing else "# Generated by `qmsflow init`. Keep it secret; back it up with the database.\n"
        # Top-level keys go before the first [table] (rotate-key may have added [history]): after
        # it they would belong to that table.
        old = existing.splitlines(keepends=True)
        at = next((i for i, line in enumerate(old) if line.lstrip().startswith("[")), len(old))
        if at == len(old) and old and not old[-1].endswith("\n"):
            old[-1] += "\n"
        text = "".join(old[:at]) + "\n".join(lines) + "\n" + "".join(old[at:])
        path.write_text(header + text, encoding="utf-8")
        path.chmod(0o600)
    return settings


__all__ = [
    "EvidenceSettings",
    "HistorySettings",
    "Settings",
    "SchedulerSettings",
    "SmtpSettings",
    "ApiSettings",
    "WebSettings",
    "WebhookSettings",
    "ensure_instance",
    "load_settings",
    "write_keyring",
]
