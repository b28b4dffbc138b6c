# The API key document. Terraform creates the container only: versions are added by the
# key tool (scripts/keys) or `gcloud secrets versions add`, so no key material ever
# reaches Terraform state.
resource "google_secret_manager_secret" "keys" {
  project   = var.project_id
  secret_id = var.keys_secret_id

  labels = {
    app = var.service_name
  }

  replication {
    auto {}
  }

  deletion_protection = var.deletion_protection

  depends_on = [google_project_service.enabled]
}
