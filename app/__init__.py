"""Download Ledger: an event-sourced stream processor for offline-download licensing."""
