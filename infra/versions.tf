terraform {
  # 1.9+ lets a variable's validation refer to other variables (min/max instances, cpu/memory).
  required_version = ">= 1.9"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50, < 8"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
