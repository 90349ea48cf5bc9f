"""Widgets of the terminal dashboard."""
