"""A database's schema: the catalog snapshot, and the schema the migrations build at a revision (scratch)."""
