# Sourced by the set-up scripts: sets PY, the Python to install into and run with.
# $PYTHON (default python3), unless it is a system Python that refuses pip installs (PEP 668,
# an EXTERNALLY-MANAGED marker and no virtual environment active): then .venv, created once.
PY=${PYTHON:-python3}
if "$PY" - <<'PYEOF'
import os, sys, sysconfig
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if sys.prefix == sys.base_prefix and os.path.exists(marker) else 1)
PYEOF
then
  if [ ! -x .venv/bin/python ]; then
    echo "setup: $PY is externally managed (PEP 668); creating a virtual environment in .venv"
    "$PY" -m venv .venv
  fi
  PY=.venv/bin/python
fi
