# One page: requests per minute by model, error rate by status class, latency and time to first byte
# (p50, p95) by model, tokens per day by key, Vertex AI 429s, Cloud Run instances, CPU and memory.
# PromQL over the log-based metrics (logging_metrics.tf) and Cloud Run's own metrics; docs/usage.md
# describes each tile. Its console URL is the dashboard_url output, which deploy.sh prints.
resource "google_monitoring_dashboard" "gateway" {
  project = var.project_id
  dashboard_json = templatefile("${path.module}/dashboard.json.tftpl", {
    metric  = local.promql_metric
    service = var.service_name
  })

  depends_on = [
    google_project_service.enabled,
    google_logging_metric.requests,
    google_logging_metric.tokens,
    google_logging_metric.timing,
    google_logging_metric.upstream_429,
  ]
}
