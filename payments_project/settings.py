"""
Settings for the payments platform.

Configuration comes from the environment only (django-environ; a `.env` file is read when
present). With nothing set, the service runs in its *embedded default*: SQLite, Celery
tasks executed eagerly in-process, a local-memory cache and the sandbox provider. Setting
`DATABASE_URL`, `REDIS_URL` and friends turns it into the production set.
"""

import ipaddress
import re
import warnings
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# DJANGO_ENV_FILE="" disables the file: the test suite does that so that a developer's
# real provider credentials in `.env` can never reach a test run.
_env_file = env.str("DJANGO_ENV_FILE", default=str(BASE_DIR / ".env"))
if _env_file and Path(_env_file).is_file():
    environ.Env.read_env(_env_file)

DEBUG = env.bool("DEBUG", default=False)

# An insecure fallback is tolerated only while developing; a production process without a
# real secret must refuse to start rather than sign sessions with a published value.
_DEV_SECRET_KEY = "django-insecure-dev-only-key-do-not-use-in-production"
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = _DEV_SECRET_KEY

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Absolute links handed to buyers and client apps (pay links, sandbox pages).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "payments",
    "billing",
    "subscriptions",
    "webhooks",
]

MIDDLEWARE = [
    # Outermost, so a request's time covers the whole stack (GET /metrics shows it).
    "payments_project.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Near the top, so every line logged below it (sessions, auth, views, eager tasks)
    # carries the request id, and its timing covers almost the whole request.
    "payments_project.request_id.RequestIdMiddleware",
    # Before anything can read, log or store it: an API request carrying a card number is
    # refused whole (400 card_number_refused).
    "payments.middleware.CardNumberGuardMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

# The admin login is guarded against password guessing (django-axes): after
# ADMIN_LOGIN_FAILURE_LIMIT failures for one username from one address, that pair is
# locked out for ADMIN_LOGIN_COOLOFF_MINUTES. Keyed on the pair, so an attacker can
# neither guess one account from one place nor lock every staff member out from anywhere.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("ADMIN_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The address as our proxies report it (TRUSTED_PROXIES), like everywhere else.
AXES_CLIENT_IP_CALLABLE = "payments.network.client_ip"

# Staff roles (groups made by migrate): "Support" refunds up to these amounts per payment
# (major units, per currency; a currency not listed cannot be refunded by Support at all);
# "Finance" refunds without a limit and runs reconciliation.
SUPPORT_REFUND_LIMITS = env.dict(
    "SUPPORT_REFUND_LIMITS",
    cast={"value": str},
    default={"RUB": "5000", "USD": "100", "EUR": "100"},
)

# The currencies the payments admin offers as filters (any other is found by search).
ADMIN_CURRENCY_FILTER = env.list("ADMIN_CURRENCY_FILTER", default=["RUB", "USD", "EUR"])

# Covering indexes (INCLUDE) are a PostgreSQL feature; on the embedded SQLite default they
# are plain indexes, which is all a demo needs, so its warning says nothing useful.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

ROOT_URLCONF = "payments_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "payments_project.wsgi.application"

# --- Database -------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
# Money state changes rely on row locks and atomic blocks; a request either commits whole
# or not at all.
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default serves one developer: wait for locks instead of failing, and
    # never keep connections across requests (SQLite connections are cheap).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and Celery -----------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="payments"),
            "TIMEOUT": 300,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL
# With no broker configured, tasks run in-process at the moment they are enqueued (which,
# for our on-commit enqueueing, is right after the transaction commits).
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Keep the worker's database connections between tasks (Celery's fixup would close them
# after each); payments_project/celery.py closes stale ones per task instead.
CELERY_DB_REUSE_MAX = 2**31
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # A task not acknowledged within this window is handed to another worker; it must be
    # longer than our longest task, which is bounded by provider timeouts.
    "visibility_timeout": 3600,
    # A broker that hangs (stopped, half-open connection) instead of refusing must not hang
    # the request that enqueues after its commit: without a timeout a publish waits forever.
    # Longer than the worker's 1 s BRPOP poll, which answers within it.
    "socket_timeout": 2,
    "socket_connect_timeout": 2,
}
CELERY_TIMEZONE = "UTC"
# Enqueueing right after a commit must not hang a request when the broker is away: fail
# fast, and let the sweeps below pick the work up.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}

# --- Auth, i18n, static ---------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Serve straight from the apps' static folders when collectstatic has not been run (the
# embedded default); the Docker image collects them at build time.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)
# ...in which case STATIC_ROOT does not exist yet, and WhiteNoise's warning is noise.
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)

# --- Security -------------------------------------------------------------------------
# Secure by default whenever DEBUG is off; each can be relaxed from the environment for a
# deployment that terminates TLS somewhere we cannot see.
_secure_default = not DEBUG
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_secure_default)
# Health probes come from the orchestrator over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^health/"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_secure_default)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_secure_default)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if _secure_default else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_secure_default)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=_secure_default)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Trust X-Forwarded-Proto only when told a proxy sets it; otherwise a client could claim
# HTTPS and get secure-only behaviour over plain HTTP.
if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = env.bool("USE_X_FORWARDED_HOST", default=False)

# --- API ------------------------------------------------------------------------------
# Rate limits ("<requests>/<s|m|h|d>"), answered 429 with Retry-After: per API key or
# customer session on the API; per source address on the webhook views, which anyone can
# reach without a key (a provider's retries come back later, so a limit costs them nothing).
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="100/s")
WEBHOOK_RATE_LIMIT = env.str("WEBHOOK_RATE_LIMIT", default="20/s")
# Admin login attempts (POSTs) per source address, whatever the username: on top of axes.
ADMIN_LOGIN_RATE_LIMIT = env.str("ADMIN_LOGIN_RATE_LIMIT", default="20/m")
for _rate in ("API_RATE_LIMIT", "WEBHOOK_RATE_LIMIT", "ADMIN_LOGIN_RATE_LIMIT"):
    if not re.fullmatch(r"[1-9][0-9]*/[smhd]", globals()[_rate]):
        raise ImproperlyConfigured(f"{_rate} must look like 100/s, 600/m, 10000/h or 1000/d.")

# How long a web process keeps an API key (and its merchant) it looked up: a key revoked,
# or a merchant disabled, in another process is refused within this many seconds (at once
# in the process that did it). 0 looks every request's key up.
API_KEY_CACHE_SECONDS = env.int("API_KEY_CACHE_SECONDS", default=2)
if not 0 <= API_KEY_CACHE_SECONDS <= 60:
    raise ImproperlyConfigured("API_KEY_CACHE_SECONDS must be 0 to 60.")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["payments.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["payments.permissions.IsSecretKey"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["payments.parsers.BoundedJSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "payments.pagination.IdCursorPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "payments.exception_handlers.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["payments.throttling.ApiRateThrottle"],
    "UNAUTHENTICATED_USER": None,
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%S.%fZ",
    "COERCE_DECIMAL_TO_STRING": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Payments API",
    "DESCRIPTION": (
        "Take payments through Stripe, YooKassa or the offline sandbox, sell plans, refund, "
        "invoice and receive signed callbacks. Authenticate with `Authorization: Bearer <key>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Swagger UI assets come from drf-spectacular-sidecar: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Every operation's error responses (the one error shape) are documented in one place.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "payments.schema.postprocess_error_responses",
    ],
}

# --- Providers ------------------------------------------------------------------------
SANDBOX_ENABLED = env.bool("SANDBOX_ENABLED", default=True)
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
YOOKASSA_SHOP_ID = env.str("YOOKASSA_SHOP_ID", default="")
YOOKASSA_SECRET_KEY = env.str("YOOKASSA_SECRET_KEY", default="")
YOOKASSA_API_URL = env.str("YOOKASSA_API_URL", default="")
# YooKassa does not sign notifications: only these sources are believed (its published
# ranges), and even then the object is fetched again from the API before acting.
YOOKASSA_WEBHOOK_ALLOWED_IPS = env.list(
    "YOOKASSA_WEBHOOK_ALLOWED_IPS",
    default=[
        "185.71.76.0/27",
        "185.71.77.0/27",
        "77.75.153.0/25",
        "77.75.156.11/32",
        "77.75.156.35/32",
        "77.75.154.128/25",
        "2a02:5180::/32",
    ],
)
# Proxies (CIDRs) whose X-Forwarded-For we believe when finding a request's source address.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

# --- Metrics --------------------------------------------------------------------------
# Prometheus metrics at GET /metrics (payments_project/metrics.py). A scrape is let in when
# it brings METRICS_TOKEN as a Bearer token, or comes from METRICS_ALLOWED_NETWORKS (its
# address as seen through TRUSTED_PROXIES; loopback only by default; empty: token only).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
if METRICS_TOKEN and (len(METRICS_TOKEN) < 16 or not METRICS_TOKEN.isprintable()):
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 printable characters.")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"])
for _cidr in METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_cidr, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_NETWORKS: {_cidr!r} is not a network (e.g. 10.0.0.0/8,::1/128)."
        ) from None
# Several processes (gunicorn workers, the Celery pool) each write their counts to files in
# this directory, read by prometheus_client itself, and a scrape adds them all up. One
# directory per service, emptied when it starts (gunicorn.conf.py and the worker do so).
# Unset: counts stay in the process's memory, right for the embedded default's one process.
_metrics_dir = env.ENVIRON.get("PROMETHEUS_MULTIPROC_DIR")  # as prometheus_client reads it
if _metrics_dir is not None and not (_metrics_dir and Path(_metrics_dir).is_dir()):
    raise ImproperlyConfigured("PROMETHEUS_MULTIPROC_DIR must name an existing directory.")
# The Celery worker serves its own /metrics on this port (same access rules); 0: it does not.
METRICS_WORKER_PORT = env.int("METRICS_WORKER_PORT", default=0)
if not 0 <= METRICS_WORKER_PORT <= 65535:
    raise ImproperlyConfigured("METRICS_WORKER_PORT must be a TCP port, or 0 for none.")
# Scrapers speak plain HTTP inside the network, like the health probes.
SECURE_REDIRECT_EXEMPT.append(r"^metrics$")

# --- Logging --------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# `json`: one object a line, for the log pipeline; `text`: readable, for `make run`.
# Both mask card numbers, keys, tokens, emails and phones, and name the request id.
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured("LOG_FORMAT must be json or text.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "payments_project.logging.RequestIdFilter"},
    },
    "formatters": {
        "json": {"()": "payments_project.logging.JsonFormatter"},
        "text": {
            "()": "payments_project.logging.MaskingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The SDK logs every request at INFO; our adapters log what matters.
        "stripe": {"level": "WARNING"},
        # Its start-up banner would open every manage.py command's output.
        "axes.apps": {"level": "WARNING"},
    },
}

# --- Payments behaviour ---------------------------------------------------------------
# The sandbox signs its webhooks (Standard Webhooks scheme). Derived from SECRET_KEY unless
# set, so every process of one installation agrees without extra configuration.
SANDBOX_WEBHOOK_SECRET = env.str("SANDBOX_WEBHOOK_SECRET", default="")
SANDBOX_WEBHOOK_URL = env.str("SANDBOX_WEBHOOK_URL", default="")  # default: PUBLIC_BASE_URL
IDEMPOTENCY_KEY_TTL_HOURS = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24)
# Customer session tokens (JWT) are not stored, so one cannot be revoked before it expires:
# its lifetime is what bounds a leaked one. At least a minute (time to use it), at most a day.
CUSTOMER_SESSION_TTL_SECONDS = env.int("CUSTOMER_SESSION_TTL_SECONDS", default=3600)
if not 60 <= CUSTOMER_SESSION_TTL_SECONDS <= 86400:
    raise ImproperlyConfigured("CUSTOMER_SESSION_TTL_SECONDS must be between 60 and 86400.")
# A payment whose provider checkout could not be created within this window fails.
PAYMENT_CHECKOUT_DEADLINE_MINUTES = env.int("PAYMENT_CHECKOUT_DEADLINE_MINUTES", default=60)
# A payment still pending this long (its pay link never paid) is canceled, and its
# checkout closed at the provider, by the hourly expiry task.
PAYMENT_PENDING_EXPIRY_HOURS = env.int("PAYMENT_PENDING_EXPIRY_HOURS", default=24)
PROVIDER_TIMEOUT_SECONDS = env.float("PROVIDER_TIMEOUT_SECONDS", default=10.0)

# Periodic sweeps (Celery beat). Each one recovers work whose task was lost (a worker
# killed mid-task, a broker restart) or cleans up; all of them are safe to run twice.
CELERY_BEAT_SCHEDULE = {
    # Pending payments whose checkout task never ran or died: dispatch again.
    "payments-redispatch-checkouts": {
        "task": "payments.tasks.payments_sweep_awaiting_checkout",
        "schedule": 60.0,
    },
    # Refunds whose provider call was lost: ask the provider again (same idempotency key).
    "refunds-redispatch": {
        "task": "payments.tasks.refunds_sweep_awaiting_provider",
        "schedule": 60.0,
    },
    # Sandbox webhooks that were never delivered (our web process was down): resend.
    "sandbox-resend-events": {
        "task": "payments.tasks.sandbox_sweep_undelivered_events",
        "schedule": 60.0,
    },
    # Inbound webhooks stored but never processed (task lost): process them.
    "webhooks-process-stranded": {
        "task": "webhooks.tasks.inbound_webhooks_sweep",
        "schedule": 60.0,
    },
    # Pay links nobody paid: cancel them and close their checkouts, so none is paid late.
    "payments-expire-pending": {
        "task": "payments.tasks.payments_expire_pending",
        "schedule": 3600.0,
    },
    # Idempotency keys are promised for 24 h; older ones only cost space.
    "payments-purge-idempotency-keys": {
        "task": "payments.tasks.idempotency_keys_purge",
        "schedule": 3600.0,
    },
}

# --- Merchant callbacks -----------------------------------------------------------------
# Seconds to wait before each retry of a failed callback: about three days in all (the
# Standard Webhooks schedule), each with up to 10 % jitter so retries do not arrive in waves.
WEBHOOK_RETRY_SCHEDULE = env.list(
    "WEBHOOK_RETRY_SCHEDULE",
    cast=int,
    default=[5, 300, 1800, 7200, 18000, 36000, 36000, 36000, 36000, 36000, 36000],
)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# An endpoint that has failed every delivery for this long is disabled.
WEBHOOK_DISABLE_AFTER_DAYS = env.int("WEBHOOK_DISABLE_AFTER_DAYS", default=5)
# Callbacks to loopback and private networks are refused (SSRF), unless this is on.
WEBHOOK_ALLOW_PRIVATE_URLS = env.bool("WEBHOOK_ALLOW_PRIVATE_URLS", default=False)
# How long an old secret keeps signing after a rotation.
WEBHOOK_SECRET_ROTATION_GRACE_HOURS = env.int("WEBHOOK_SECRET_ROTATION_GRACE_HOURS", default=24)
CELERY_BEAT_SCHEDULE["webhooks-deliver-due"] = {
    # Retries come due here, and so do attempts whose worker died mid-send.
    "task": "webhooks.tasks.deliveries_dispatch_due",
    "schedule": 10.0,
}

# --- Subscriptions ------------------------------------------------------------------------
# Renewals charge the saved card this long before the period ends, so a paying customer
# never has a gap while the provider answers.
SUBSCRIPTION_RENEWAL_LEAD_MINUTES = env.int("SUBSCRIPTION_RENEWAL_LEAD_MINUTES", default=60)
# Dunning: after a renewal fails, retry this many days after the first failure (one retry
# per entry); when the last retry fails too, the subscription is canceled.
SUBSCRIPTION_DUNNING_DAYS = env.list("SUBSCRIPTION_DUNNING_DAYS", cast=int, default=[1, 3, 5])
if (
    not SUBSCRIPTION_DUNNING_DAYS
    or sorted(set(SUBSCRIPTION_DUNNING_DAYS)) != SUBSCRIPTION_DUNNING_DAYS
    or SUBSCRIPTION_DUNNING_DAYS[0] < 1
):
    raise ImproperlyConfigured(
        "SUBSCRIPTION_DUNNING_DAYS must be increasing whole days, at least 1: e.g. 1,3,5."
    )
# A first payment not made within this many hours expires the subscription (its checkout
# is closed, so it can no longer be paid).
SUBSCRIPTION_INCOMPLETE_EXPIRY_HOURS = env.int("SUBSCRIPTION_INCOMPLETE_EXPIRY_HOURS", default=23)
CELERY_BEAT_SCHEDULE["subscriptions-run-due"] = {
    # Renewals, dunning retries, period-end cancellations and expiries come due here.
    "task": "subscriptions.tasks.subscriptions_run_due",
    "schedule": 60.0,
}

# --- Reconciliation (billing) -------------------------------------------------------------------
# Provider records are compared with ours in batches of this many (one or two indexed
# queries each): memory stays bounded whatever the size of the day.
RECONCILIATION_BATCH_SIZE = env.int("RECONCILIATION_BATCH_SIZE", default=5000)
# A provider makes its record after ours (Stripe's PaymentIntent only when the buyer
# confirms, up to a day later): its list is read this much past the run's range.
RECONCILIATION_PROVIDER_LAG_HOURS = env.int("RECONCILIATION_PROVIDER_LAG_HOURS", default=24)
# Reports uploaded in the admin are kept in the database for the worker; larger ones go
# through `manage.py reconcile --report FILE`.
RECONCILIATION_REPORT_MAX_BYTES = env.int("RECONCILIATION_REPORT_MAX_BYTES", default=20_000_000)
# A running run with no progress for this long lost its worker and may start over.
RECONCILIATION_STALE_MINUTES = env.int("RECONCILIATION_STALE_MINUTES", default=30)

from celery.schedules import crontab  # noqa: E402  (kept beside the one entry that uses it)

CELERY_BEAT_SCHEDULE["billing-reconcile-nightly"] = {
    # Yesterday (UTC) against every enabled provider, once its late webhooks have landed
    # and before the working day: staff start the morning with the night's mismatches.
    "task": "billing.tasks.reconciliation_nightly",
    "schedule": crontab(hour=3, minute=15),
}
