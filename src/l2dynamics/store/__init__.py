"""Run store (SQLite) and its pandas views."""

from l2dynamics.store.sqlite import (
    STATUSES,
    RunStore,
    default_store_path,
    load_runs,
    load_series,
)

__all__ = ["STATUSES", "RunStore", "default_store_path", "load_runs", "load_series"]
