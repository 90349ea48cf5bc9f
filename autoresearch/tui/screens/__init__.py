"""The app's screens: the run picker, the dashboard, the new-run dialog, and the small dialogs."""
