#!/usr/bin/env bash
# Release readiness, without publishing anything: build the sdist and the
# wheel, check them (twine check --strict, .ci/check_dist.py), install the
# wheel into a fresh virtualenv and smoke-test it there (.ci/smoke.py).
# Needs build and twine (the docs extra) in the Python that runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python -m build --outdir "$work/dist" .
python -m twine check --strict "$work"/dist/*
python .ci/check_dist.py "$work/dist"

python -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check "$work"/dist/*.whl
# -I: the smoke test must not import the source tree it sits in.
"$work/venv/bin/python" -I .ci/smoke.py
