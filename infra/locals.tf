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
  model_env = length(var.model_aliases) == 0 ? {} : { MODEL_ALIASES = jsonencode(var.model_aliases) }

  service_env = merge(local.model_env, {
    API_KEYS_SECRET      = google_secret_manager_secret.keys.id
    GOOGLE_CLOUD_PROJECT = var.project_id
    KEYS_REFRESH_SECONDS = tostring(var.keys_refresh_seconds)
    VERTEX_LOCATION      = var.vertex_location
    # One gunicorn worker per vCPU the service is given (gunicorn.conf.py reads it).
    WEB_CONCURRENCY = var.cpu
  })
}
