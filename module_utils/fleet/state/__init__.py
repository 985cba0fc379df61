"""The fleet's own records in each database: the run ledger and the run lock."""
