"""Process settings, read from the environment (and a Kubernetes secrets dir).

Flat on purpose: every field is one environment variable of the same name in upper case
(`database_url` <- `DATABASE_URL`), so the Helm chart and this model can be checked against
each other name by name. Build once at the entry point and pass it down.
"""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, secrets_dir=None)

    # PostgreSQL
    database_url: SecretStr = Field(
        SecretStr("postgresql://postgres@127.0.0.1:5432/postgres"),
        description="asyncpg DSN of the platform database.")
    database_password: SecretStr = Field(
        SecretStr(""), description="Password of the DATABASE_URL user; overrides the one in the URL (so the URL can "
        "live in a ConfigMap and the password in a Secret).")
    database_pool_min: int = Field(1, description="Minimum connections in the asyncpg pool.")
    database_pool_max: int = Field(10, description="Maximum connections in the asyncpg pool.")

    # Temporal
    temporal_address: str = Field("127.0.0.1:7233", description="Temporal frontend host:port.")
    temporal_namespace: str = Field("default", description="Temporal namespace for schedules and workflows.")
    temporal_tls: bool = Field(False, description="Use TLS to reach Temporal.")
    temporal_tls_cert: str = Field(
        "", description="mTLS: path of the client certificate (PEM) presented to Temporal, e.g. a mounted "
        "Secret's tls.crt; needs TEMPORAL_TLS_KEY. Any TEMPORAL_TLS_* file turns TLS on.")
    temporal_tls_key: str = Field("", description="mTLS: path of the client certificate's private key (PEM).")
    temporal_tls_ca: str = Field(
        "", description="Path of the CA bundle (PEM) that signed Temporal's server certificate; empty: the "
        "system roots.")
    temporal_tls_server_name: str = Field(
        "", description="Server name to verify Temporal's certificate against, when it differs from "
        "TEMPORAL_ADDRESS's host (e.g. behind a load balancer).")
    temporal_api_key_file: str = Field(
        "", description="Path of a file holding a Temporal Cloud API key (a mounted Secret), sent as a bearer "
        "token; turns TLS on. Read at each connection, so a rotated key is used by the next process start.")
    temporal_register_search_attributes: bool = Field(
        True, description="`nango migrate` registers the platform's search attributes in TEMPORAL_NAMESPACE "
        "(needs the operator API). false where the operator registers them (Temporal Cloud: tcld or the "
        "console); `nango migrate` then skips the registration and logs the names and types to register.")
    task_queue_prefix: str = Field("", description="Prefix of task queue names (several stacks on one namespace).")
    temporal_ui_url: str = Field("", description="Temporal UI base URL, for links from the dashboard.")

    # Bundle store: MinIO/S3 when MINIO_ENDPOINT is set, a local directory otherwise.
    minio_endpoint: str = Field("", description="host:port of the S3/MinIO service; empty uses BUNDLE_DIR.")
    minio_access_key: SecretStr = Field(SecretStr(""), description="S3 access key.")
    minio_secret_key: SecretStr = Field(SecretStr(""), description="S3 secret key.")
    minio_bucket: str = Field("nango-bundles", description="Bucket that holds script bundles.")
    minio_secure: bool = Field(False, description="Use HTTPS to reach MinIO.")
    minio_region: str = Field("us-east-1", description="S3 region name.")
    bundle_dir: Path = Field(Path(".nango/bundles"), description="Local bundle store when MINIO_ENDPOINT is empty.")
    bundle_cache_dir: Path = Field(Path(".nango/cache"), description="Worker-side cache of fetched bundles.")
    # Bundle limits (zip bombs): checked by POST /deploy (413 naming the limit) and again by the worker when it
    # unpacks (the run fails with BundleLimitError, never retried).
    bundle_max_bytes: int = Field(
        20 * 1024 * 1024, ge=1, description="Largest bundle (the compressed zip) POST /deploy accepts and a worker "
        "downloads, in bytes.")
    bundle_max_unpacked_bytes: int = Field(
        100 * 1024 * 1024, ge=1, description="Largest total size of a bundle's files once unpacked, in bytes.")
    bundle_max_files: int = Field(2000, ge=1, description="Most entries (files and folders) one bundle may hold.")
    bundle_max_ratio: int = Field(
        100, ge=1, description="Largest compression ratio of one bundle entry (unpacked / compressed size); entries "
        "under 1 MiB unpacked are exempt, the total size limit bounds them.")

    # Secrets
    encryption_key: SecretStr = Field(
        SecretStr(""), description="base64 of 32 random bytes; encrypts credentials at rest.")
    encryption_key_previous: SecretStr = Field(
        SecretStr(""), description="During an online key rotation only: the key being replaced (base64 of 32 "
        "bytes). Values sealed under it still open; new values are sealed under ENCRYPTION_KEY. Unset it once "
        "`nango admin keys rotate-encryption` has finished.")

    # API server
    api_host: str = Field("127.0.0.1", description="Address the API server binds.")
    api_port: int = Field(3003, description="Port the API server binds.")
    api_retry_after_s: int = Field(
        5, ge=1, description="While PostgreSQL is unavailable the API answers 503 database_unavailable with this "
        "Retry-After (seconds), instead of a bare 500.")
    public_url: str = Field("", description="Public base URL of the API (OAuth callbacks, webhook URLs).")
    dashboard_password: SecretStr = Field(
        SecretStr(""), description="Dashboard login that may pick any environment (empty: log in with an "
        "environment's secret key only).")
    admin_secret_key: SecretStr = Field(
        SecretStr(""), description="Bearer key of the admin API (/admin/environments: create, list, delete "
        "environments, rotate their keys); empty disables it.")
    secret_key_grace_s: int = Field(24 * 3600, description="After a key rotation, how long the previous secret "
                                    "key keeps working (seconds).")
    trusted_proxies: str = Field(
        "", description="Comma-separated CIDRs of the reverse proxies in front of the API (the ingress "
        "controller's pods, e.g. 10.0.0.0/8). Only when the direct peer is in one of them is X-Forwarded-For read "
        "(its right-most address outside them is the client: the dashboard's login throttle keys on it) and "
        "X-Forwarded-Proto trusted (https marks the session cookie Secure). Empty: the peer is the client.")
    session_cookie_secure: bool = Field(
        False, description="Always mark the dashboard's session cookie Secure (for TLS terminated by a proxy "
        "not listed in TRUSTED_PROXIES); otherwise Secure when the request came over HTTPS.")

    # Worker and runner
    worker_task_queues: str = Field("syncs,actions,webhooks,events", description="Task queue kinds this worker polls.")
    worker_max_concurrent_syncs: int = Field(10, description="Concurrent sync activities per worker.")
    worker_max_concurrent_actions: int = Field(20, description="Concurrent action activities per worker.")
    worker_max_concurrent_webhooks: int = Field(20, description="Concurrent webhook-script activities per worker.")
    worker_max_concurrent_events: int = Field(10, description="Concurrent event-script activities per worker.")
    worker_max_concurrent_per_environment: int = Field(
        0, ge=-1, description="Concurrent runs of one environment per worker and kind (syncs, actions, webhooks, "
        "events), so one environment cannot hold every slot. 0 (default): half of the kind's slots, at least 1; "
        "-1: no per-environment limit. A run over its environment's share gives its worker slot back and is "
        "retried later (a sync after waiting up to 5 s; an action, webhook or event script at once).")
    worker_shutdown_grace_s: int = Field(30, description="On SIGTERM, how long running scripts may finish first.")
    worker_sticky_timeout_s: float = Field(
        10.0, gt=0, description="How long a workflow's next task waits for the worker that ran its last one (which "
        "holds the workflow in its cache) before any worker takes it: after a worker is lost, its runs' next steps "
        "wait this long. Temporal's default.")
    reconcile_interval_s: int = Field(300, description="How often the API repairs schedules and stuck webhooks "
                                                        "(0 disables).")
    token_refresh_interval_s: float = Field(
        60, description="How often each API process renews OAuth2 tokens that are due (15 minutes before expiry, or "
                        "halfway through a shorter life; 0 disables; "
                        "tokens are then refreshed only when used).")
    reconcile_concurrency: int = Field(
        32, ge=1, le=1000, description="Temporal calls one reconcile keeps in flight (schedule creations, "
        "re-timings, deletions): a deploy that re-times 10,000 schedules makes about 20,000 calls. Keep it well "
        "under the namespace's frontend RPS limit (frontend.namespaceRPS) shared with the workers.")
    worker_health_port: int = Field(8081, description="Port of the worker's GET /health/live (0 disables it).")
    worker_health_host: str = Field(
        "", description="Address the worker's GET /health/live binds; empty: the same as API_HOST (loopback for "
        "`nango dev`; the chart and the image bind 0.0.0.0 so the kubelet's probes reach it).")
    startup_wait_max_s: int = Field(
        0, ge=0, description="At start-up, how long the worker and the API wait for PostgreSQL and Temporal to "
        "answer (retrying with backoff, up to 30 s apart, logging what they wait for) before giving up; "
        "0 waits forever (SIGTERM still stops the process).")
    runner_memory_mb: int = Field(512, description="Address-space limit of a script's process.")
    runner_sync_timeout_s: int = Field(24 * 3600, description="Wall-clock limit of a sync run.")
    runner_action_timeout_s: int = Field(15 * 60, description="Wall-clock limit of an action run.")
    runner_webhook_timeout_s: int = Field(15 * 60, description="Wall-clock limit of a webhook script run.")
    runner_event_timeout_s: int = Field(5 * 60, description="Wall-clock limit of an event script run.")
    runner_heartbeat_timeout_s: int = Field(30, description="A sync whose worker stops heartbeating this long is "
                                            "retried on another worker.")
    runner_require_isolation: bool = Field(
        True, description="Deprecated and ignored: the worker always refuses to start without the full sandbox "
        "(see RUNNER_ALLOW_UNSANDBOXED). Still accepted so existing deployments keep starting.")
    runner_cpu_seconds: int = Field(7200, description="CPU-time limit (RLIMIT_CPU) of a script's process; 0 = none.")
    runner_warm_children: int = Field(4, description="Pre-started script processes kept ready per worker.")
    runner_isolation: str = Field(
        "", description="Pin the isolation: empty or bwrap = the full sandbox (bubblewrap + seccomp + rlimits), "
        "never downgraded; process = no sandbox, which needs RUNNER_ALLOW_UNSANDBOXED=true.")
    runner_allow_unsandboxed: bool = Field(
        False, description="Local development only: run scripts without the sandbox when it is missing (or with "
        "RUNNER_ISOLATION=process), logged as a warning at start and on every run. Scripts then see the worker's "
        "files and processes: never on a shared worker.")
    runner_tmp_size_mb: int = Field(64, ge=1, description="Size cap of a script's private /tmp (a tmpfs, which also "
                                    "holds the bundle's files); a write beyond it fails with 'No space left'.")
    runner_shm_size_mb: int = Field(16, ge=1, description="Size cap of a script's /dev/shm (a tmpfs); the rest of "
                                    "its /dev is read-only.")
    runner_file_size_mb: int = Field(64, ge=1, description="Largest file a script's process may write (RLIMIT_FSIZE);"
                                     " a larger write fails with 'File too large'.")
    runner_sandbox_proc: str = Field(
        "auto", description="The script sandbox's /proc: private = its own procfs (only its own processes); "
        "none = no /proc (needed where the container runtime masks /proc, as runc does for a non-root pod, so no "
        "procfs can be mounted); auto = private, else none, probed at start and logged as runner_isolation's "
        "proc. The worker's own /proc is never shown to scripts.")
    runner_child_nice: int = Field(
        0, ge=0, le=19, description="Nice value of script processes from their boot on (0 = the worker's own): "
        "above 0, warm children booting and the scripts themselves yield the CPU to the worker, the API and the "
        "database. Off by default: on a node whose trusted side keeps the CPU busy, children booting at a low "
        "priority starve and runs wait for them (bench/README.md, orchestration).")
    runner_fork_server: bool = Field(
        True, description="Fork each script process from a warm template inside the sandbox instead of starting a "
        "sandbox per run: still one process per run, which makes its own user, mount, pid, ipc and network "
        "namespaces, /tmp, /dev/shm, rlimits and full seccomp filter before its init frame (a boot costs a fork, "
        "not an interpreter: bench/README.md, orchestration). Where it cannot work (or fails its self-check) the "
        "worker logs why and starts a sandbox per run; false starts a sandbox per run always.")
    runner_pids_cgroup: bool = Field(
        True, description="Put each script process in its own v1 pids cgroup where one is writable: a second line "
        "behind the seccomp filter, which alone refuses every new process (threads stay allowed).")
    runner_frame_timeout_s: float = Field(
        10.0, gt=0, description="Once the header of an RPC frame from a script has arrived, seconds its body may take "
        "(plus 1 s per 4 MiB announced); a frame that does not complete ends the run as a protocol violation. Idle "
        "time between frames is not limited.")

    # Per-run quotas, enforced by the trusted host (the child is never trusted to respect them).
    runner_max_log_lines: int = Field(
        10_000, ge=1, description="Log lines one run may store (nango.log, stdout, stderr); later lines are dropped "
        "and one entry says how many.")
    runner_max_log_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Bytes of log text one run may store; later lines are dropped and one "
        "entry says how many.")
    runner_max_rpc_in_flight: int = Field(
        64, ge=1, description="Platform calls one script may have in flight; past it the host stops reading the "
        "script's requests until one finishes (backpressure).")
    runner_max_records_per_batch: int = Field(
        10_000, ge=1, description="Records in one batch_save/update/delete call as the host receives it (the SDK "
        "sends 5,000 per call); a larger call is refused.")
    runner_max_record_bytes: int = Field(
        1024 * 1024, ge=1, description="Size of one record encoded as JSON; a larger record is refused with its "
        "batch.")

    # Egress (orchestrator/providers/egress.py): where scripts and /proxy may send requests
    egress_allow: str = Field(
        "", description="Hosts scripts and /proxy may reach besides the integration's provider host, in every "
        "environment: comma-separated host, host:port, *.domain, address or CIDR entries. Only this setting opens "
        "loopback, link-local (cloud metadata), private and other non-public addresses, e.g. 127.0.0.1:8080 or "
        "10.0.0.0/8.")

    providers_file: str = Field(
        "", description="Path of an operator's providers YAML whose entries extend or override the built-in "
        "catalog: entries in our shape, or in Nango's own providers.yaml shape (converted; what has no equivalent "
        "is logged and skipped). Checked when the API and the worker start (an unreadable file stops them).")

    log_level: str = Field("INFO", description="Log level.")
    records_retention_days: int = Field(
        0, ge=0, le=36500, description="Installation-wide retention for environments that set none of their own "
        "(PATCH /environment): records soft-deleted more than N days ago are deleted; 0 keeps them forever.")
    jobs_retention_days: int = Field(
        0, ge=0, le=36500, description="Installation-wide retention for environments that set none of their own: "
        "finished jobs (runs) and their log lines older than N days are deleted; 0 keeps them forever.")
    webhooks_retention_days: int = Field(
        0, ge=0, le=36500, description="Installation-wide retention for environments that set none of their own: "
        "stored provider webhook payloads older than N days are deleted; 0 keeps them forever.")
    metrics_enabled: bool = Field(
        True, description="Serve Prometheus metrics at GET /metrics on the API (no secret key) and on the worker's "
        "health port (with the Temporal SDK's own); false: neither, and no SDK exporter.")

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, v: str) -> str:
        for entry in (e.strip() for e in v.split(",")):
            if entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(f"TRUSTED_PROXIES: {entry!r} is not an address or CIDR block") from None
        return v

    @field_validator("temporal_tls_key")
    @classmethod
    def _cert_and_key_together(cls, v: str, info: ValidationInfo) -> str:
        if bool(v) != bool(info.data.get("temporal_tls_cert")):
            raise ValueError("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together (mTLS needs both)")
        return v

    @field_validator("encryption_key", "encryption_key_previous")
    @classmethod
    def _key_is_32_bytes(cls, v: SecretStr) -> SecretStr:
        raw = v.get_secret_value()
        if raw and len(base64.b64decode(raw)) != 32:
            raise ValueError("ENCRYPTION_KEY and ENCRYPTION_KEY_PREVIOUS must be base64 of exactly 32 bytes")
        return v

    def previous_encryption_key_bytes(self) -> bytes | None:
        raw = self.encryption_key_previous.get_secret_value()
        return base64.b64decode(raw) if raw else None

    def encryption_key_bytes(self) -> bytes:
        raw = self.encryption_key.get_secret_value()
        if not raw:
            raise ValueError("ENCRYPTION_KEY is not set; generate one with `nango admin keys new`")
        return base64.b64decode(raw)
