resource "google_cloud_run_v2_service" "gateway" {
  project  = var.project_id
  location = var.region
  name     = var.service_name
  ingress  = "INGRESS_TRAFFIC_ALL"

  # Public by design: every request is authenticated by the gateway's own API keys, and
  # this also works under a domain-restricted-sharing org policy (no allUsers binding).
  invoker_iam_disabled = !var.invoker_all_users
  deletion_protection  = var.deletion_protection

  labels = {
    app = var.service_name
  }

  template {
    service_account = google_service_account.runtime.email
    # Long completions stream for minutes; Cloud Run's maximum.
    timeout = "${var.request_timeout_seconds}s"
    # A streaming request holds its slot for its whole life while the proxy itself is idle.
    max_instance_request_concurrency = var.concurrency

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    containers {
      image = var.image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        # CPU only while requests are in flight: that is what makes scale-to-zero cheap.
        cpu_idle          = true
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.service_env
        content {
          name  = env.key
          value = env.value
        }
      }

      # /health answers 200 only once the key ring is loaded, so a revision whose keys
      # cannot be read never receives traffic. Not /healthz: Cloud Run reserves some paths
      # ending in "z" (SPEC.md, platform facts).
      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 2
        timeout_seconds       = 2
        failure_threshold     = 30
        http_get {
          path = "/health"
        }
      }

      liveness_probe {
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
        http_get {
          path = "/health"
        }
      }
    }
  }

  traffic {
    type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    percent = 100
  }

  depends_on = [
    google_project_iam_member.runtime,
    google_secret_manager_secret_iam_member.runtime_keys,
  ]
}
