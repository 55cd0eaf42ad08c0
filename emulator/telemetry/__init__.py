"""Telemetry: OpenTelemetry traces, Prometheus metrics, the access log and request ids.

Each is an interceptor of the chain, built only when the configuration asks for it: with
telemetry off, nothing here is imported and a call pays nothing for it.
"""
