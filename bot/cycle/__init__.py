"""The involvement cycle staff run: the panel, campaigns, reminders, progress, exports, feedback; one service function per staff verb; staff accounts."""
