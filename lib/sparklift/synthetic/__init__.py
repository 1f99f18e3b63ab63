"""Synthetic stand-ins for the raw tables, with a planted, recorded ground truth."""
