"""Voucher allocation under budgets: envelopes, Lagrangian group solve, exact reference."""
