#!/usr/bin/env bash
# What git sees in the checkout, ignored files included (runs/ is ignored), less the tools' own
# caches and what the README's test command itself installs (.venv, the editable install's egg-info).
# .ci/run compares it before and after `make test`: no test may write into the repository.
set -uo pipefail
cd "$(dirname "$0")/.."
skip='(__pycache__|\.mypy_cache|\.ruff_cache|\.pytest_cache)/|^!! \.venv/$|\.egg-info/$'
git status --porcelain --ignored 2>/dev/null | grep -v -E "$skip"
exit 0
