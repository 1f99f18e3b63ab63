"""Campaign measurement: what a campaign's policy achieved against its random holdout."""
