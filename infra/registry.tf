resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Images hold only public code and pinned open-source packages, no data or secrets; Google-managed encryption suffices and a CMEK key would add a KMS bill and a way to lose every rollback image.
  project       = var.project_id
  location      = var.region
  repository_id = var.artifact_repository_id
  format        = "DOCKER"
  description   = "Container images of the ${var.service_name} gateway, tagged by git commit."

  docker_config {
    # Tags are commit SHAs: a tag must always mean the same bits, which keeps rollbacks honest.
    immutable_tags = true
  }

  cleanup_policy_dry_run = false

  # KEEP wins over DELETE: everything but the newest keep_image_count images is removed.
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state = "ANY"
    }
  }

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.keep_image_count
    }
  }

  depends_on = [google_project_service.enabled]
}
