#!/usr/bin/env bash
# face-alignment wants opencv-python, albumentations opencv-python-headless; both write cv2/.
# Keep them at one version, or `import cv2` breaks in odd ways.
set -euo pipefail
PY="$1"
read -r full headless < <($PY - <<'PYEOF'
import importlib.metadata as m
def v(n):
    try:
        return m.version(n)
    except m.PackageNotFoundError:
        return "none"
print(v("opencv-python"), v("opencv-python-headless"))
PYEOF
)
if [ "$full" != "$headless" ] && [ "$full" != none ]; then
    $PY -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
        "opencv-python-headless==$full" "opencv-python==$full"
fi
$PY -c "import cv2" || { echo "cv2 does not import after install" >&2; exit 1; }
