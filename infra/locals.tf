locals {
  # APIs the service needs at run time and at deploy time; dns only when Terraform
  # manages the record. Not enough for a plain `terraform apply` on an empty project:
  # deploy.sh first enables the bootstrap APIs Terraform itself needs (Cloud Resource
  # Manager, Service Usage) and builds the image that var.image names.
  apis = setunion(
    [
      "aiplatform.googleapis.com",
      "artifactregistry.googleapis.com",
      "cloudbuild.googleapis.com",
      "iam.googleapis.com",
      "logging.googleapis.com",
      "monitoring.googleapis.com",
      "run.googleapis.com",
      "secretmanager.googleapis.com",
    ],
    var.dns_managed_zone == "" ? [] : ["dns.googleapis.com"],
  )

  # Least privilege on the project; the key secret is granted on the secret alone (iam.tf).
  runtime_project_roles = toset([
    "roles/aiplatform.user",
    "roles/logging.logWriter",
  ])

  # Keyed maps rather than count: absent when the feature is off, stable addresses when on.
  domains         = var.domain == "" ? toset([]) : toset([var.domain])
  managed_records = var.domain != "" && var.dns_managed_zone != "" ? toset([var.domain]) : toset([])
  public_invokers = var.invoker_all_users ? toset(["allUsers"]) : toset([])

  image_repository = "${var.region}-docker.pkg.dev/${var.project_id}/${var.artifact_repository_id}"

  # Set only when the operator chose aliases: without MODEL_ALIASES the gateway serves its
  # own defaults (app/config.py DEFAULT_ALIASES, the table in README), the one source of truth.
  # Likewise MODEL_PASSTHROUGH: unset (null) leaves the gateway's default; [] sets it empty, passing no id.
  model_env = merge(
    length(var.model_aliases) == 0 ? {} : { MODEL_ALIASES = jsonencode(var.model_aliases) },
    var.model_passthrough == null ? {} : { MODEL_PASSTHROUGH = join(",", var.model_passthrough) },
  )

  service_env = merge(local.model_env, {
    API_KEYS_SECRET      = google_secret_manager_secret.keys.id
    GOOGLE_CLOUD_PROJECT = var.project_id
    KEYS_REFRESH_SECONDS = tostring(var.keys_refresh_seconds)
    VERTEX_LOCATION      = var.vertex_location
    # One gunicorn worker per vCPU the service is given (gunicorn.conf.py reads it).
    WEB_CONCURRENCY = var.cpu
  })

  # The gateway's stdout JSON lines in Cloud Logging, and among them its request lines (one per request,
  # the only lines with latency_ms). Filters for logging_metrics.tf; checked against real lines in
  # tests/test_usage.py.
  stdout_lines  = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.service_name}\" AND logName=\"projects/${var.project_id}/logs/run.googleapis.com%2Fstdout\""
  request_lines = "${local.stdout_lines} AND jsonPayload.latency_ms>=0"

  # Log field under jsonPayload.usage => words for descriptions. thinking_tokens is read when the line
  # carries it (absent: not counted).
  token_kinds = {
    input_tokens    = "Input"
    output_tokens   = "Output"
    thinking_tokens = "Thinking"
  }
  # Log field under jsonPayload => words for descriptions.
  timings = {
    latency_ms = "Latency"
    ttfb_ms    = "Time to first byte"
  }

  # A log-based metric NAME is logging.googleapis.com/user/NAME in Cloud Monitoring; PromQL spells it with
  # the first "/" as ":" and every other "/", "." and "-" as "_" (SPEC.md, platform facts).
  promql_metric = "logging_googleapis_com:user_${replace(var.service_name, "-", "_")}_"
  promql_run    = "monitored_resource=\"cloud_run_revision\""

  # Alerts (alerts.tf) exist only when an email is given; each says what to check first.
  alert_emails = var.alert_email == "" ? toset([]) : toset([var.alert_email])
  alerts = {
    gateway_5xx = {
      display_name = "5xx answers above ${var.alert_5xx_ratio * 100}% of requests"
      severity     = "ERROR"
      duration     = "300s"
      query        = "sum(rate(${local.promql_metric}requests{${local.promql_run},status_class=\"5\"}[5m])) / sum(rate(${local.promql_metric}requests{${local.promql_run}}[5m])) > ${var.alert_5xx_ratio}"
      documentation = join("\n", [
        "More than ${var.alert_5xx_ratio * 100}% of the gateway's answers were 5xx for 5 minutes.",
        "",
        "Check first: the request lines' `outcome` and `error` (Logs Explorer: `resource.labels.service_name=\"${var.service_name}\" AND httpRequest.status>=500`).",
        "`upstream_auth_unavailable` or a 502 `upstream_unreachable` point at the service account or Vertex AI;",
        "many 503s from every request point at the key secret (see the key refresh alert) or a bad revision: roll back with `./deploy.sh --image PREVIOUS_IMAGE`.",
      ])
    }
    upstream_429 = {
      display_name = "Vertex AI 429s above ${var.alert_upstream_429_per_minute} per minute"
      severity     = "WARNING"
      duration     = "300s"
      query        = "sum(rate(${local.promql_metric}upstream_429{${local.promql_run}}[5m])) * 60 > ${var.alert_upstream_429_per_minute}"
      documentation = join("\n", [
        "Vertex AI refused more than ${var.alert_upstream_429_per_minute} requests a minute with 429 for 5 minutes: a quota or shared capacity limit, not the gateway's own per-key limits.",
        "",
        "Check first: which alias (the dashboard's upstream 429 tile), then that model's quota in the console (IAM & Admin > Quotas, service aiplatform.googleapis.com, in VERTEX_LOCATION).",
        "Remedies: ask for more quota, move heavy keys to another model, or cap them with an `rpm` in the key document (`scripts/keys set ID --rpm N`).",
      ])
    }
    no_success = {
      display_name = "no successful request for ${var.alert_no_success_minutes} min while keyed traffic arrives"
      severity     = "CRITICAL"
      duration     = "60s"
      query        = "(sum(increase(${local.promql_metric}requests{${local.promql_run},key_id!=\"\"}[${var.alert_no_success_minutes}m])) > 0) unless on() (sum(increase(${local.promql_metric}requests{${local.promql_run},status_class=\"2\"}[${var.alert_no_success_minutes}m])) > 0)"
      documentation = join("\n", [
        "Requests with a valid key kept arriving for ${var.alert_no_success_minutes} minutes and not one was answered 2xx.",
        "",
        "Check first: the latest revision's health (`gcloud run services describe ${var.service_name} --region ${var.region}`) and the status of those requests on the dashboard's error tile.",
        "All 5xx: Vertex AI or the service account (see the 5xx alert). All 4xx from one key: that client is misconfigured (wrong model or endpoint) and nobody else is calling; the `error` field of its request lines says why.",
      ])
    }
    key_refresh = {
      display_name = "API key document cannot be read"
      severity     = "ERROR"
      duration     = "300s"
      query        = "sum(increase(${local.promql_metric}key_refresh_failures{${local.promql_run}}[10m])) >= 3"
      documentation = join("\n", [
        "The gateway failed to read or parse its key document at least 3 times in 10 minutes. Running instances keep the last good key set, so new, rotated or revoked keys do not take effect; a new instance without a good read answers 503 to every /v1 request.",
        "",
        "Check first: the `app.keys` error lines (Logs Explorer: `resource.labels.service_name=\"${var.service_name}\" AND jsonPayload.logger=\"app.keys\"`).",
        "A parse error: the newest secret version is broken; disable it (`gcloud secrets versions disable N --secret SECRET`) so the one before is read again. A permission error: the runtime service account lost `roles/secretmanager.secretAccessor` on the secret (infra/iam.tf; `terraform apply` restores it).",
      ])
    }
  }
}
