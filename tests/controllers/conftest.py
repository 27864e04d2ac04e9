"""The controller suites reuse the API server suites' process helpers (server_procs,
kubectls) from tests/apiserver."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apiserver"))
