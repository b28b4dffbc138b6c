# Log-based metrics from the gateway's own request lines (app/logs.py, SPEC.md "Logging"). Cloud Run's
# agent lifts `severity`, `httpRequest` and `logging.googleapis.com/*` out of each stdout JSON line into the
# LogEntry; every other field stays under jsonPayload (SPEC.md, platform facts). tests/test_usage.py
# evaluates every filter and extractor here against lines a real gateway wrote, so a renamed log field
# fails the build. Label values are bounded: key ids and aliases are the operator's, routes a fixed list.

resource "google_logging_metric" "requests" {
  project     = var.project_id
  name        = "${var.service_name}/requests"
  description = "Requests the gateway answered, by key id, model alias, status class (first digit) and route."
  filter      = local.request_lines

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.service_name} requests"

    labels {
      key         = "key_id"
      value_type  = "STRING"
      description = "Id of the API key (empty when the key was missing or unknown)."
    }
    labels {
      key         = "alias"
      value_type  = "STRING"
      description = "Model alias the client asked for (empty before the model was read)."
    }
    labels {
      key         = "status_class"
      value_type  = "STRING"
      description = "First digit of the HTTP status: 2, 4 or 5."
    }
    labels {
      key         = "route"
      value_type  = "STRING"
      description = "API route; empty for any other path."
    }
  }

  label_extractors = {
    key_id       = "EXTRACT(jsonPayload.key_id)"
    alias        = "EXTRACT(jsonPayload.alias)"
    status_class = "REGEXP_EXTRACT(httpRequest.status, \"^([1-5])[0-9][0-9]$\")"
    route        = "REGEXP_EXTRACT(httpRequest.requestUrl, \"^(/v1/chat/completions|/v1/messages/count_tokens|/v1/messages|/v1/models|/v1/embeddings|/vertex)(?:/.*)?$\")"
  }

  depends_on = [google_project_service.enabled]
}

# Token counts are values, not entries: a DISTRIBUTION metric keeps their exact sum and count per
# interval (the buckets only shape the histogram). One metric per kind, the same labels.
resource "google_logging_metric" "tokens" {
  for_each = local.token_kinds

  project         = var.project_id
  name            = "${var.service_name}/${each.key}"
  description     = "${each.value} tokens per request, from the usage the answer reported, by key id and model alias."
  filter          = "${local.request_lines} AND jsonPayload.usage.${each.key}>=0"
  value_extractor = "EXTRACT(jsonPayload.usage.${each.key})"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "${var.service_name} ${lower(each.value)} tokens"

    labels {
      key         = "key_id"
      value_type  = "STRING"
      description = "Id of the API key."
    }
    labels {
      key         = "alias"
      value_type  = "STRING"
      description = "Model alias the client asked for."
    }
  }

  label_extractors = {
    key_id = "EXTRACT(jsonPayload.key_id)"
    alias  = "EXTRACT(jsonPayload.alias)"
  }

  # 1, 2, 4, ... 2^31 tokens.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 32
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.enabled]
}

# Whole-request latency and time to first byte, in milliseconds, by model alias.
resource "google_logging_metric" "timing" {
  for_each = local.timings

  project         = var.project_id
  name            = "${var.service_name}/${each.key}"
  description     = "${each.value} in milliseconds, by model alias."
  filter          = "${local.request_lines} AND jsonPayload.${each.key}>=0"
  value_extractor = "EXTRACT(jsonPayload.${each.key})"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "ms"
    display_name = "${var.service_name} ${lower(each.value)}"

    labels {
      key         = "alias"
      value_type  = "STRING"
      description = "Model alias the client asked for (empty for requests refused before the model was read)."
    }
  }

  label_extractors = {
    alias = "EXTRACT(jsonPayload.alias)"
  }

  # 1 ms to about 6 hours in steps of 40%: percentiles are read to within a bucket's width.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 48
      growth_factor      = 1.4
      scale              = 1
    }
  }

  depends_on = [google_project_service.enabled]
}

# A 429 from Vertex AI, not the gateway's own rpm/concurrency refusal: those are raised before the
# body is read, so their line has no vertex_model, and every Vertex model id has a "/" (google/...).
resource "google_logging_metric" "upstream_429" {
  project     = var.project_id
  name        = "${var.service_name}/upstream_429"
  description = "Requests Vertex AI refused with 429 (quota or capacity), by model alias."
  filter      = "${local.request_lines} AND httpRequest.status=429 AND jsonPayload.vertex_model:\"/\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.service_name} upstream 429s"

    labels {
      key         = "alias"
      value_type  = "STRING"
      description = "Model alias the client asked for."
    }
  }

  label_extractors = {
    alias = "EXTRACT(jsonPayload.alias)"
  }

  depends_on = [google_project_service.enabled]
}

# The key refresher (app/key_sources.py, logger "app.keys") logs at ERROR when the key document could
# not be read or parsed; the last good key set stays in use meanwhile.
resource "google_logging_metric" "key_refresh_failures" {
  project     = var.project_id
  name        = "${var.service_name}/key_refresh_failures"
  description = "Failed reads or parses of the API key document, from the gateway's app.keys log lines."
  filter      = "${local.stdout_lines} AND jsonPayload.logger=\"app.keys\" AND severity>=ERROR"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.service_name} key refresh failures"
  }

  depends_on = [google_project_service.enabled]
}
