data "google_dns_managed_zone" "domain" {
  for_each = local.managed_records

  project = var.project_id
  name    = var.dns_managed_zone
}

# A subdomain mapped to Cloud Run is one fixed CNAME. An apex domain needs the A/AAAA
# records from the `domain_dns_records` output instead.
resource "google_dns_record_set" "domain" {
  for_each = local.managed_records

  project      = var.project_id
  managed_zone = data.google_dns_managed_zone.domain[each.key].name
  name         = "${each.value}."
  type         = "CNAME"
  ttl          = 300
  rrdatas      = ["ghs.googlehosted.com."]

  lifecycle {
    precondition {
      condition = (
        endswith("${each.value}.", ".${data.google_dns_managed_zone.domain[each.key].dns_name}")
      )
      error_message = "domain must be a subdomain inside the managed zone's DNS name (an apex domain cannot be a CNAME): set dns_managed_zone = \"\" and create the records from the domain_dns_records output, or pick a subdomain."
    }
  }

  depends_on = [google_project_service.enabled]
}
