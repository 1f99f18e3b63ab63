"""Data quality: declarative checks per table, their metrics in one pass, and the anomaly rules."""
