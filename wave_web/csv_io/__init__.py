"""CSV import and export: streaming, validated by the column-type registry."""
