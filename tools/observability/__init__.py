"""Generators of the checked-in observability files under deploy/observability/."""
