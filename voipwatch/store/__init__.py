"""The case store: runs appended as Parquet (layout), searched with DuckDB (search), packets exported (export)."""
