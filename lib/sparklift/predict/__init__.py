"""Predicted metrics: per-user history features and the models that predict from them."""
