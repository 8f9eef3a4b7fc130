import sys
from pathlib import Path

# The SDK is tested from its source tree, as the templates use it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
