"""
Local fake provider servers for contract tests: each speaks its provider's documented wire
format on 127.0.0.1 and records what it received, so the real SDKs are exercised end to
end without touching the internet.
"""
