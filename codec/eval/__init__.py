"""Evaluation: metrics, classic-codec baselines, delay alignment, reports and plots."""
