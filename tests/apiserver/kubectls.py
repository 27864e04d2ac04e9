"""Where the installed kubectl versions are: `kubectl.<minor version>` binaries beside the
one `kubectl` on PATH resolves to (this machine ships 1.27 ... 1.33 that way)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def kubectl_binary(version: str) -> str | None:
    """The path of kubectl `version` ("1.33"), or None when it is not installed."""
    found = shutil.which("kubectl")
    if not found:
        return None
    p = Path(os.path.realpath(found)).parent / f"kubectl.{version}"
    return str(p) if os.access(p, os.X_OK) else None
