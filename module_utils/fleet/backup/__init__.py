"""Backups: taking them, their catalog (paths, manifests, side databases), retention, restore and drills."""
