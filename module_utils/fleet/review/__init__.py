"""The review of revisions: SQL reading, rules, acknowledgements, downgrade reversibility, upgrade hazards, lint."""
