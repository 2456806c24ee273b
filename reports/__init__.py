"""Leaderboards, HTML reports and winner export, read from run directories on disk."""
