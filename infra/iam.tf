resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = "${var.service_name}-run"
  display_name = "${var.service_name} Cloud Run runtime"
  description  = "Identity of the ${var.service_name} gateway: calls Vertex AI, reads its key secret, writes logs."

  depends_on = [google_project_service.enabled]
}

resource "google_project_iam_member" "runtime" {
  for_each = local.runtime_project_roles

  project = var.project_id
  role    = each.value
  member  = google_service_account.runtime.member
}

# Scoped to the one secret, not project-wide: the gateway can read its keys and nothing else.
resource "google_secret_manager_secret_iam_member" "runtime_keys" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.keys.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.runtime.member
}

# Opt-in only: the default is invoker_iam_disabled on the service, which also works where a
# domain-restricted-sharing org policy forbids allUsers bindings. The app checks API keys.
resource "google_cloud_run_v2_service_iam_member" "public" {
  for_each = local.public_invokers

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.gateway.name
  role     = "roles/run.invoker"
  member   = each.value
}
