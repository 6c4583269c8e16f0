"""End-to-end recipes."""
