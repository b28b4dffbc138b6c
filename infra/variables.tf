variable "alert_5xx_ratio" {
  description = "Share of requests answered 5xx (0 to 1) that, held for 5 minutes, raises the gateway 5xx alert. Alerts exist only when alert_email is set."
  type        = number
  default     = 0.05

  validation {
    condition     = var.alert_5xx_ratio > 0 && var.alert_5xx_ratio <= 1
    error_message = "alert_5xx_ratio must be a fraction above 0 and at most 1, e.g. 0.05 for 5% of requests."
  }
}

variable "alert_email" {
  description = "Email address that receives the gateway's alerts (5xx rate, Vertex AI 429s, no successful request, key refresh failing). Empty (the default): no notification channel and no alert policies."
  type        = string
  default     = ""

  validation {
    condition     = var.alert_email == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alert_email))
    error_message = "alert_email must be empty (no alerts) or one email address such as \"oncall@example.com\"."
  }
}

variable "alert_no_success_minutes" {
  description = "Minutes of requests with a valid key and not one 2xx answer before the no-success alert fires."
  type        = number
  default     = 10

  validation {
    condition     = var.alert_no_success_minutes >= 5 && var.alert_no_success_minutes <= 1440 && floor(var.alert_no_success_minutes) == var.alert_no_success_minutes
    error_message = "alert_no_success_minutes must be a whole number from 5 to 1440; 10 catches an outage without paging for a quiet spell."
  }
}

variable "alert_upstream_429_per_minute" {
  description = "Vertex AI 429 answers per minute that, held for 5 minutes, raise the upstream 429 alert."
  type        = number
  default     = 5

  validation {
    condition     = var.alert_upstream_429_per_minute > 0
    error_message = "alert_upstream_429_per_minute must be above 0, e.g. 5 (429s a minute, averaged over 5 minutes)."
  }
}

variable "artifact_repository_id" {
  description = "Artifact Registry Docker repository that holds the gateway images (deploy.sh pushes here)."
  type        = string
  default     = "llm-gateway"

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.artifact_repository_id))
    error_message = "artifact_repository_id must be 1-63 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen, e.g. \"llm-gateway\"."
  }
}

variable "concurrency" {
  description = "Requests one instance serves at once. Streams hold a slot for minutes while the proxy idles, so keep this well above Cloud Run's default of 80."
  type        = number
  default     = 250

  validation {
    condition     = var.concurrency >= 1 && var.concurrency <= 1000 && floor(var.concurrency) == var.concurrency
    error_message = "concurrency must be a whole number from 1 to 1000 (Cloud Run's limit); 250 suits a streaming proxy on 1 vCPU."
  }
}

variable "cpu" {
  description = "vCPUs per instance, as Cloud Run's CPU limit string."
  type        = string
  default     = "1"

  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.cpu)
    error_message = "cpu must be one of \"1\", \"2\", \"4\", \"6\" or \"8\" (fractional CPUs cannot serve concurrent requests)."
  }
}

variable "deletion_protection" {
  description = "Refuse to destroy the Cloud Run service and the key secret. Set to false and apply once before `terraform destroy`."
  type        = bool
  default     = true

  validation {
    condition     = var.deletion_protection != null
    error_message = "deletion_protection must be true or false; set it to false and apply before tearing down."
  }
}

variable "dns_managed_zone" {
  description = "Name (not DNS name) of a Cloud DNS managed zone in this project that holds `domain`; when set, Terraform creates the CNAME. Leave empty when DNS is hosted elsewhere."
  type        = string
  default     = ""

  validation {
    condition     = var.dns_managed_zone == "" || can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.dns_managed_zone))
    error_message = "dns_managed_zone must be empty or a Cloud DNS zone name such as \"example-com\" (see `gcloud dns managed-zones list`), not a DNS name like \"example.com.\"."
  }
}

variable "domain" {
  description = "Custom hostname for the gateway, e.g. \"llm.example.com\". It must be verified for the deploying account first (docs/deploy.md). Empty: no domain mapping."
  type        = string
  default     = ""

  validation {
    condition     = var.domain == "" || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain))
    error_message = "domain must be empty or a lowercase hostname without scheme, path or trailing dot, e.g. \"llm.example.com\"."
  }
}

variable "image" {
  description = "Container image to run, tagged or by digest, e.g. \"europe-west1-docker.pkg.dev/my-project/llm-gateway/llm-gateway:3f2c1a9b7d0e\". deploy.sh sets this."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$", var.image))
    error_message = "image must be a full reference with a tag or digest, e.g. \"REGION-docker.pkg.dev/PROJECT/REPO/llm-gateway:GIT_SHA\"; run ./deploy.sh, or pass --image to deploy an existing one."
  }
}

variable "invoker_all_users" {
  description = "Opt-in: add an allUsers roles/run.invoker binding and keep Cloud Run's invoker IAM check on, instead of the default invoker_iam_disabled. Fails under a domain-restricted-sharing org policy."
  type        = bool
  default     = false

  validation {
    condition     = var.invoker_all_users != null
    error_message = "invoker_all_users must be true or false; leave it false unless your organisation requires an explicit allUsers binding."
  }
}

variable "keep_image_count" {
  description = "How many of the newest images Artifact Registry keeps; older ones are deleted by the cleanup policy (and can no longer be rolled back to)."
  type        = number
  default     = 10

  validation {
    condition     = var.keep_image_count >= 1 && var.keep_image_count <= 100 && floor(var.keep_image_count) == var.keep_image_count
    error_message = "keep_image_count must be a whole number from 1 to 100; keep at least a few images so `./deploy.sh --image` can roll back."
  }
}

variable "keys_refresh_seconds" {
  description = "How often the gateway re-reads the key secret, so new or revoked keys apply without a redeploy."
  type        = number
  default     = 60

  validation {
    condition     = var.keys_refresh_seconds >= 5 && var.keys_refresh_seconds <= 3600 && floor(var.keys_refresh_seconds) == var.keys_refresh_seconds
    error_message = "keys_refresh_seconds must be a whole number from 5 to 3600; 60 is a good balance of revocation delay and Secret Manager calls."
  }
}

variable "keys_secret_id" {
  description = "Secret Manager secret holding the API key document (versions are added by scripts/keys, never by Terraform)."
  type        = string
  default     = "llm-gateway-keys"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,255}$", var.keys_secret_id))
    error_message = "keys_secret_id must be 1-255 letters, digits, hyphens or underscores, e.g. \"llm-gateway-keys\" (the short id, not projects/P/secrets/S)."
  }
}

variable "max_instances" {
  description = "Upper bound on instances: caps cost and the request rate sent to Vertex AI."
  type        = number
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000 && floor(var.max_instances) == var.max_instances
    error_message = "max_instances must be a whole number from 1 to 1000."
  }
}

variable "memory" {
  description = "Memory per instance, as Cloud Run's memory limit string."
  type        = string
  default     = "512Mi"

  validation {
    condition     = can(regex("^[1-9][0-9]*(Mi|Gi)$", var.memory))
    error_message = "memory must be a size such as \"512Mi\" or \"1Gi\" (Cloud Run needs at least 512Mi with a full CPU)."
  }

  # Cloud Run refuses other combinations at deploy time (SPEC.md, platform facts). try(): a
  # malformed cpu or memory is reported by its own rule, not as a combination.
  validation {
    condition = try(
      (parseint(regex("^[0-9]+", var.memory), 10) * (endswith(var.memory, "Gi") ? 1024 : 1)) >= { "1" = 0, "2" = 0, "4" = 2048, "6" = 4096, "8" = 4096 }[var.cpu] &&
      (parseint(regex("^[0-9]+", var.memory), 10) * (endswith(var.memory, "Gi") ? 1024 : 1)) <= { "1" = 4096, "2" = 8192, "4" = 16384, "6" = 24576, "8" = 32768 }[var.cpu],
      true,
    )
    error_message = "memory does not fit cpu: Cloud Run allows up to 4Gi with 1 vCPU, up to 8Gi with 2, 2Gi to 16Gi with 4, 4Gi to 24Gi with 6 and 4Gi to 32Gi with 8; raise memory (e.g. memory = \"2Gi\" for cpu = \"4\") or lower cpu."
  }
}

variable "min_instances" {
  description = "Instances kept warm. 0 scales to zero (cheapest; the first request after idle waits for a cold start)."
  type        = number
  default     = 0

  validation {
    condition     = var.min_instances >= 0 && var.min_instances <= var.max_instances && floor(var.min_instances) == var.min_instances
    error_message = "min_instances must be a whole number from 0 up to max_instances; use 0 to scale to zero."
  }
}

variable "model_aliases" {
  description = "Map of client-facing model alias to Vertex AI model id (publisher-qualified, e.g. \"google/gemini-2.5-flash\"), passed to the gateway as MODEL_ALIASES and replacing its defaults. Empty (the default): MODEL_ALIASES is not set and the gateway serves its built-in aliases, the table in README.md."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for alias, model in var.model_aliases :
      can(regex("^[A-Za-z0-9][A-Za-z0-9._@:/-]{0,127}$", alias)) && can(regex("^(google|anthropic)/[A-Za-z0-9][A-Za-z0-9._@-]*$", model))
    ])
    error_message = "model_aliases must be a map like { flash = \"google/gemini-2.5-flash\" } (or {} for the gateway's defaults): aliases are 1-128 letters, digits or ._@:/-, and each model id is publisher-qualified (google/... or anthropic/..., e.g. \"anthropic/claude-sonnet-4-6\")."
  }
}

variable "model_passthrough" {
  description = "Glob patterns (fnmatch, such as \"claude-*\" or \"gemini-2.5-*\") of the model ids outside model_aliases that the gateway sends to Vertex AI as asked, passed to the gateway as MODEL_PASSTHROUGH. Only claude-... and gemini-... ids can pass (the publisher comes from that prefix); [] passes none. Null (the default): MODEL_PASSTHROUGH is not set and the gateway's default, claude-* and gemini-*, applies."
  type        = list(string)
  default     = null

  validation {
    condition = alltrue([
      for pattern in coalesce(var.model_passthrough, []) :
      can(regex("^(claude|gemini)-[A-Za-z0-9._@*?\\[\\]!-]{0,121}$", pattern))
    ])
    error_message = "model_passthrough must be a list of patterns like [\"claude-*\", \"gemini-2.5-*\"] ([] to pass none, null for the gateway's default): each starts with claude- or gemini- (only those families can pass: the publisher is inferred from the prefix), is at most 128 characters, and holds only letters, digits, ._@- and the glob characters * ? [ ] !, with no google/ or anthropic/ in front."
  }
}

variable "project_id" {
  description = "Google Cloud project id (not the name or number) to deploy into."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project id such as \"my-project-123\": 6-30 lowercase letters, digits or hyphens, starting with a letter (see `gcloud projects list`)."
  }
}

variable "region" {
  description = "Cloud Run and Artifact Registry region. A custom domain needs a region that supports domain mappings, e.g. europe-west1 or us-central1."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Cloud Run region such as \"europe-west1\" or \"us-central1\" (not a zone like \"europe-west1-b\", and not \"global\")."
  }
}

variable "request_timeout_seconds" {
  description = "Cloud Run request timeout; streamed completions count against it, so it defaults to the 3600 s maximum."
  type        = number
  default     = 3600

  validation {
    condition     = var.request_timeout_seconds >= 1 && var.request_timeout_seconds <= 3600 && floor(var.request_timeout_seconds) == var.request_timeout_seconds
    error_message = "request_timeout_seconds must be a whole number from 1 to 3600 (Cloud Run's maximum)."
  }
}

variable "service_name" {
  description = "Cloud Run service name; also the prefix of the runtime service account."
  type        = string
  default     = "llm-gateway"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,24}[a-z0-9]$", var.service_name))
    error_message = "service_name must be 3-26 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen (the service account id adds \"-run\" and may not exceed 30)."
  }
}

variable "vertex_location" {
  description = "Vertex AI location the gateway calls. Gemini 3 preview models are served only on \"global\"."
  type        = string
  default     = "global"

  validation {
    condition     = contains(["global", "us", "eu"], var.vertex_location) || can(regex("^[a-z]+-[a-z]+[0-9]+$", var.vertex_location))
    error_message = "vertex_location must be \"global\", \"us\", \"eu\" or a region such as \"europe-west4\"."
  }
}
