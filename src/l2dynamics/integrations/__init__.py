"""Adapters to other training frameworks (optional extras; import them explicitly)."""
