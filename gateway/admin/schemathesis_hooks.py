"""Schemathesis hooks for the admin API (loaded by schemathesis.sh).

Plugin uploads are a component's raw bytes as `application/wasm`; schemathesis knows how to send
raw bytes as `application/octet-stream`, so the same serializer is used.
"""

import schemathesis

schemathesis.serializer.alias("application/wasm", "application/octet-stream")
