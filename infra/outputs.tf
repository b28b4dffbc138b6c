output "custom_domain_url" {
  description = "https URL on the custom domain (empty when no domain is set). Serves once DNS points at Google and the certificate is issued."
  value       = var.domain == "" ? "" : "https://${var.domain}"
}

output "dashboard_url" {
  description = "Cloud Monitoring dashboard of the gateway (requests, errors, latency, tokens, capacity); docs/usage.md describes each tile."
  value       = "https://console.cloud.google.com/monitoring/dashboards/builder/${element(split("/", google_monitoring_dashboard.gateway.id), 3)}?project=${var.project_id}"
}

output "domain_dns_records" {
  description = "DNS records to create at your DNS host when it is not Cloud DNS (a subdomain gets one CNAME to ghs.googlehosted.com.)."
  value = flatten([
    for mapping in google_cloud_run_domain_mapping.gateway : [
      for record in try(mapping.status[0].resource_records, []) : {
        name   = record.name
        rrdata = record.rrdata
        type   = record.type
      }
    ]
  ])
}

output "image_repository" {
  description = "Docker repository path to push images to (deploy.sh appends /llm-gateway:<git sha>)."
  value       = local.image_repository
}

output "keys_secret_id" {
  description = "Secret Manager secret that holds the API key document; add versions with scripts/keys."
  value       = google_secret_manager_secret.keys.id
}

output "service_account_email" {
  description = "Runtime service account of the gateway."
  value       = google_service_account.runtime.email
}

output "service_name" {
  description = "Cloud Run service name."
  value       = google_cloud_run_v2_service.gateway.name
}

output "service_url" {
  description = "The service's run.app URL."
  value       = google_cloud_run_v2_service.gateway.uri
}
