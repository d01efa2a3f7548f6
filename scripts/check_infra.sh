#!/usr/bin/env bash
# Static checks of the infrastructure code and the CI workflows:
#   1. terraform fmt -check -recursive infra
#   2. every .tf/.tfvars under infra/ parses (python-hcl2 API, scripts/hcl_to_json.py)
#   3. checkov on infra/ (Terraform) - no failed check allowed, skips are inline
#   4. checkov on .github/workflows/ (GitHub Actions)
#   5. actionlint (with shellcheck) on .github/workflows/
#   6. hadolint on the Dockerfile
# Runs every step, prints a summary, exits non-zero if any step failed.
# The Python tools live in .venv-tools/ (`make tools`); terraform comes from
# PATH (or $TERRAFORM); without it the fmt step is skipped with a warning,
# unless REQUIRE_TERRAFORM=1 (set in GitHub CI, where setup-terraform installs
# it). Nothing here needs network access or AWS credentials.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

TOOLS="${KON_TOOLS_VENV:-$ROOT/.venv-tools}"
TERRAFORM="${TERRAFORM:-terraform}"

if [[ ! -x "$TOOLS/bin/checkov" || ! -x "$TOOLS/bin/actionlint" || ! -x "$TOOLS/bin/python" ]]; then
  echo "check_infra: tools virtualenv missing or incomplete at $TOOLS (checkov, actionlint)." >&2
  echo "check_infra: run 'make tools' first." >&2
  exit 2
fi
have_terraform=1
if ! command -v "$TERRAFORM" >/dev/null 2>&1; then
  if [[ "${REQUIRE_TERRAFORM:-0}" == "1" ]]; then
    echo "check_infra: terraform not found (set TERRAFORM=/path/to/terraform or install terraform >= 1.11)." >&2
    exit 2
  fi
  echo "check_infra: WARNING: terraform not found; skipping 'terraform fmt -check' (set REQUIRE_TERRAFORM=1 to make this an error)." >&2
  have_terraform=0
fi

# Checkov is run offline: no Prisma Cloud guideline download, no API key.
export CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
export BC_SKIP_MAPPING=TRUE
# fmt needs no CLI configuration; avoid warnings about a missing ~/.terraformrc.
export TF_CLI_CONFIG_FILE=/dev/null

failed=()

step() {
  local name="$1"
  shift
  echo "==> ${name}"
  if "$@"; then
    echo "    ok: ${name}"
  else
    echo "    FAILED: ${name}" >&2
    failed+=("${name}")
  fi
}

if ((have_terraform)); then
  step "terraform fmt" "$TERRAFORM" fmt -check -recursive -diff infra
fi
step "hcl parse" bash -c '"$1" scripts/hcl_to_json.py infra >/dev/null' _ "$TOOLS/bin/python"
step "checkov terraform" "$TOOLS/bin/checkov" --directory infra --framework terraform \
  --skip-download --compact --quiet --output cli
step "checkov github_actions" "$TOOLS/bin/checkov" --directory .github/workflows \
  --framework github_actions --skip-download --compact --quiet --output cli
step "actionlint" "$TOOLS/bin/actionlint" -no-color -shellcheck "$TOOLS/bin/shellcheck" \
  .github/workflows/*.yml
if [[ -x "$TOOLS/bin/hadolint" ]]; then
  step "hadolint" "$TOOLS/bin/hadolint" --no-color Dockerfile
else
  echo "check_infra: WARNING: hadolint missing from $TOOLS (make tools); skipping the Dockerfile lint." >&2
fi

if ((${#failed[@]})); then
  echo "check_infra: ${#failed[@]} step(s) failed: ${failed[*]}" >&2
  exit 1
fi
echo "check_infra: all infrastructure checks passed"
