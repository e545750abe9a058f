#!/usr/bin/env bash
# Creates .venv with the spancost package (editable) and its dev tools.
# Re-running is cheap: pip is only called when pyproject.toml changed.
source "$(dirname "$0")/lib.sh"
need "$PYTHON" "install Python 3.11"
stamp="$VENV/.spancost-installed"
want="$(sha256sum "$ROOT/python_processor/pyproject.toml" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then exit 0; fi
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
log "installing python_processor into $VENV"
run_quiet "pip install" "$VENV/bin/pip" install --disable-pip-version-check -e "$ROOT/python_processor[dev]"
echo "$want" >"$stamp"
