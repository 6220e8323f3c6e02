"""Settings from flowjobs.toml plus FLOWJOBS_* environment variables, validated with pydantic.

Where the file comes from: `--config PATH`, else `$FLOWJOBS_CONFIG`, else `./flowjobs.toml`
when it exists, else built-in defaults. Environment variables override the file:
`FLOWJOBS_<SECTION>_<KEY>` (e.g. `FLOWJOBS_DATABASE_URL`, `FLOWJOBS_WORKER_CONCURRENCY`);
list values are comma-separated. Every problem is reported as `field: message`
(ConfigError, exit code 2); unknown keys are problems too, with the closest known key, and so
is a FLOWJOBS_<SECTION>_<KEY> variable of a known section whose key is none of its own (nested
tables, `[webhooks.outbound]` and `[schedules.<id>]`, are not read from the environment), and
one whose section is a near spelling of a section that has that key (FLOWJOBS_STRIP_API_BASE).
"""

from __future__ import annotations

import difflib
import os
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from flowjobs.durations import parse_duration
from flowjobs.errors import ConfigError
from flowjobs.urls import redact

Duration = Annotated[float, BeforeValidator(parse_duration)]


def _not_spinning(value: float) -> float:
    if value < 0.01:  # "0s" was taken: a loop ran without a pause, or a duty never let go
        raise ValueError("must be at least 10ms")
    return value


#: How often something is done: "0s" spun a loop (poll, rescue) or hung the worker before it
#: started (retention, alerts: `schedule` never finishes a duty due every 0 seconds).
Interval = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_not_spinning)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(Section):
    url: str = "sqlite:///flowjobs.db"
    busy_timeout: Duration = parse_duration("30s")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if url.startswith("postgres://"):  # Heroku's and libpq's short form
            url = "postgresql+psycopg://" + url[len("postgres://") :]
        if url and "://" not in url:  # a file path, as --database takes one
            url = "sqlite:///" + url
        if not (url.startswith("sqlite:///") or url.startswith(("postgresql://", "postgresql+"))):
            raise ValueError(
                "must be sqlite:///PATH (sqlite:////abs/path for an absolute one), a file path, "
                "or postgresql+psycopg://user@host/db (postgres:// is read as the latter)"
            )
        driver = url.split("://", 1)[0].partition("+")[2]
        if url.startswith("postgresql+") and driver != "psycopg":
            raise ValueError(
                f"flowjobs talks to PostgreSQL through psycopg, not {driver or 'nothing'}: "
                "write postgresql+psycopg://user@host/db (or postgresql://…)"
            )
        return url


class WorkerSettings(Section):
    concurrency: int = Field(10, ge=1, le=1000)
    processes: int = Field(1, ge=1, le=64)
    queues: list[str] = ["*"]
    lease: Duration = parse_duration("30s")
    shutdown_timeout: Duration = parse_duration("30s")
    poll_interval: Interval = parse_duration("50ms")
    rescue_interval: Interval = parse_duration("5s")

    @field_validator("lease")
    @classmethod
    def _lease_floor(cls, value: float) -> float:
        if value < 0.5:
            raise ValueError("must be at least 500ms (heartbeats renew it every third of it)")
        return value

    @field_validator("queues")
    @classmethod
    def _some_queue(cls, value: list[str]) -> list[str]:
        named = [q.strip() for q in value if q.strip()]
        if not named:  # a worker of no queue took nothing, and nothing said so
            raise ValueError('names no queue: give at least one ("*" takes every queue)')
        return named


class RetrySettings(Section):
    max_attempts: int = Field(2, ge=1, le=100)
    min_wait: Duration = parse_duration("1s")
    max_wait: Duration = parse_duration("10s")
    factor: float = Field(2.0, ge=1)
    randomize: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> RetrySettings:
        if self.min_wait > self.max_wait:  # it failed at the first trigger, "unexpected"
            raise ValueError(
                f"min_wait ({self.min_wait:g}s) must not be more than max_wait ({self.max_wait:g}s)"
            )
        return self


class RunSettings(Section):
    timeout: Duration = parse_duration("1h")
    timeout_grace: Duration = parse_duration("10s")
    max_crashes: int = Field(10, ge=1, le=1000)
    idempotency_key_ttl: Duration = parse_duration("30d")


class TaskSettings(Section):
    modules: list[str] = []


class SchedulerSettings(Section):
    interval: Interval = parse_duration("1s")
    grace: Duration = parse_duration("1m")

    @model_validator(mode="after")
    def _reachable(self) -> SchedulerSettings:
        # ticks come every `interval` from whenever the worker started: a `skip` schedule whose
        # slots are never ticked within `grace` of their time never fires at all (checked after
        # the fields, so a default grace is checked too)
        if self.grace < 2 * self.interval:
            raise ValueError(
                f"grace ({self.grace:g}s) must be at least twice interval "
                f'({self.interval:g}s), or a catchup = "skip" schedule can miss every slot'
            )
        return self


class RetentionSettings(Section):
    completed: Duration = parse_duration("7d")
    failed: Duration = parse_duration("30d")
    rejected: Duration = parse_duration("7d")
    interval: Interval = parse_duration("10m")


class StripeSettings(Section):
    test_api_key: str = ""
    live_api_key: str = ""
    api_base: str = ""
    max_retries: int = Field(3, ge=0, le=10)
    timeout: Duration = parse_duration("30s")
    mode: Literal["test", "live"] = "test"
    webhook_secret: str = ""
    test_webhook_secret: str = ""
    connect_webhook_secret: str = ""
    webhook_tolerance: Duration = parse_duration("5m")

    def api_key(self, livemode: bool) -> str:
        """The secret key for live or test mode ("" when not set)."""
        return self.live_api_key if livemode else self.test_api_key

    @field_validator("test_api_key", "live_api_key")
    @classmethod
    def _secret_key(cls, value: str) -> str:
        if value and not value.startswith(("sk_", "rk_")):
            raise ValueError("must be a Stripe secret or restricted key (sk_… or rk_…)")
        return value

    @field_validator("webhook_tolerance")
    @classmethod
    def _tolerance(cls, value: float) -> float:
        # Stripe's check takes whole seconds, and 0 switches it off: "500ms" accepted any age
        if not 1 <= value <= 86400:
            raise ValueError("must be between 1s and 1d (Stripe's own default is 5m)")
        return value

    @field_validator("api_base")
    @classmethod
    def _http(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class BillingSettings(Section):
    retry_days: list[int] = [3, 5, 5]
    stale_payment_after: Duration = parse_duration("6h")
    pending_give_up_after: Duration = parse_duration("3d")
    processing_give_up_after: Duration = parse_duration("14d")
    max_requeues: int = Field(3, ge=0, le=100)
    requeue_after: Duration = parse_duration("15m")
    checkout_session_retention: Duration = parse_duration("14d")
    fan_out_page: int = Field(500, ge=1, le=5000)
    tax_calculator: str = ""

    @field_validator("retry_days")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(day <= 0 for day in value):
            raise ValueError("every retry delay must be a positive number of days")
        return value

    @field_validator("tax_calculator")
    @classmethod
    def _tax(cls, value: str) -> str:
        value = value.strip()
        if value.startswith("flat:"):  # "flat:abc" failed every merchant-of-record charge later
            try:
                percent = Decimal(value.removeprefix("flat:"))
            except InvalidOperation:
                percent = Decimal("NaN")
            if not percent.is_finite() or not 0 <= percent <= 100:
                raise ValueError(
                    '"flat:<percent>" takes a percentage from 0 to 100, e.g. "flat:20"'
                )
        elif value and ":" not in value.strip(":"):
            raise ValueError('must be "", "flat:<percent>" or "module:object"')
        return value


class DocumentSettings(Section):
    dir: str = "documents"
    pay_url_template: str = ""

    @field_validator("pay_url_template")
    @classmethod
    def _pay_url(cls, value: str) -> str:
        if not value:
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        try:
            value.format(invoice_id="inv", organization_id="org", invoice_number="N")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"only {{invoice_id}}, {{organization_id}} and {{invoice_number}} can be used ({exc})"
            ) from None
        return value


class MailSettings(Section):
    transport: Literal["file", "smtp", "console"] = "file"
    dir: str = "mail"
    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    ca_file: str = ""
    username: str = ""
    password: str = ""
    timeout: Duration = parse_duration("10s")
    retries: int = Field(3, ge=0, le=10)
    from_address: str = "notifications@flowglad.com"
    billing_domain: str = "flowglad.com"
    app_url: str = "https://app.flowglad.com"


class AlertSettings(Section):
    email: list[str] = []
    webhook_url: str = ""
    failed_runs: bool = True
    missed_slots: bool = True
    waiting_over: Duration = parse_duration("10m")
    interval: Interval = parse_duration("30s")

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class DashboardSettings(Section):
    allow_actions: bool = False
    username: str = "admin"
    password: str = ""
    page_size: int = Field(50, ge=5, le=500)


class SupabaseSettings(Section):
    webhook_token: str = ""


class OutboundWebhookSettings(Section):
    """`[webhooks.outbound]`: flowjobs delivering Flowglad events to merchants' endpoints."""

    enabled: bool = True
    timeout: Duration = parse_duration("15s")
    connect_timeout: Duration = parse_duration("5s")
    # Svix's schedule: the first attempt at once, then one retry after each delay.
    retry_schedule: list[Duration] = [
        parse_duration(d) for d in ("5s", "5m", "30m", "2h", "5h", "10h", "10h")
    ]
    response_excerpt: int = Field(1000, ge=0, le=65536)
    user_agent: str = "flowjobs-webhooks/1"

    @field_validator("retry_schedule")
    @classmethod
    def _delays(cls, value: list[float]) -> list[float]:
        if len(value) > 50:
            raise ValueError("at most 50 retries")
        if any(delay < 0 for delay in value):
            raise ValueError("every retry delay must be zero or more")
        return value


class WebhooksSettings(Section):
    outbound: OutboundWebhookSettings = OutboundWebhookSettings()


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body: str = "1MB"
    timeout: Duration = parse_duration("30s")
    threads: int = Field(4, ge=1, le=64)

    @field_validator("max_body")
    @classmethod
    def _size(cls, value: str) -> str:
        parse_size(value)
        return value

    def max_body_bytes(self) -> int:
        return parse_size(self.max_body)


def parse_size(text: str) -> int:
    """ "512KB", "1MB", "64kb", "1000" (bytes) → bytes."""
    import re

    match = re.fullmatch(r"\s*(\d+)\s*(b|kb|mb)?\s*", str(text).lower())
    if not match:
        raise ValueError(f"{text!r} is not a size such as 512KB or 1MB")
    return int(match.group(1)) * {None: 1, "b": 1, "kb": 1024, "mb": 1024 * 1024}[match.group(2)]


class ScheduleSettings(Section):
    """`[schedules.<id>]`: a schedule of its own, or overrides of one declared on a task."""

    task: str | None = None
    cron: str | None = None
    timezone: str | None = None
    payload: dict[str, Any] = {}
    catchup: Literal["skip", "latest", "all"] | None = None
    max_catchup: int | None = Field(None, ge=1, le=10000)
    enabled: bool | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        from flowjobs.cron import normalise

        return None if value is None else normalise(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        from flowjobs.cron import zone

        if value is not None:
            zone(value)
        return value


class Settings(Section):
    database: DatabaseSettings = DatabaseSettings()
    worker: WorkerSettings = WorkerSettings()
    retry: RetrySettings = RetrySettings()
    run: RunSettings = RunSettings()
    tasks: TaskSettings = TaskSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    retention: RetentionSettings = RetentionSettings()
    stripe: StripeSettings = StripeSettings()
    billing: BillingSettings = BillingSettings()
    supabase: SupabaseSettings = SupabaseSettings()
    webhooks: WebhooksSettings = WebhooksSettings()
    documents: DocumentSettings = DocumentSettings()
    mail: MailSettings = MailSettings()
    alerts: AlertSettings = AlertSettings()
    dashboard: DashboardSettings = DashboardSettings()
    server: ServerSettings = ServerSettings()
    schedules: dict[str, ScheduleSettings] = {}
    # Directory that relative paths (the SQLite file) are resolved against.
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)
    # The configuration file read, if any (its modification time versions its schedules).
    config_file: Path | None = Field(None, exclude=True)

    def database_url(self) -> str:
        url = self.database.url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            relative = url[len("sqlite:///") :]
            if relative != ":memory:":
                return "sqlite:///" + str((self.base_dir / relative).resolve())
        return url


def _not_a_file(origin: str, path: Path) -> ConfigError:
    """Why `path`, named by `origin` (--config, FLOWJOBS_CONFIG), is not a configuration file
    flowjobs reads: missing, a folder, or no file at all (`/dev/null`, a pipe). An empty file
    is a configuration, of defaults only."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return ConfigError(
                [f"{origin}: {path} is a link to {os.readlink(path)}, which does not exist"]
            )
        return ConfigError([f"{origin}: no such file: {path}"])
    except NotADirectoryError:
        file = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
        if file is not None:
            return ConfigError([f"{origin}: cannot read {path}: {file} is a file, not a folder"])
        return ConfigError([f"{origin}: no such file: {path}"])
    except OSError as exc:  # a folder on the way that cannot be searched
        return ConfigError([f"{origin}: cannot read {path}: {exc.strerror}"])
    if stat.S_ISDIR(mode):
        return ConfigError([f"{origin}: {path} is a folder, not a configuration file"])
    kinds = {
        stat.S_ISCHR: "a character device, not a regular file",
        stat.S_ISBLK: "a block device, not a regular file",
        stat.S_ISFIFO: "a pipe, not a regular file",
        stat.S_ISSOCK: "a socket, not a regular file",
    }
    what = next((kind for test, kind in kinds.items() if test(mode)), "not a regular file")
    return ConfigError(
        [f"{origin}: {path} is {what}; for the built-in defaults give an empty file instead"]
    )


def find_config_file(explicit: str | None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():  # typer passes FLOWJOBS_CONFIG as --config: name the one used
            came = (
                "FLOWJOBS_CONFIG" if os.environ.get("FLOWJOBS_CONFIG") == explicit else "--config"
            )
            raise _not_a_file(came, path)
        return path
    env = os.environ.get("FLOWJOBS_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise _not_a_file("FLOWJOBS_CONFIG", path)
        return path
    default = Path("flowjobs.toml")
    return default if default.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: {exc}"], source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"], source=str(path)) from None


def _env_overrides(environ: dict[str, str]) -> dict[str, dict[str, Any]]:
    """FLOWJOBS_<SECTION>_<KEY>=value for every scalar or list key of a fixed section."""
    overrides: dict[str, dict[str, Any]] = {}
    for name, section in Settings.model_fields.items():
        model = section.annotation
        if not (isinstance(model, type) and issubclass(model, Section)):
            continue
        for key, field in model.model_fields.items():
            raw = environ.get(env_variable(name, key))
            if raw is None:
                continue
            value: str | list[str] = raw
            if getattr(field.annotation, "__origin__", None) is list:
                value = [v.strip() for v in raw.split(",") if v.strip()]
            overrides.setdefault(name, {})[key] = value
    return overrides


def _merge(base: dict[str, Any], extra: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged = dict(base)
    for section, values in extra.items():
        current = merged.get(section)
        merged[section] = {**current, **values} if isinstance(current, dict) else values
    return merged


def _problems(exc: ValidationError, env: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """`field: message` lines; a value that came from the environment (`env`, as
    `_env_overrides` made it) is named by its variable, where the operator has to look."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = ".".join(loc) or "(top level)"
        if len(loc) >= 2 and loc[1] in (env or {}).get(loc[0], {}):
            field = f"{field} (from {env_variable(loc[0], loc[1])})"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            close = _closest(loc[-1], _keys_at(loc[:-1]))
            message = "unknown key" + (f"; did you mean {close!r}?" if close else "")
            homes = [] if close or len(loc) != 1 else _sections_with(loc[0])
            if homes:  # `url = …` at the top of the file: a key of a section
                message += "; it belongs in " + " or ".join(f"[{h}]" for h in homes)
        lines.append(f"{field}: {message}")
    return lines


def _sections_with(key: str) -> list[str]:
    """The sections of the configuration that have `key`."""
    return [name for name in _keys_at([]) if key in _keys_at([name])]


def _keys_at(path: list[str]) -> list[str]:
    """The keys the table at `path` (["worker"], ["schedules", "nightly"], [] for the top
    level) can hold; [] when `path` is not a table of Settings."""
    annotation: Any = Settings
    for part in path:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part)
            if field is None:
                return []
            annotation = field.annotation
        elif getattr(annotation, "__origin__", None) is dict:  # [schedules.<id>]: any id
            annotation = annotation.__args__[1]
        else:
            return []
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return []
    return [key for key, field in annotation.model_fields.items() if not field.exclude]


def _closest(key: str, known: list[str]) -> str | None:
    """The one of `known` `key` was probably meant to be (difflib's closest), or None."""
    close = difflib.get_close_matches(key.lower(), known, n=1)
    return close[0] if close else None


def _unknown_variables(environ: dict[str, str]) -> list[str]:
    """A problem for every FLOWJOBS_<SECTION>_<KEY> variable that names a section of the
    configuration but none of the keys read from the environment (`FLOWJOBS_WORKER_CONCURENCY`,
    or a key of a nested table): it would be ignored, silently. Variables that are not
    settings (FLOWJOBS_CONFIG, FLOWJOBS_CLOCK, FLOWJOBS_PYZ_CACHE, FLOWJOBS_SUPERVISOR_PID,
    FLOWJOBS_TEST_…: no section of that name) are left alone, unless the name is a near
    spelling of a setting's (`_misspelt_section`)."""
    problems = []
    for name in sorted(environ):
        if not name.startswith("FLOWJOBS_") or name in STANDALONE_VARIABLES:
            continue
        head, _, key = name[len("FLOWJOBS_") :].partition("_")
        section, key = head.lower(), key.lower()
        field = Settings.model_fields.get(section)
        if field is None or field.exclude:
            meant = _misspelt_section(section, key) if key else None
            if meant:  # FLOWJOBS_STRIP_API_BASE: it would be ignored, silently
                problems.append(
                    f"{section}.{key} (from {name}): unknown section; did you mean {meant}?"
                )
                continue
            near = difflib.get_close_matches(name, STANDALONE_VARIABLES, n=1, cutoff=0.82)
            if near:  # FLOWJOBS_CONFG, FLOWJOBS_DB_URL: another file, another database
                problems.append(f"{name}: not a flowjobs variable; did you mean {near[0]}?")
            continue
        known = _keys_at([section])
        if not key:  # FLOWJOBS_DATABASE
            meant = "url" if "url" in known else _closest(section, known)
            hint = f"; did you mean {env_variable(section, meant)}?" if meant else ""
            problems.append(f"{name}: names the [{section}] section, not one of its keys{hint}")
            continue
        if name in {env_variable(section, k) for k in known}:
            continue
        if name.upper() in {env_variable(section, k) for k in known}:
            problems.append(
                f"{section}.{key} (from {name}): variables are read in upper case only: "
                f"{name.upper()}"
            )
            continue
        tables = [k for k in known if _keys_at([section, k])]  # [webhooks.outbound]
        table = next((t for t in tables if key.startswith(t + "_")), None)
        if table is not None:
            problems.append(
                f"{section}.{table}.{key[len(table) + 1 :]} (from {name}): [{section}.{table}] "
                "is not read from the environment; set it in the configuration file"
            )
        elif not known:  # [schedules.<id>]
            problems.append(
                f"{section} (from {name}): [{section}.<id>] tables are not read from the "
                "environment; set them in the configuration file"
            )
        else:
            close = _closest(key, [k for k in known if k not in tables])
            hint = f"; did you mean {env_variable(section, close)}?" if close else ""
            problems.append(f"{section}.{key} (from {name}): unknown key{hint}")
    return problems


def _misspelt_section(section: str, key: str) -> str | None:
    """The variable `FLOWJOBS_<section>_<key>` was meant to be when `section` is a near spelling
    of a section that has `key` (difflib's ratio ≥ 0.8: a letter added or dropped, `strip` for
    `stripe`; a swapped or changed letter in a short name, `mial`, is not caught), or None. A
    variable of another program that merely starts with FLOWJOBS_ matches no key and passes."""
    sections = [n for n, f in Settings.model_fields.items() if not f.exclude]
    for close in difflib.get_close_matches(section, sections, n=3, cutoff=0.8):
        if key in _keys_at([close]) and not _keys_at([close, key]):
            return env_variable(close, key)
    return None


# Variables that are not `[section] key`s: the configuration file, the root options' defaults,
# and the database's URL (the one a near miss of would most likely be meant: a misspelt
# FLOWJOBS_DATABASE_URL is another database, silently).
STANDALONE_VARIABLES = (
    "FLOWJOBS_CONFIG",
    "FLOWJOBS_LOG_LEVEL",
    "FLOWJOBS_LOG_FORMAT",
    "FLOWJOBS_DATABASE_URL",
)


def env_variable(section: str, key: str) -> str:
    return f"FLOWJOBS_{section}_{key}".upper()


def database_option(value: str, option: str = "--database") -> str:
    """`--database` (and `db copy --to`): a URL, or the path of an SQLite file, as the URL
    flowjobs uses (`postgres://` and `postgresql://` read as `postgresql+psycopg://`); a
    relative SQLite path is taken from the working directory (where the operator typed it), not
    the config file's folder. Another kind of URL is a ConfigError naming `option` (exit 2)."""
    if "://" not in value:
        value = "sqlite:///" + value
    if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
        relative = value[len("sqlite:///") :]
        if relative != ":memory:":
            value = "sqlite:///" + str(Path(relative).resolve())
    try:
        return DatabaseSettings(url=value).url
    except ValidationError:
        raise ConfigError(
            [
                f"{option}: {redact(value)!r} must be sqlite:///PATH, a file path, or "
                "postgresql+psycopg://user@host/db"
            ],
            source=option,
        ) from None


def database_origin(settings: Settings, config_path: str | None, option: str | None) -> str:
    """Where the database URL came from: the option, the environment, a file, or the default."""
    if option:
        return "from --database"
    if os.environ.get("FLOWJOBS_DATABASE_URL"):
        return "from FLOWJOBS_DATABASE_URL"
    try:
        path = find_config_file(config_path)
    except ConfigError:
        path = None
    if path is not None and "url" in settings.database.model_fields_set:
        return f"from [database] url in {path}"
    where = f"{path} sets no [database] url" if path else "no flowjobs.toml here"
    return f"the default: {where}, no FLOWJOBS_DATABASE_URL or --database"


def load_settings(
    config_path: str | None = None,
    environ: dict[str, str] | None = None,
    database: str | None = None,
) -> Settings:
    environ = dict(os.environ if environ is None else environ)
    path = find_config_file(config_path)
    data = _read_toml(path) if path else {}
    env = _env_overrides(environ)
    data = _merge(data, env)
    if database:
        data = _merge(data, {"database": {"url": database_option(database)}})
    for internal in ("base_dir", "config_file"):
        if internal in data:
            raise ConfigError(
                [f"{internal}: unknown key"], source=str(path) if path else "environment"
            )
    base_dir = path.resolve().parent if path else Path.cwd()
    problems = []
    try:
        settings = Settings.model_validate(
            {**data, "base_dir": base_dir, "config_file": path.resolve() if path else None}
        )
    except ValidationError as exc:
        problems = _problems(exc, env)
    problems += _unknown_variables(environ)
    if not problems:
        return settings
    from_env = [p for p in problems if "FLOWJOBS_" in p.split(": ", 1)[0]]  # (from FLOWJOBS_…)
    if path is None or len(from_env) == len(problems):
        source = "environment"
    elif from_env:
        source = f"configuration ({path} and the environment)"
    else:
        source = str(path)
    raise ConfigError(problems, source=source)
