from typing import Any

raw: Any
