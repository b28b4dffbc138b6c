# Alerts are off unless var.alert_email is set: then one email channel and four policies, each with
# documentation that says what to check first (locals.tf, local.alerts). Conditions are PromQL over
# the log-based metrics (logging_metrics.tf).
resource "google_monitoring_notification_channel" "email" {
  for_each = local.alert_emails

  project      = var.project_id
  display_name = "${var.service_name} alerts (${each.value})"
  type         = "email"
  labels = {
    email_address = each.value
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "gateway" {
  for_each = { for name, alert in local.alerts : name => alert if var.alert_email != "" }

  project               = var.project_id
  display_name          = "${var.service_name}: ${each.value.display_name}"
  combiner              = "OR"
  severity              = each.value.severity
  notification_channels = [for channel in google_monitoring_notification_channel.email : channel.name]

  conditions {
    display_name = each.value.display_name

    condition_prometheus_query_language {
      query               = each.value.query
      duration            = each.value.duration
      evaluation_interval = "60s"
    }
  }

  documentation {
    subject   = "${var.service_name}: ${each.value.display_name}"
    content   = each.value.documentation
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "1800s"
  }

  user_labels = {
    app = var.service_name
  }

  # PromQL conditions are validated against existing metrics when the policy is created.
  depends_on = [
    google_logging_metric.requests,
    google_logging_metric.upstream_429,
    google_logging_metric.key_refresh_failures,
  ]
}
