"""OpenTelemetry: the tracer provider from the settings and the services' `Tracer` on it."""
