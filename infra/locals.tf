locals {
  # APIs the service needs at run time and at deploy time; dns only when Terraform
  # manages the record. Enabled here so a plain `terraform apply` works too.
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

  service_env = {
    API_KEYS_SECRET      = google_secret_manager_secret.keys.id
    GOOGLE_CLOUD_PROJECT = var.project_id
    KEYS_REFRESH_SECONDS = tostring(var.keys_refresh_seconds)
    MODEL_ALIASES        = jsonencode(var.model_aliases)
    VERTEX_LOCATION      = var.vertex_location
  }
}
