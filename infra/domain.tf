# Cloud Run domain mappings exist only in the v1 API and only in some regions, and the
# domain must be verified for the deploying account first (docs/deploy.md).
resource "google_cloud_run_domain_mapping" "gateway" {
  for_each = local.domains

  project  = var.project_id
  location = var.region
  name     = each.value

  metadata {
    namespace = var.project_id
  }

  spec {
    route_name = google_cloud_run_v2_service.gateway.name
  }
}
