#!/usr/bin/env bash
# Ship the gateway: build the image with Cloud Build (tagged by git commit), apply infra/
# with Terraform, wait for the new revision, smoke-test /health, name the monitoring dashboard
# and print the service URL as the last line on stdout. Re-runnable; logs (and the dashboard
# URL) go to stderr. Runbook: docs/deploy.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly ROOT
readonly IMAGE_NAME="llm-gateway"
readonly SERVICE_ADDRESS="google_cloud_run_v2_service.gateway"
# What Terraform itself needs before it can enable the rest (infra/apis.tf), plus the build.
readonly BOOTSTRAP_APIS=(cloudresourcemanager.googleapis.com serviceusage.googleapis.com
  artifactregistry.googleapis.com cloudbuild.googleapis.com)
POLL_SECONDS="${DEPLOY_POLL_SECONDS:-5}"
PROJECT="" REGION="" TFVARS="" IMAGE="" PLAN=0 DRY_RUN=0 ALLOW_DIRTY=0

usage() {
  cat <<EOF
Usage: ./deploy.sh [options]

Builds the current commit, deploys it to Cloud Run and prints the service URL.
  --project ID     Google Cloud project (default: project_id in tfvars, then gcloud config)
  --region REGION  Cloud Run region (default: region in tfvars, then europe-west1)
  --tfvars FILE    Terraform variables file (default: infra/terraform.tfvars if present)
  --image IMAGE    deploy an existing image instead of building (this is also a rollback)
  --plan           show the Terraform plan and change nothing
  --dry-run        print every command that would change something, run none of them
  --allow-dirty    build even with uncommitted changes (tag gets a -dirty suffix)
  -h, --help       show this help
EOF
}

log() { printf 'deploy: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
value() { [[ $# -ge 2 && $2 != -* ]] || die "$1 needs a value (see -h)"; printf '%s' "$2"; }

# Every command that changes something goes through run: shown, and skipped under --dry-run.
# Its stdout goes to stderr too, so stdout carries only the final URL.
run() {
  if ((DRY_RUN)); then
    printf 'would run:%s\n' "$(printf ' %q' "$@")" >&2
    return 0
  fi
  log "+ $*"
  "$@" >&2
}

tf() { run terraform -chdir="$ROOT/infra" "$@"; }

# Reads a plain `name = "value"` line from the tfvars file so deploy.sh and Terraform
# agree on names without parsing HCL here.
tfvar() {
  local found=""
  if [[ -n $TFVARS ]]; then
    found="$(sed -nE "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"([^\"]*)\".*/\1/p" "$TFVARS" | tail -n 1)"
  fi
  printf '%s' "${found:-$2}"
}

source_tag() {
  local sha
  sha="$(git -C "$ROOT" rev-parse --short=12 HEAD)" || die "not a git checkout: pass --image"
  if [[ -n "$(git -C "$ROOT" status --porcelain)" ]]; then
    ((ALLOW_DIRTY)) || die "uncommitted changes: commit them, or pass --allow-dirty"
    sha="$sha-dirty-$(date -u +%Y%m%d%H%M%S)"
  fi
  printf '%s' "$sha"
}

wait_ready() {
  local describe=(gcloud run services describe "$1" --project "$PROJECT" --region "$REGION"
    --format 'value(status.latestCreatedRevisionName,status.latestReadyRevisionName)')
  ((DRY_RUN)) && { run "${describe[@]}"; return 0; }
  local i created ready
  for ((i = 1; i <= 60; i++)); do
    read -r created ready < <("${describe[@]}" || true) || true
    if [[ -n ${created:-} && $created == "${ready:-}" ]]; then
      log "revision $created is ready"
      return 0
    fi
    sleep "$POLL_SECONDS"
  done
  die "revision ${created:-?} not ready: gcloud run revisions describe ${created:-REVISION} --region $REGION"
}

# /health, never /healthz: Cloud Run's front end answers some paths ending in "z" itself
# with a 404 that never reaches the container (SPEC.md, platform facts).
smoke_test() {
  local i
  for ((i = 1; i <= 10; i++)); do
    run curl -fsS --max-time 10 "$1/health" && { ((DRY_RUN)) || log "health ok"; return 0; }
    sleep "$POLL_SECONDS"
  done
  die "$1/health did not answer 200: check the logs (gcloud run services logs read)"
}

# True when `terraform show -json` output ($1) marks the resource at address $2 as tainted.
# The JSON is one line; cutting it before every resource object keeps each resource's own
# fields (its "tainted": true comes after its values) on one line.
is_tainted() {
  local marker='{"address":' newline=$'\n' resources line
  resources="${1//"$marker"/$newline$marker}"
  line="$(grep -F "{\"address\":\"$2\"," <<<"$resources" || true)"
  [[ $line == *'"tainted":true'* ]]
}

# A create that failed (e.g. a first revision that never got ready) leaves the service in the
# state marked tainted; Terraform then plans to replace it, which deletion_protection refuses,
# so every later deploy would fail. The service exists: untaint it so the apply updates it in
# place with a new revision. With --plan, only say what to run.
untaint_failed_create() {
  local state
  state="$(terraform -chdir="$ROOT/infra" show -json 2>/dev/null || true)"
  is_tainted "$state" "$SERVICE_ADDRESS" || return 0
  if ((PLAN)); then
    log "warning: $SERVICE_ADDRESS is tainted (an earlier create failed), so this plan replaces it and an apply would be refused by deletion_protection; ./deploy.sh untaints it, or run: terraform -chdir=infra untaint $SERVICE_ADDRESS"
    return 0
  fi
  log "$SERVICE_ADDRESS is tainted (an earlier create failed): untainting it, so this apply updates the service in place instead of replacing a deletion-protected one"
  tf untaint "$SERVICE_ADDRESS"
}

main() {
  while (($#)); do
    case $1 in
      --project) PROJECT="$(value "$@")"; shift 2 ;;
      --region) REGION="$(value "$@")"; shift 2 ;;
      --tfvars) TFVARS="$(value "$@")"; shift 2 ;;
      --image) IMAGE="$(value "$@")"; shift 2 ;;
      --plan) PLAN=1; shift ;;
      --dry-run) DRY_RUN=1; shift ;;
      --allow-dirty) ALLOW_DIRTY=1; shift ;;
      -h | --help) usage; return 0 ;;
      *) usage >&2; die "unknown argument: $1" ;;
    esac
  done
  for tool in gcloud terraform git curl; do
    command -v "$tool" >/dev/null || die "$tool is not on PATH (see docs/deploy.md, prerequisites)"
  done
  [[ -z $TFVARS && -f $ROOT/infra/terraform.tfvars ]] && TFVARS="$ROOT/infra/terraform.tfvars"
  if [[ -n $TFVARS ]]; then
    [[ -f $TFVARS ]] || die "no such tfvars file: $TFVARS"
    TFVARS="$(cd "$(dirname "$TFVARS")" && pwd)/$(basename "$TFVARS")"
  fi
  PROJECT="${PROJECT:-$(tfvar project_id "")}"
  PROJECT="${PROJECT:-$(gcloud config get-value project 2>/dev/null || true)}"
  [[ -n $PROJECT ]] || die "no project: pass --project, set project_id in tfvars or run gcloud config set project"
  REGION="${REGION:-$(tfvar region europe-west1)}"
  local repo service secret build=0 url
  repo="$(tfvar artifact_repository_id llm-gateway)"
  service="$(tfvar service_name llm-gateway)"
  secret="$(tfvar keys_secret_id llm-gateway-keys)"
  if [[ -z $IMAGE ]]; then
    IMAGE="$REGION-docker.pkg.dev/$PROJECT/$repo/$IMAGE_NAME:$(source_tag)"
    build=1
  fi
  # Terraform lets the later of -var-file and -var win: the file first, so flags win over it.
  local vars=(-input=false)
  [[ -n $TFVARS ]] && vars+=(-var-file="$TFVARS")
  vars+=(-var "project_id=$PROJECT" -var "region=$REGION" -var "image=$IMAGE")
  log "project $PROJECT, region $REGION, image $IMAGE"

  if ((PLAN)); then
    tf init -input=false
    untaint_failed_create
    tf plan "${vars[@]}"
    return 0
  fi
  run gcloud services enable "${BOOTSTRAP_APIS[@]}" --project "$PROJECT"
  gcloud artifacts repositories describe "$repo" --location "$REGION" --project "$PROJECT" >/dev/null 2>&1 ||
    run gcloud artifacts repositories create "$repo" --repository-format docker \
      --location "$REGION" --project "$PROJECT" --description "llm-gateway images"
  # Tags are immutable commit SHAs: an image already pushed for this commit is reused.
  if ((build)) && ! gcloud artifacts docker images describe "$IMAGE" --project "$PROJECT" >/dev/null 2>&1; then
    run gcloud builds submit "$ROOT" --tag "$IMAGE" --project "$PROJECT"
  fi
  tf init -input=false
  # The registry may have been created just above: hand it to Terraform once.
  local found
  found="$(terraform -chdir="$ROOT/infra" state list 2>/dev/null || true)"
  grep -qx 'google_artifact_registry_repository.images' <<<"$found" ||
    tf import "${vars[@]}" google_artifact_registry_repository.images \
      "projects/$PROJECT/locations/$REGION/repositories/$repo"
  # A revision without keys never passes its /health startup probe: create the secret first.
  found="$(gcloud secrets versions list "$secret" --project "$PROJECT" --filter 'state:ENABLED' \
    --limit 1 --format 'value(name)' 2>/dev/null || true)"
  if [[ -z $found ]]; then
    tf apply -auto-approve "${vars[@]}" -target=google_secret_manager_secret_iam_member.runtime_keys
    ((DRY_RUN)) || die "secret $secret has no key yet: scripts/keys --project $PROJECT --secret $secret issue NAME, then re-run"
    log "a real run stops here until secret $secret has a key"
  fi
  untaint_failed_create
  tf apply -auto-approve "${vars[@]}"

  # With no state, `terraform output` prints a warning on stdout and exits 0: keep URLs only.
  url="$(terraform -chdir="$ROOT/infra" output -raw service_url 2>/dev/null || true)"
  found="$(terraform -chdir="$ROOT/infra" output -raw custom_domain_url 2>/dev/null || true)"
  [[ $found == https://* ]] && log "custom domain $found (DNS: terraform -chdir=infra output domain_dns_records)"
  if [[ $url != https://* ]]; then
    ((DRY_RUN)) || die "terraform has no service_url output after apply"
    url="https://$service-PROJECT_NUMBER.$REGION.run.app"
  fi
  wait_ready "$service"
  smoke_test "$url"
  # The Cloud Monitoring dashboard (infra/dashboard.tf, docs/usage.md): on stderr, so stdout stays the URL.
  found="$(terraform -chdir="$ROOT/infra" output -raw dashboard_url 2>/dev/null || true)"
  [[ $found == https://* ]] && log "dashboard $found"
  printf '%s\n' "$url"
}

main "$@"
